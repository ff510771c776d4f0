"""Lazy backend registry: a backend's module (and its heavy imports) loads only when chosen."""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass

from harness.backends.base import Backend, BackendConfig
from harness.errors import UsageError


@dataclass(frozen=True)
class BackendEntry:
    name: str
    target: str  # "module:factory"
    description: str
    extra: str | None = None  # pip extra that provides its optional dependencies


_BACKENDS: dict[str, BackendEntry] = {}


def register(name: str, target: str, description: str, extra: str | None = None) -> None:
    _BACKENDS[name] = BackendEntry(name, target, description, extra)


register("encoder", "harness.backends.encoder:EncoderBackend",
         "statement scorer: sequence classifier, P(True) = softmax(logits)[1]")
register("hf", "harness.backends.hf_causal:HFCausalBackend",
         "causal LM (transformers): summed continuation log-likelihood, lm-eval 0.4.13 prompts; "
         "--prompt statements judges the encoder's statements")
register("vllm", "harness.backends.vllm_backend:VLLMBackend",
         "causal LM on vLLM: prompt log-probabilities, tensor/pipeline parallel (GPU)", extra="gpu")
register("lm-eval", "harness.lmeval.bridge:LMEvalBackend",
         "runs lm-evaluation-harness 0.4.13 itself on the packaged data (reference numbers)", extra="lmeval")
register("fake", "harness.backends.fake:FakeBackend", "seeded deterministic scores, for tests")


def available() -> list[BackendEntry]:
    return sorted(_BACKENDS.values(), key=lambda e: e.name)


def resolve(name: str) -> Callable[[BackendConfig], Backend]:
    entry = _BACKENDS.get(name)
    if entry is None:
        raise UsageError(f"unknown backend {name!r}; choose one of: {', '.join(sorted(_BACKENDS))}")
    module_name, _, attr = entry.target.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as err:
        hint = f" (install the extra: pip install 'statement-bench[{entry.extra}]')" if entry.extra else ""
        raise UsageError(f"backend {name!r} needs a missing package: {err.name or err}{hint}") from err
    factory: Callable[[BackendConfig], Backend] = getattr(module, attr)
    return factory


def create(name: str, config: BackendConfig) -> Backend:
    return resolve(name)(config)
