"""The training recipe of a statement-tuned model, as a result file records it (from its adapter's training.json).

Reports name a model's recipe and line up ablations by it (training languages, template language, MT data,
base model), so every `bench run` of an adapter records this summary next to the model it describes.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

TRAINING_FILE = "training.json"
#: Recipe settings an ablation may vary, in the order a report shows them.
ABLATION_SETTINGS = ("base_model", "method", "languages", "template_language", "translation", "per_task",
                     "max_steps", "learning_rate", "max_length")


def training_recipe(training: dict[str, Any]) -> dict[str, Any]:
    """The settings that define a statement-tuning run, from `bench train`'s training.json."""
    config = training.get("config") or {}
    data = (training.get("data") or {}).get("config") or {}
    best = training.get("best") or {}
    languages = data.get("languages") or []
    return {
        "base_model": training.get("base_model_preset") or training.get("base_model"),
        "method": config.get("method"),
        "languages": str(data.get("langs")) if data.get("langs") is not None else None,
        "n_languages": len(languages),
        "template_language": data.get("template_language"),
        "translation": data.get("translation"),
        "per_task": data.get("per_task"),
        "max_steps": config.get("max_steps"),
        "learning_rate": config.get("learning_rate", config.get("lr")),
        "max_length": config.get("max_length"),
        "best_step": best.get("step"),
        "heldout_accuracy": best.get("accuracy"),
        "command": training.get("command"),
    }


def read_training_recipe(model_dir: str | Path | None) -> dict[str, Any] | None:
    """The recipe of a model directory with a training.json (None without one, or when it cannot be read)."""
    if not model_dir:
        return None
    path = Path(model_dir) / TRAINING_FILE
    try:
        training = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return training_recipe(training) if isinstance(training, dict) else None


def describe_recipe(recipe: dict[str, Any] | None) -> str:
    """One short phrase, e.g. "LoRA on me5-small, 25 langs, en templates, +MT, 1000 steps"."""
    if not recipe:
        return "—"
    parts = [f"{str(recipe.get('method') or '?').replace('lora', 'LoRA').replace('qlora', 'QLoRA')} on "
             f"{recipe.get('base_model') or '?'}"]
    langs = recipe.get("languages")
    if langs is not None:
        parts.append(f"{langs} langs" if str(langs).isdigit() else f"langs {langs}")
    if recipe.get("template_language"):
        parts.append(f"{recipe['template_language']} templates")
    if recipe.get("translation") is not None:
        parts.append("+MT" if recipe["translation"] else "no MT")
    if recipe.get("max_steps"):
        parts.append(f"{recipe['max_steps']} steps")
    return ", ".join(parts)
