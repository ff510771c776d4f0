"""The tidy long table behind every report: one row per (model, task, language, metric), for pandas users.

Columns: model, task, language ("mean" = the unweighted mean over languages), metric ("acc" / "acc_norm"),
value (fraction), n, ci_low, ci_high, plus run_id, backend, parameters and source ("measured" or "published").
Published rows come from the shipped reference table and are only ever marked as such.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources
from typing import Any

import pandas as pd

from harness.results.schema import EvalRecord

COLUMNS = ["model", "task", "language", "metric", "value", "n", "ci_low", "ci_high", "run_id", "backend",
           "parameters", "source"]
REFERENCES = ("seed",)


@dataclass(frozen=True)
class LabelledRun:
    """A result with the unique label a report uses for it."""

    label: str
    result: EvalRecord
    samples_path: str | None  # per-sample JSONL (None for efficiency-only results)


def _nan(value: Any) -> float:
    return math.nan if value is None else float(value)


def accuracy_frame(runs: Sequence[LabelledRun]) -> pd.DataFrame:
    rows: list[dict[str, Any]] = []
    for run in runs:
        r = run.result
        params = _nan(r.model.num_parameters)
        base = {"model": run.label, "run_id": r.run_id, "backend": r.model.backend if "backend" in r.model else "",
                "parameters": params, "source": "measured"}
        for task, tr in r.tasks.items():
            for lang, lr in tr.languages.items():
                rows.append({**base, "task": task, "language": lang, "metric": "acc", "value": lr.accuracy,
                             "n": lr.n, "ci_low": lr.ci95_low, "ci_high": lr.ci95_high})
                if lr.acc_norm is not None:
                    rows.append({**base, "task": task, "language": lang, "metric": "acc_norm",
                                 "value": lr.acc_norm, "n": lr.n, "ci_low": math.nan, "ci_high": math.nan})
            rows.append({**base, "task": task, "language": "mean", "metric": "acc", "value": tr.mean_accuracy,
                         "n": tr.n_examples, "ci_low": tr.mean_ci95_low, "ci_high": tr.mean_ci95_high})
            if tr.mean_acc_norm is not None:
                rows.append({**base, "task": task, "language": "mean", "metric": "acc_norm",
                             "value": tr.mean_acc_norm, "n": tr.n_examples,
                             "ci_low": _nan(tr.mean_acc_norm_ci95_low), "ci_high": _nan(tr.mean_acc_norm_ci95_high)})
    return pd.DataFrame(rows, columns=COLUMNS)


@lru_cache(maxsize=4)
def reference_table(name: str) -> dict[str, Any]:
    """A published reference shipped with the package (``harness/reports/data/<name>_main_table.json``)."""
    from harness.errors import UsageError

    if name not in REFERENCES:
        raise UsageError(f"--reference {name!r}: choose one of {', '.join(REFERENCES)} or none")
    text = resources.files("harness.reports").joinpath("data", f"{name}_main_table.json").read_text(encoding="utf-8")
    data: dict[str, Any] = json.loads(text)
    return data


def published_frame(name: str) -> pd.DataFrame:
    ref = reference_table(name)
    rows = [{"model": f"{row['model']} (published)", "task": task, "language": "mean", "metric": "acc",
             "value": score / 100, "n": 0, "ci_low": math.nan, "ci_high": math.nan, "run_id": f"published:{name}",
             "backend": row["kind"], "parameters": float(row["parameters"]), "source": "published"}
            for row in ref["rows"] for task, score in row["scores"].items()]
    return pd.DataFrame(rows, columns=COLUMNS)


def tidy_frame(runs: Sequence[LabelledRun], reference: str | None) -> pd.DataFrame:
    frames = [accuracy_frame(runs)]
    if reference:
        frames.append(published_frame(reference))
    frames = [f for f in frames if not f.empty]
    if not frames:
        return pd.DataFrame(columns=COLUMNS)
    return pd.concat(frames, ignore_index=True)
