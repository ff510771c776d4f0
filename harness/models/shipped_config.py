"""The upstream config.json files shipped for hub-only presets (``harness/models/configs/<preset>.json``).

They let the harness build a hub preset's true architecture offline (random weights, or on the meta device) where
only shapes matter; `config_metadata` reads the numbers a `ModelPreset` records from such a config.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from harness.errors import ModelError
from harness.models.cache import read_json_object
from harness.models.presets import ModelPreset, get_preset

_MODELS_DIR = Path(__file__).resolve().parent
#: keys the harness adds to a shipped config.json (never upstream keys); stripped by `load_shipped_config`
HARNESS_CONFIG_KEYS = ("_statement_bench_provenance",)


def shipped_config_path(preset: str | ModelPreset) -> Path:
    """The upstream config.json shipped for a hub-only preset (``harness/models/configs/<preset>.json``).
    ModelError if the preset ships none or the file is missing."""
    p = get_preset(preset)
    if not p.shipped_config:
        raise ModelError(f"preset {p.name} ships no config.json (source {p.source})")
    path = Path(p.shipped_config)
    if not path.is_absolute():
        path = _MODELS_DIR / path
    if not path.is_file():
        raise ModelError(f"shipped config {path} of preset {p.name} is missing; reinstall statement-bench")
    return path


def shipped_config_dict(preset: str | ModelPreset) -> dict[str, Any]:
    """The shipped config.json of a hub-only preset as a dict, without the harness's own keys."""
    data = read_json_object(shipped_config_path(preset), "shipped config")
    return {k: v for k, v in data.items() if k not in HARNESS_CONFIG_KEYS}


def load_shipped_config(preset: str | ModelPreset) -> Any:
    """A transformers ``PretrainedConfig`` built from the shipped config.json (true architecture, no weights;
    e.g. ``with torch.device("meta"): AutoModelForCausalLM.from_config(cfg)``)."""
    from transformers import AutoConfig

    data = shipped_config_dict(preset)
    model_type = data.pop("model_type", None)
    if not model_type:
        raise ModelError(f"shipped config of preset {get_preset(preset).name} has no model_type")
    return AutoConfig.for_model(str(model_type), **data)


def config_metadata(config: dict[str, Any]) -> dict[str, int]:
    """``layers``, ``hidden_size``, ``vocab_size`` and ``max_length`` as a config.json states them (what
    `ModelPreset` records). RoBERTa-style position tables reserve ``pad_token_id + 1`` rows, so XLM-R's 514
    positions give 512 tokens."""
    def first(*keys: str) -> int:
        for key in keys:
            value = config.get(key)
            if isinstance(value, int) and not isinstance(value, bool):
                return value
        return 0

    max_length = first("max_position_embeddings", "n_positions", "seq_length")
    if config.get("model_type") in ("roberta", "xlm-roberta", "xlm-roberta-xl", "camembert") and max_length:
        max_length -= first("pad_token_id") + 1
    return {
        "layers": first("num_hidden_layers", "n_layer", "num_layers"),
        "hidden_size": first("hidden_size", "n_embd", "d_model"),
        "vocab_size": first("vocab_size"),
        "max_length": max_length,
    }
