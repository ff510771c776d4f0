"""Model presets, reference resolution (preset / local directory / hub id) and weight converters."""

from harness.models.presets import (
    DEFAULT_CAUSAL,
    DEFAULT_ENCODER,
    DEFAULT_ENCODER_BASE,
    PRESETS,
    ModelPreset,
    ResolvedModel,
    cache_root,
    config_metadata,
    fingerprint,
    load_shipped_config,
    resolve_model,
    shipped_config_path,
)

__all__ = [
    "DEFAULT_CAUSAL", "DEFAULT_ENCODER", "DEFAULT_ENCODER_BASE", "PRESETS", "ModelPreset", "ResolvedModel",
    "cache_root", "config_metadata", "fingerprint", "load_shipped_config", "resolve_model", "shipped_config_path",
]
