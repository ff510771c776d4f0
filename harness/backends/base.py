"""The one interface every model type implements (encoder, causal LM, vLLM, lm-eval bridge, fake)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar, Protocol, runtime_checkable

from harness.backends.options import BackendOptions
from harness.core import Request, RequestKind, Sample, Score


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
    prompt: str = "default"  # causal LMs: "lm-eval" (default) or "statements" (judge the encoder's statements)
    chat_template: bool = False  # wrap contexts in the tokenizer's chat template (recorded)
    add_bos: bool | None = None  # None = the tokenizer's default
    trust_remote_code: bool = False
    # backend-specific, parsed by the backend into its typed options (harness.backends.options), e.g. vLLM parallelism
    options: Mapping[str, Any] | BackendOptions = field(default_factory=dict)


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
    base_model: str | None = None  # preset name or hub id of the base the weights came from
    training: Mapping[str, Any] | None = None  # the adapter's training recipe (harness.models.recipe)


@runtime_checkable
class Backend(Protocol):
    """Scores requests of one kind. `score` returns exactly one Score per request, in order."""

    name: ClassVar[str]
    request_kind: RequestKind  # may depend on the config (a causal LM judging statements takes "statement")

    @property
    def prompt_version(self) -> str | None:
        """A prompt the backend wraps the built requests in (an LLM judging statements), or None; recorded as
        ``<builder version>+<this>`` and part of the run identity."""

    @property
    def numerics(self) -> Mapping[str, Any] | None:
        """How scores are computed beyond device and dtype (CPU autocast, packing), or None; part of the run
        identity (`harness.runner.numerics_identity`)."""

    def info(self) -> ModelInfo: ...

    def score(self, requests: Sequence[Request]) -> list[Score]: ...

    def close(self) -> None: ...


@dataclass(frozen=True)
class TimingTarget:
    """What `bench efficiency` times of a loaded backend: its model, as scoring runs it."""

    model: Any  # the torch module scoring calls
    tokenizer: Any
    kind: str  # encoder | causal
    device: Any  # torch.device
    dtype: Any  # torch.dtype of the weights' compute
    autocast: bool  # bf16 autocast on CPU over fp32 weights
    max_length: int


@runtime_checkable
class Timeable(Protocol):
    """A backend whose model `bench efficiency` can time in this process (encoder, hf)."""

    def timing_target(self) -> TimingTarget: ...


@runtime_checkable
class SampleEvaluator(Protocol):
    """A backend that runs a whole evaluation itself (the lm-eval bridge) and returns finished Samples.

    The runner still owns the result files: it stores the samples and computes the metrics.
    """

    name: ClassVar[str]
    request_kind: RequestKind
    prompt_version: str  # recorded as the run's prompt format

    def info(self) -> ModelInfo: ...

    def evaluate(self, example_sets: Sequence[Any]) -> list[Sample]: ...

    def close(self) -> None: ...
