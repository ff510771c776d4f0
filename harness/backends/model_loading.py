"""What the transformers backends share about finding and loading a model: base/adapter resolution,
cache-first loading with a hub fallback, peft adapters, and one-line load errors."""

from __future__ import annotations

import gc
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any, ClassVar, TypeVar

import torch

from harness.backends.base import ModelInfo
from harness.device import describe_device, dtype_name
from harness.errors import BenchError, ModelError, one_line
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


class LoadedModelMixin:
    """`info()` and `close()` of a backend holding one transformers model (encoder and hf backends)."""

    name: ClassVar[str]
    ref: str
    base: ResolvedModel
    revision: str | None
    adapter_dir: str | None
    dtype: torch.dtype
    device: torch.device
    num_parameters: int
    max_length: int
    notes: tuple[str, ...]
    model: Any
    _closed: bool

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
