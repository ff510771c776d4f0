"""The one interface every model type implements (encoder, causal LM, vLLM, lm-eval bridge, fake)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import ClassVar, Protocol, runtime_checkable

from harness.core import Request, RequestKind, Score


@dataclass(frozen=True)
class BackendConfig:
    """What the user asked for; the backend resolves it (preset -> path, auto -> dtype)."""

    model: str | None = None  # preset name, local directory or hub id; None = the backend's default
    adapter: str | None = None  # peft adapter directory (optional)
    dtype: str = "auto"  # auto | fp32 | bf16 | fp16
    device: str = "auto"  # auto | cpu | cuda | cuda:N
    batch_size: int = 32
    seed: int = 0
    threads: int | None = None  # torch intra-op threads on CPU; None = torch default
    max_length: int | None = None  # override the model's input limit


@dataclass(frozen=True)
class ModelInfo:
    """Everything a result file must record about the model that produced it."""

    backend: str
    model: str  # as requested (preset, path or hub id)
    path: str | None  # resolved local directory, if any
    revision: str | None  # hub revision or a content checksum of the weights
    adapter: str | None
    dtype: str  # resolved: float32 | bfloat16 | float16
    device: str  # resolved, e.g. "cpu" or "cuda:0 (NVIDIA H100 80GB HBM3)"
    num_parameters: int | None
    max_length: int | None
    threads: int | None
    notes: tuple[str, ...] = field(default_factory=tuple)


@runtime_checkable
class Backend(Protocol):
    """Scores requests of one kind. `score` returns exactly one Score per request, in order."""

    name: ClassVar[str]
    request_kind: ClassVar[RequestKind]

    def info(self) -> ModelInfo: ...

    def score(self, requests: Sequence[Request]) -> list[Score]: ...

    def close(self) -> None: ...
