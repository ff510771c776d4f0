"""Plain Markdown tables of result files: per run (language x task) and across runs."""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from pathlib import PurePath

from harness.results.schema import EvalRecord, RunResult, TaskResult, as_record


def markdown_table(headers: Sequence[str], rows: Sequence[Sequence[str]], align: str | None = None) -> str:
    """GitHub Markdown table, padded so it also reads well in a terminal (a newline in a cell becomes a space)."""
    headers = [" ".join(h.split("\n")) for h in headers]
    rows = [[" ".join(c.split("\n")) for c in row] for row in rows]
    widths = [len(h) for h in headers]
    for row in rows:
        widths = [max(w, len(c)) for w, c in zip(widths, row, strict=True)]
    align = align or "l" + "r" * (len(headers) - 1)
    def line(cells: Sequence[str]) -> str:
        padded = [c.ljust(w) if a == "l" else c.rjust(w) for c, w, a in zip(cells, widths, align, strict=True)]
        return "| " + " | ".join(padded) + " |"
    rule = "|" + "|".join(("-" * (w + 1) + ":" if a == "r" else ":" + "-" * (w + 1))
                          for w, a in zip(widths, align, strict=True)) + "|"
    return "\n".join([line(headers), rule, *[line(r) for r in rows]])


def pct(value: float) -> str:
    return "–" if value is None or not math.isfinite(value) else f"{100 * value:.1f}"


def _opt_pct(value: float | None) -> str:
    return "" if value is None else pct(value)


def ci(low: float, high: float) -> str:
    if not (math.isfinite(low) and math.isfinite(high)):
        return ""
    return f"[{100 * low:.1f}, {100 * high:.1f}]"


def model_label(result: EvalRecord | RunResult) -> str:
    """backend:model(+adapter), from the record (a `RunResult` is read as its record)."""
    m = as_record(result).model
    label = f"{m.backend}:{m.model}"
    adapter = m.adapter
    # an adapter that --model itself named (a preset such as me5-small-st, or an adapter dir) is already in the label
    if adapter and PurePath(str(adapter)).name != PurePath(str(m.model)).name:
        label += f"+{adapter}"
    return label


def _union(groups: Iterable[Iterable[str]]) -> list[str]:
    """Items of all groups, each once, in order of first appearance."""
    return list(dict.fromkeys(item for group in groups for item in group))


def _language_rows(columns: Sequence[TaskResult]) -> list[list[str]]:
    """One row per language (union over columns): accuracy % (n), blank where a column lacks it."""
    rows = []
    for lang in _union(c.languages for c in columns):
        cells = [c.languages.get(lang) for c in columns]
        rows.append([lang, *(f"{pct(lr.accuracy)} ({lr.n})" if lr else "" for lr in cells)])
    return rows


def run_table(result: EvalRecord | RunResult) -> str:
    """Languages as rows, tasks as columns: accuracy % (n); last rows: unweighted mean and its 95% CI (a
    `RunResult` just written is read as its record)."""
    record = as_record(result)
    if not isinstance(record, EvalRecord):
        return ""
    result = record
    tasks = list(result.tasks)
    rows = _language_rows([result.tasks[t] for t in tasks])
    rows.append(["**mean**"] + [f"**{pct(result.tasks[t].mean_accuracy)}** ({result.tasks[t].n_languages} langs)"
                                for t in tasks])
    rows.append(["95% CI"] + [ci(result.tasks[t].mean_ci95_low, result.tasks[t].mean_ci95_high) for t in tasks])
    if any(result.tasks[t].mean_acc_norm is not None for t in tasks):
        rows.append(["acc_norm"] + [_opt_pct(result.tasks[t].mean_acc_norm) for t in tasks])
    return markdown_table(["lang", *tasks], rows)
