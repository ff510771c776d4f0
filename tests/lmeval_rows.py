"""lm-eval's own task object over given rows, offline: what the parity tests compare our requests with."""

from __future__ import annotations

from pathlib import Path
from typing import Any


def configurable_task(yaml_path: str | Path, rows: list[dict[str, Any]]) -> Any:
    """lm-eval's ConfigurableTask from its YAML at ``yaml_path``, over ``rows`` (every split it names): no
    dataset download."""
    import datasets
    from lm_eval.api.task import ConfigurableTask
    from lm_eval.tasks._yaml_loader import load_yaml

    cfg = dict(load_yaml(str(yaml_path), resolve_func=True))
    splits = {cfg.get(k) for k in ("training_split", "validation_split", "test_split", "fewshot_split")} - {None}
    table = datasets.Dataset.from_list(rows)
    cfg["custom_dataset"] = lambda **_: datasets.DatasetDict({str(s): table for s in splits})
    return ConfigurableTask(config=cfg)
