"""Model presets, reference resolution (preset / local directory / hub id) and weight converters."""

from harness.models.presets import (
    DEFAULT_ENCODER,
    PRESETS,
    ModelPreset,
    ResolvedModel,
    cache_root,
    fingerprint,
    resolve_model,
)

__all__ = [
    "DEFAULT_ENCODER", "PRESETS", "ModelPreset", "ResolvedModel",
    "cache_root", "fingerprint", "resolve_model",
]
