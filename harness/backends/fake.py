"""Seeded fake backend: deterministic scores without a model, so runner/results/CLI tests are fast.

Models (``--model``): ``random`` (default; a hash of seed and request text), ``length`` (score = length of the
text, a known rule tests can recompute), ``nan`` (always NaN, to exercise the NaN guard), ``slow`` (``random``
plus a pause per call, so a test can kill a run part-way).
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

from harness.backends.base import BackendConfig, ModelInfo
from harness.backends.options import FakeOptions
from harness.core import Request, RequestKind, Score, StatementRequest
from harness.errors import UsageError

FAKE_MODELS = ("random", "length", "nan", "slow")
SLOW_SECONDS_PER_CALL = 0.3


def _text(request: Request) -> str:
    if isinstance(request, StatementRequest):
        return request.text
    return request.context + request.continuation


class FakeBackend:
    name: ClassVar[str] = "fake"
    request_kind: RequestKind

    def __init__(self, config: BackendConfig) -> None:
        # like a causal LM: --prompt lm-eval makes it take log-likelihood requests (scores then are <= 0)
        self.request_kind = "loglikelihood" if config.prompt == "lm-eval" else "statement"
        self.model = config.model or "random"
        if self.model not in FAKE_MODELS:
            raise UsageError(f"--model {self.model!r} is not a fake model; choose one of: {', '.join(FAKE_MODELS)}")
        self.options = FakeOptions.parse(config.options)
        self.seed = config.seed
        self.calls = 0  # number of score() calls, so tests can check that resume scores nothing

    @property
    def prompt_version(self) -> str | None:
        return None

    @property
    def numerics(self) -> Mapping[str, Any] | None:
        return None

    def info(self) -> ModelInfo:
        return ModelInfo(backend="fake", model=self.model, path=None, revision=None, adapter=None,
                         dtype="float32", device="cpu", num_parameters=0, max_length=None, threads=None)

    def _one(self, request: Request) -> Score:
        text = _text(request)
        if self.model == "nan":
            return Score(float("nan"))
        if self.model == "length":
            return Score(float(len(text)))
        digest = hashlib.sha256(f"{self.seed}\x00{text}".encode()).digest()
        unit = int.from_bytes(digest[:8], "big") / 2**64
        if self.request_kind == "loglikelihood":
            return Score(-20.0 * unit, n_tokens=max(1, len(text) // 4), greedy=unit < 0.1)
        return Score(unit)

    def score(self, requests: Sequence[Request]) -> list[Score]:
        self.calls += 1
        if self.model == "slow":
            time.sleep(SLOW_SECONDS_PER_CALL)
        return [self._one(r) for r in requests]

    def close(self) -> None:
        return None
