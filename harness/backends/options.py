"""Typed per-backend options: what each backend accepts beyond the shared `BackendConfig` fields.

A run carries them as plain ``(name, value)`` pairs (``--backend-option NAME=VALUE``, the vLLM flags, a Python
caller's mapping); each backend parses them once into its own frozen dataclass, which checks names, types and
ranges with one-line errors before any model is loaded. Light on purpose: the registry imports it eagerly to
check options at plan time, before the backend's heavy module is imported.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar, Self, Union

from harness.errors import UsageError

_TRUE = ("1", "true", "yes", "on")
_FALSE = ("0", "false", "no", "off")


@dataclass(frozen=True)
class BackendOptions:
    """Base of every backend's options. Fields may carry ``metadata={"flag": "--x", "help": "..."}``."""

    backend: ClassVar[str] = "?"

    @classmethod
    def parse(cls, given: Mapping[str, Any] | BackendOptions | None) -> Self:
        """The options from a mapping (CLI strings are converted to each field's type), checked; an instance of
        this class is returned as it is."""
        if isinstance(given, cls):
            return given
        if isinstance(given, BackendOptions):
            raise UsageError(f"backend {cls.backend}: got options of backend {given.backend}")
        given = dict(given or {})
        fields = {f.name: f for f in dataclasses.fields(cls)}
        unknown = sorted(set(given) - set(fields))
        if unknown:
            known = ", ".join(fields) or "none"
            raise UsageError(f"{cls.backend} backend: unknown option(s) {', '.join(unknown)} (known: {known})")
        hints = typing.get_type_hints(cls)
        values = {name: _convert(value, hints[name], cls.label(name)) for name, value in given.items()
                  if value is not None}
        options = cls(**values)
        options.check()
        return options

    @classmethod
    def label(cls, name: str) -> str:
        """How errors name an option: its CLI flag where it has one, else ``backend option NAME``."""
        flag = next((f.metadata.get("flag") for f in dataclasses.fields(cls) if f.name == name), None)
        return str(flag) if flag else f"backend option {name}"

    @classmethod
    def describe(cls) -> list[str]:
        """One line per option: name, type, default and help (for `bench list backends`)."""
        hints = typing.get_type_hints(cls)
        lines = []
        for f in dataclasses.fields(cls):
            default = f.default if f.default is not dataclasses.MISSING else "{}"
            kind = _type_name(hints[f.name])
            flag = f" ({f.metadata['flag']})" if f.metadata.get("flag") else ""
            lines.append(f"{f.name}={default} [{kind}]{flag}: {f.metadata.get('help', '')}".rstrip(": "))
        return lines

    def check(self) -> None:
        """Ranges and choices; the base has none."""


def _type_name(hint: Any) -> str:
    args = [a for a in typing.get_args(hint) if a is not type(None)]
    if typing.get_origin(hint) in (Union, types.UnionType) and len(args) == 1:
        return _type_name(args[0])
    return getattr(hint, "__name__", str(hint))


def _convert(value: Any, hint: Any, label: str) -> Any:
    """`value` as the field's type; CLI strings are parsed ("8192" -> 8192, "off" -> False)."""
    args = [a for a in typing.get_args(hint) if a is not type(None)]
    if typing.get_origin(hint) in (Union, types.UnionType) and len(args) == 1:
        hint = args[0]
    if hint is bool:
        if isinstance(value, bool):
            return value
        text = str(value).strip().lower()
        if text in _TRUE:
            return True
        if text in _FALSE:
            return False
        raise UsageError(f"{label} must be true or false (got {value!r})")
    if hint is int:
        if isinstance(value, bool):
            raise UsageError(f"{label} must be an integer (got {value!r})")
        try:
            return int(value)
        except (TypeError, ValueError):
            raise UsageError(f"{label} must be an integer (got {value!r})") from None
    if hint is float:
        try:
            return float(value)
        except (TypeError, ValueError):
            raise UsageError(f"{label} must be a number (got {value!r})") from None
    if hint is str:
        return str(value)
    if typing.get_origin(hint) in (Mapping, dict) or hint in (Mapping, dict):
        if not isinstance(value, Mapping):
            raise UsageError(f"{label} must be a mapping (give it from Python, not the command line)")
        return dict(value)
    return value


def _at_least_one(value: int | None, label: str) -> None:
    if value is not None and value < 1:
        raise UsageError(f"{label} must be at least 1 (got {value})")


@dataclass(frozen=True)
class NoOptions(BackendOptions):
    """A backend without options of its own (encoder, fake)."""


@dataclass(frozen=True)
class EncoderOptions(NoOptions):
    backend: ClassVar[str] = "encoder"


@dataclass(frozen=True)
class FakeOptions(NoOptions):
    backend: ClassVar[str] = "fake"


@dataclass(frozen=True)
class HFOptions(BackendOptions):
    """Backend ``hf``: how rows are batched and packed (the scores are checked equal either way)."""

    backend: ClassVar[str] = "hf"

    auto_batch: bool = field(default=True, metadata={
        "help": "batch rows under a token budget (off: fixed --batch-size rows)"})
    token_budget: int | None = field(default=None, metadata={
        "help": "tokens per batch with auto_batch (default 4096 on CPU, 65536 on CUDA)"})
    pack: bool = field(default=True, metadata={
        "help": "candidates sharing a context share one row (4D mask), if the load-time check passes"})

    def check(self) -> None:
        if self.token_budget is not None and self.token_budget < 1:
            raise UsageError(f"backend option token_budget must be positive (got {self.token_budget!r})")


EXECUTOR_BACKENDS = ("ray", "mp")
#: vLLM tokens per engine step unless given (see harness.backends.vllm_backend for why 4096)
DEFAULT_MAX_NUM_BATCHED_TOKENS = 4096


@dataclass(frozen=True)
class VLLMOptions(BackendOptions):
    """Backend ``vllm``: the engine's parallelism and memory bounds."""

    backend: ClassVar[str] = "vllm"

    tensor_parallel_size: int = field(default=1, metadata={
        "flag": "--tensor-parallel-size", "help": "GPUs per model replica (tensor parallel)"})
    pipeline_parallel_size: int = field(default=1, metadata={
        "flag": "--pipeline-parallel-size", "help": "pipeline stages (Ray across nodes)"})
    enable_prefix_caching: bool = field(default=False, metadata={
        "flag": "--prefix-caching", "help": "automatic prefix caching in the engine"})
    max_num_batched_tokens: int = field(default=DEFAULT_MAX_NUM_BATCHED_TOKENS, metadata={
        "flag": "--max-num-batched-tokens", "help": "tokens per engine step (bounds prompt log-prob memory)"})
    gpu_memory_utilization: float | None = field(default=None, metadata={
        "flag": "--gpu-memory-utilization", "help": "fraction of GPU memory the engine may take"})
    distributed_executor_backend: str | None = field(default=None, metadata={
        "flag": "--distributed-executor-backend", "help": "ray (across nodes) or mp"})

    def check(self) -> None:
        for name in ("tensor_parallel_size", "pipeline_parallel_size", "max_num_batched_tokens"):
            _at_least_one(getattr(self, name), self.label(name))
        memory = self.gpu_memory_utilization
        if memory is not None and not 0 < memory <= 1:
            raise UsageError(f"--gpu-memory-utilization must be in (0, 1] (got {memory:g})")
        executor = self.distributed_executor_backend
        if executor is not None and executor not in EXECUTOR_BACKENDS:
            raise UsageError(f"--distributed-executor-backend {executor!r}: choose {' or '.join(EXECUTOR_BACKENDS)}")


@dataclass(frozen=True)
class LMEvalOptions(BackendOptions):
    """Backend ``lm-eval``: extra HFLM model_args and where lm-eval's task files go."""

    backend: ClassVar[str] = "lm-eval"

    model_args: Mapping[str, Any] = field(default_factory=dict, metadata={
        "help": "extra HFLM model_args, merged over the harness's (Python callers)"})
    work_dir: str | None = field(default=None, metadata={
        "help": "directory for the generated lm-eval task files (default: a temporary one, removed on close)"})
