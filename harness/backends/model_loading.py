"""What the transformers backends share about finding and loading a model: base/adapter resolution,
cache-first loading with a hub fallback, peft adapters, one-line load errors, and their base class."""

from __future__ import annotations

import gc
import warnings
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, ClassVar, TypeVar

import torch

from harness.backends.base import BackendConfig, ModelInfo, TimingTarget
from harness.core import RequestKind
from harness.device import (
    cpu_has_fast_bf16,
    describe_device,
    dtype_name,
    precision_note,
    resolve_device,
    resolve_dtype,
)
from harness.errors import BenchError, ModelError, UsageError, one_line
from harness.models.cache import fingerprint
from harness.models.materialise import ResolvedModel, adapter_base_model, is_adapter_dir, resolve_model
from harness.models.presets import ModelKind, describe_presets
from harness.models.quiet import hf_quiet, mute_bitsandbytes_kernel_notice
from harness.models.recipe import read_training_recipe

Loaded = TypeVar("Loaded")


def hub_offline() -> bool:
    """HF_HUB_OFFLINE (or its aliases) is set: never fall back to the hub."""
    try:
        from huggingface_hub import constants
    except ImportError:  # pragma: no cover - huggingface_hub ships with transformers
        return False
    return bool(constants.is_offline_mode())


def resolve_base_and_adapter(model: str | None, adapter: str | None, default: str) -> tuple[ResolvedModel, str | None]:
    """(base model, peft adapter directory or None) for ``--model`` / ``--adapter``.

    ``--model`` may itself be an adapter directory; its base is then the one its adapter_config.json names.
    """
    if adapter:
        if not Path(adapter).expanduser().is_dir():
            raise ModelError(f"adapter path {adapter} does not exist (or is not a directory)")
        resolved_adapter = resolve_model(adapter)
        if not resolved_adapter.is_local or not is_adapter_dir(resolved_adapter.path):
            raise ModelError(f"adapter {adapter} is not a peft adapter directory (no adapter_config.json)")
        base_ref = model or adapter_base_model(resolved_adapter.path) or default
        base = resolve_model(base_ref)
        if base.is_local and is_adapter_dir(base.path):
            raise ModelError(f"--model {base_ref} is itself a peft adapter; "
                             "give its base model with --model, or drop --adapter")
        return base, resolved_adapter.path
    resolved = resolve_model(model or default)
    if resolved.is_local and is_adapter_dir(resolved.path):
        named = adapter_base_model(resolved.path)
        if not named:
            raise ModelError(f"adapter {resolved.ref} names no base_model_name_or_path in its adapter_config.json")
        base = resolve_model(named)
        if base.is_local and is_adapter_dir(base.path):
            raise ModelError(f"adapter {resolved.ref} has another adapter as its base ({named}); "
                             "nested adapters are not supported")
        return base, resolved.path
    return resolved, None


def load_error(base: ResolvedModel, err: BaseException, *, what: str, kind: ModelKind) -> ModelError:
    """The one-line error for a model that would not load (``what``: "model", "causal LM")."""
    reason = one_line(err)
    if base.is_local:
        return ModelError(f"cannot load {what} {base.ref} from {base.path}: {reason}")
    if base.preset is not None:
        return ModelError(f"preset {base.preset} (hub id {base.path}) could not be loaded from the hub/cache: {reason}")
    return ModelError(f"model {base.ref!r} is not a preset ({describe_presets(kind)}), not a local directory, "
                      f"and could not be loaded from the hub/cache: {reason}")


def load_cache_first(base: ResolvedModel, load: Callable[[bool], Loaded], *, what: str, kind: ModelKind) -> Loaded:
    """``load(local_only)``: from local files / the HF cache first (no network retries when it is there),
    then from the hub unless the model is a local directory or the hub is offline; errors become one line."""
    try:
        with hf_quiet():
            try:
                return load(True)
            except OSError:
                if base.is_local or hub_offline():
                    raise
                return load(False)
    except BenchError:
        raise
    except Exception as err:
        raise load_error(base, err, what=what, kind=kind) from err


def load_peft_adapter(model: Any, adapter_dir: str) -> Any:
    """``PeftModel.from_pretrained`` for inference (peft imported only here)."""
    mute_bitsandbytes_kernel_notice()
    try:
        from peft import PeftModel
    except ImportError as err:
        raise ModelError(f"adapter {adapter_dir} needs the package peft (pip install peft)") from err
    try:
        with hf_quiet(), warnings.catch_warnings():
            # peft 0.21 calls a transformers API that transformers 5 deprecates; nothing for users to do
            warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing", category=FutureWarning)
            return PeftModel.from_pretrained(model, adapter_dir, is_trainable=False)
    except Exception as err:
        raise ModelError(f"cannot load peft adapter {adapter_dir}: {one_line(err)}") from err


def model_revision(base: ResolvedModel, model: Any, adapter_dir: str | None) -> str | None:
    """The base's content fingerprint (or hub commit), plus the adapter's fingerprint when there is one."""
    revision = base.revision
    if revision is None:
        commit = getattr(model.config, "_commit_hash", None)
        revision = str(commit) if commit else None
    if adapter_dir is not None:
        revision = f"{revision or 'unknown'}+adapter:{fingerprint(adapter_dir)}"
    return revision


class TransformersBackend:
    """Base of the backends that load one transformers model in this process (encoder, hf): the shared argument
    checks, threads, device and dtype policy with its notes, `info()`, `close()` and the efficiency hook.

    On CPU the weights stay fp32 and bf16 runs as autocast (chosen automatically only on CPUs with native bf16);
    on CUDA the weights load in the resolved dtype (`load_dtype`)."""

    name: ClassVar[str]
    kind: ClassVar[ModelKind]  # encoder | causal (what `bench efficiency` times)
    request_kind: RequestKind
    ref: str
    base: ResolvedModel
    revision: str | None
    adapter_dir: str | None
    num_parameters: int
    max_length: int
    notes: tuple[str, ...]
    model: Any
    tokenizer: Any
    _closed: bool

    def _configure(self, config: BackendConfig) -> None:
        """Check the shared arguments, set threads, and resolve device, dtype and CPU autocast."""
        if config.batch_size < 1:
            raise UsageError(f"--batch-size must be at least 1 (got {config.batch_size})")
        if config.max_length is not None and config.max_length < 2:
            raise UsageError(f"--max-length must be at least 2 (got {config.max_length})")
        if config.threads is not None:
            if config.threads < 1:
                raise UsageError(f"--threads must be at least 1 (got {config.threads})")
            torch.set_num_threads(config.threads)
        self.config = config
        self.batch_size = config.batch_size
        self.device: torch.device = resolve_device(config.device)
        self.dtype: torch.dtype = resolve_dtype(config.dtype, self.device)
        self._autocast = self.device.type == "cpu" and self.dtype == torch.bfloat16

    @property
    def load_dtype(self) -> torch.dtype:
        """The weights' dtype: fp32 on CPU (bf16 is autocast there), the resolved dtype on CUDA."""
        return self.dtype if self.device.type == "cuda" else torch.float32

    def _precision_notes(self) -> list[str]:
        """Autocast, the CPU's bf16 verdict under --dtype auto, and emulated precision."""
        notes: list[str] = []
        if self._autocast:
            notes.append("bf16 autocast on CPU over fp32 weights")
        elif (self.device.type == "cpu" and self.config.dtype.strip().lower() == "auto"
              and not cpu_has_fast_bf16()):
            notes.append("CPU lacks avx512_bf16/AMX: fp32 chosen (bf16 would be slower)")
        emulated = precision_note(self.dtype, self.device)
        if emulated:
            notes.append(emulated)
        return notes

    @property
    def prompt_version(self) -> str | None:
        return None

    @property
    def numerics(self) -> Mapping[str, Any] | None:
        """How the scores are computed beyond device and dtype (part of the run identity, see the runner)."""
        return {"autocast": self._autocast}

    def timing_target(self) -> TimingTarget:
        return TimingTarget(model=self.model, tokenizer=self.tokenizer, kind=self.kind, device=self.device,
                            dtype=self.dtype, autocast=self._autocast, max_length=int(self.max_length))

    def info(self) -> ModelInfo:
        return ModelInfo(
            backend=self.name,
            model=self.ref,
            path=self.base.path if self.base.is_local else None,
            revision=self.revision,
            adapter=self.adapter_dir,
            dtype=dtype_name(self.dtype),
            device=describe_device(self.device),
            num_parameters=self.num_parameters,
            max_length=self.max_length,
            threads=torch.get_num_threads(),
            notes=self.notes,
            base_model=self.base.preset or self.base.ref,
            training=read_training_recipe(self.adapter_dir),
        )

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        del self.model
        gc.collect()
        if self.device.type == "cuda":
            torch.cuda.empty_cache()
