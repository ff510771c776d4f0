"""Lazy backend registry: a backend's module (and its heavy imports) loads only when chosen."""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from harness.backends.base import Backend, BackendConfig
from harness.backends.options import (
    BackendOptions,
    EncoderOptions,
    FakeOptions,
    HFOptions,
    LMEvalOptions,
    NoOptions,
    VLLMOptions,
)
from harness.errors import UsageError


@dataclass(frozen=True)
class BackendEntry:
    name: str
    target: str  # "module:factory"
    description: str
    extra: str | None = None  # pip extra that provides its optional dependencies
    options: type[BackendOptions] = NoOptions  # its typed options (light: checked before the import)


_BACKENDS: dict[str, BackendEntry] = {}


def register(name: str, target: str, description: str, extra: str | None = None,
             options: type[BackendOptions] = NoOptions) -> None:
    _BACKENDS[name] = BackendEntry(name, target, description, extra, options)


register("encoder", "harness.backends.encoder:EncoderBackend",
         "statement scorer: sequence classifier, P(True) = softmax(logits)[1]", options=EncoderOptions)
register("hf", "harness.backends.hf_causal:HFCausalBackend",
         "causal LM (transformers): summed continuation log-likelihood, lm-eval 0.4.13 prompts; "
         "--prompt statements judges the encoder's statements", options=HFOptions)
register("vllm", "harness.backends.vllm_backend:VLLMBackend",
         "causal LM on vLLM: prompt log-probabilities, tensor/pipeline parallel (GPU)", extra="gpu",
         options=VLLMOptions)
register("lm-eval", "harness.lmeval.bridge:LMEvalBackend",
         "runs lm-evaluation-harness 0.4.13 itself on the packaged data (reference numbers)", extra="lmeval",
         options=LMEvalOptions)
register("fake", "harness.backends.fake:FakeBackend", "seeded deterministic scores, for tests", options=FakeOptions)


def available() -> list[BackendEntry]:
    return sorted(_BACKENDS.values(), key=lambda e: e.name)


def entry_for(name: str) -> BackendEntry:
    entry = _BACKENDS.get(name)
    if entry is None:
        raise UsageError(f"unknown backend {name!r}; choose one of: {', '.join(sorted(_BACKENDS))}")
    return entry


def parse_options(name: str, given: Mapping[str, Any] | BackendOptions | None) -> BackendOptions:
    """Backend `name`'s typed options from `given` (checked without importing the backend's module)."""
    return entry_for(name).options.parse(given)


def resolve(name: str) -> Callable[[BackendConfig], Backend]:
    entry = entry_for(name)
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
