"""Template sensitivity in reports: per-template accuracy, mean and spread of `bench run --templates all` runs.

Reads only the typed ``EvalRecord.template_sensitivity`` (the tasks' blocks, ``harness.results.sensitivity``);
runs without it (draw mode, causal-LM prompts, older files) are skipped, so the section is empty unless an
all-templates run is given.

How to wire it into a report (``harness.reports.build.build_report``)::

    from harness.reports.sensitivity import sensitivity_blocks

    blocks = sensitivity_blocks([r for r, _ in accuracy_results], options.figures_dir)
    if blocks:
        doc.sections.append(Section("Template sensitivity", blocks, anchor="templates"))
        figures += [b.path for b in blocks if isinstance(b, Figure)]

The pieces are public too: :func:`sensitivity_rows` (the numbers, one dict per model x task x language x
template), :func:`sensitivity_tables` (one :class:`Table` per task), :func:`sensitivity_plot` (one PNG per task)
and :func:`sensitivity_text` (the Markdown tables `bench run --templates all` prints).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from harness.reports.document import Block, Figure, Table
from harness.reports.tables import markdown_table, model_label
from harness.results.schema import (
    EvalRecord,
    LanguageSensitivity,
    ResultRecord,
    RunResult,
    SensitivitySummary,
    TemplateSensitivity,
    as_record,
)

DPI = 120
MEAN_ROW = "mean"  # the per-task summary row (per-template accuracy averaged over languages)


def _label_runs(results: Sequence[ResultRecord | RunResult]) -> list[tuple[str, EvalRecord]]:
    """Runs with template sensitivity, labelled like the report's models (run id appended to a repeated label)."""
    records = [r for r in map(as_record, results) if isinstance(r, EvalRecord)]
    kept = [r for r in records if r.template_sensitivity]
    labels = [model_label(r) for r in kept]
    return [(f"{label} ({r.run_id[-12:]})" if labels.count(label) > 1 else label, r)
            for label, r in zip(labels, kept, strict=True)]


def _tasks(runs: Sequence[tuple[str, EvalRecord]]) -> list[str]:
    return list(dict.fromkeys(t for _, r in runs for t in r.template_sensitivity))


def _blocks(runs: Sequence[tuple[str, EvalRecord]], task: str) -> list[TemplateSensitivity]:
    return [r.template_sensitivity[task] for _, r in runs if task in r.template_sensitivity]


def _template_ids(runs: Sequence[tuple[str, EvalRecord]], task: str) -> list[str]:
    ids: dict[str, None] = {}
    for block in _blocks(runs, task):
        for lang in block.languages.values():
            ids.update(dict.fromkeys(lang.templates))
    return list(ids)


def _groups(runs: Sequence[tuple[str, EvalRecord]], task: str) -> tuple[str | None, dict[str, Any]]:
    for block in _blocks(runs, task):
        if block.group_field:
            return str(block.group_field), dict(block.groups or {})
    return None, {}


def _num(value: Any) -> float:
    try:
        f = float(value)
    except (TypeError, ValueError):
        return math.nan
    return f


def _pct(value: Any) -> str:
    f = _num(value)
    return "–" if not math.isfinite(f) else f"{100 * f:.1f}"


def sensitivity_rows(results: Sequence[ResultRecord | RunResult]) -> list[dict[str, Any]]:
    """The numbers behind the table and figure: one dict per (model, task, language, template) with keys
    ``model``, ``task``, ``language``, ``template``, ``group`` (None unless grouped), ``accuracy`` (fraction or
    NaN) and ``n``; plus, for each (model, task), rows with ``language == "mean"`` holding the per-template mean
    over languages (``n`` = the examples summed over languages)."""
    rows: list[dict[str, Any]] = []
    for label, r in _label_runs(results):
        for task, block in r.template_sensitivity.items():
            groups = block.groups or {}
            totals: dict[str, int] = {}
            for lang, lb in block.languages.items():
                for tid, cell in lb.templates.items():
                    n = int(cell.n or 0)
                    totals[tid] = totals.get(tid, 0) + n
                    rows.append({"model": label, "task": task, "language": lang, "template": tid,
                                 "group": groups.get(tid), "accuracy": _num(cell.accuracy), "n": n})
            for tid, acc in block.summary.templates.items():
                rows.append({"model": label, "task": task, "language": MEAN_ROW, "template": tid,
                             "group": groups.get(tid), "accuracy": _num(acc), "n": totals.get(tid, 0)})
    return rows


def _stat_cells(block: LanguageSensitivity | SensitivitySummary) -> list[str]:
    return [_pct(block.mean), f"{_pct(block.min)}–{_pct(block.max)} ({_pct(block.spread)})", _pct(block.std)]


def _task_rows(runs: Sequence[tuple[str, EvalRecord]], task: str, ids: Sequence[str]) -> list[list[str]]:
    rows: list[list[str]] = []
    for label, r in runs:
        tr = r.tasks.get(task)
        block = r.template_sensitivity.get(task)
        if block is None:
            continue
        for lang, lb in block.languages.items():
            cells = [f"{_pct(c.accuracy)} ({c.n})" if (c := lb.templates.get(tid)) else "" for tid in ids]
            rows.append([label, lang, "" if lb.n is None else str(lb.n), *cells, *_stat_cells(lb),
                         _pct(lb.ensemble_accuracy)])
        summary = block.summary
        means = summary.templates
        cells = [_pct(means[tid]) if tid in means else "" for tid in ids]
        ensemble = tr.mean_accuracy if tr is not None else math.nan
        rows.append([label, f"**{MEAN_ROW}**", str(tr.n_examples if tr is not None else ""), *cells,
                     *_stat_cells(summary), _pct(ensemble)])
    return rows


def _headers(ids: Sequence[str], groups: Mapping[str, Any]) -> list[str]:
    return ["model", "language", "n", *[f"{tid} ({groups[tid]})" if groups.get(tid) else tid for tid in ids],
            "mean", "min–max (spread)", "std", "ensemble"]


def sensitivity_tables(results: Sequence[ResultRecord | RunResult]) -> list[Table]:
    """One Table per task (first-appearance order) over the runs that have template sensitivity: rows = model x
    language, then a **mean** row per model (each template's accuracy averaged over languages; the statistics over
    those means; ensemble = the task's mean accuracy). Cells are accuracy % with n in brackets; "mean",
    "min–max (spread)" and "std" are over templates (population std, in points); "ensemble" is the run's own
    accuracy (mean P(True) over templates per candidate). Empty list when no run has template sensitivity."""
    runs = _label_runs(results)
    tables = []
    for task in _tasks(runs):
        ids = _template_ids(runs, task)
        group_field, groups = _groups(runs, task)
        note = (f" Grouped templates (by {group_field!r}): a template is scored only on its group's examples, so "
                "its n is that group's." if group_field else "")
        tables.append(Table(_headers(ids, groups), _task_rows(runs, task, ids), align="ll" + "r" * (len(ids) + 5),
                            caption=f"{task}: accuracy (%) per statement template (n), mean, min–max (spread) and "
                                    f"std over templates, and the all-template ensemble.{note}"))
    return tables


def sensitivity_plot(results: Sequence[ResultRecord | RunResult], task: str, path: Path) -> Path | None:
    """One PNG for ``task``: a panel per model; per language, each template's accuracy (%) as a point (one colour
    and marker per template, fixed left-to-right offsets, no jitter), a grey min–max bar, a black tick at the mean
    over templates and a star at the ensemble accuracy. Returns the path written, or None with nothing to draw."""
    runs = [(label, r) for label, r in _label_runs(results) if task in r.template_sensitivity]
    if not runs:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ids = _template_ids(runs, task)
    _, groups = _groups(runs, task)
    colours = plt.get_cmap("tab10")
    markers = "osD^v<>pPX"
    n_langs = max(len(r.template_sensitivity[task].languages) for _, r in runs) or 1
    fig, axes = plt.subplots(len(runs), 1, figsize=(max(6.0, 0.9 * n_langs + 3.0), 3.6 * len(runs)), squeeze=False)
    width = 0.6
    for ax, (label, r) in zip(axes[:, 0], runs, strict=True):
        tr = r.tasks[task]
        block = r.template_sensitivity[task]
        langs = list(block.languages)
        for x, lang in enumerate(langs):
            lb = block.languages[lang]
            lo, hi = _num(lb.min), _num(lb.max)
            if math.isfinite(lo) and math.isfinite(hi):
                ax.vlines(x, 100 * lo, 100 * hi, color="#bbbbbb", linewidth=6, zorder=1)
            mean = _num(lb.mean)
            if math.isfinite(mean):
                ax.hlines(100 * mean, x - width / 2, x + width / 2, color="black", linewidth=1.5, zorder=2)
            ensemble = _num(lb.ensemble_accuracy)
            if math.isfinite(ensemble):
                ax.scatter([x + width / 2 + 0.08], [100 * ensemble], marker="*", s=90, color="black", zorder=4)
        for k, tid in enumerate(ids):
            offset = (k - (len(ids) - 1) / 2) * (width / max(len(ids), 1))
            xs, ys = [], []
            for x, lang in enumerate(langs):
                cell = block.languages[lang].templates.get(tid)
                value = _num(cell.accuracy) if cell else math.nan
                if math.isfinite(value):
                    xs.append(x + offset)
                    ys.append(100 * value)
            name = f"{tid} ({groups[tid]})" if groups.get(tid) else tid
            ax.scatter(xs, ys, color=colours(k % 10), marker=markers[k % len(markers)], s=28, zorder=3,
                       edgecolors="black", linewidths=0.4, label=name)
        if tr.chance is not None and math.isfinite(tr.chance):
            ax.axhline(tr.chance, linestyle="--", color="grey", linewidth=1, label=f"chance ({tr.chance:.1f}%)")
        ax.scatter([], [], marker="*", s=90, color="black", label="ensemble")
        ax.set_xticks(range(len(langs)), langs, fontsize=9)
        ax.set_xlim(-0.7, max(len(langs), 1) - 0.3)
        ax.set_ylabel("accuracy (%)")
        ax.set_title(f"{task}: {label}", fontsize=10)
        ax.grid(axis="y", alpha=0.3)
        ax.legend(fontsize=7, loc="center left", bbox_to_anchor=(1.01, 0.5))
    axes[-1, 0].set_xlabel("language (bar: min–max over templates; tick: mean over templates)")
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=DPI)
    plt.close(fig)
    return path


def sensitivity_blocks(results: Sequence[ResultRecord | RunResult], figures_dir: Path | None) -> list[Block]:
    """The report section's blocks for ``results`` (typed RunResults, e.g. ``[r for r, _ in results]``): an
    explanatory paragraph, then per task its :func:`sensitivity_tables` Table and (when ``figures_dir`` is given)
    a Figure of ``figures_dir / "templates-<task>.png"`` (:func:`sensitivity_plot`). Returns [] when no run has
    template sensitivity (then add no section). The figures written are the ``Figure`` blocks' paths."""
    tables = sensitivity_tables(results)
    if not tables:
        return []
    runs = _label_runs(results)
    blocks: list[Block] = [
        "Runs made with `bench run --templates all` score every statement template on every example (grouped "
        "templates only on their group's examples). Per template: accuracy (%) and n; over templates: mean, "
        "min–max (spread) and population std (points). The ensemble (the run's reported accuracy) ranks candidates "
        "by their mean score over templates. The **mean** rows average each template's accuracy over languages."]
    for task, table in zip(_tasks(runs), tables, strict=True):
        blocks.append(table)
        if figures_dir is not None:
            path = sensitivity_plot(results, task, Path(figures_dir) / f"templates-{task}.png")
            if path is not None:
                blocks.append(Figure(path, f"{task}: accuracy (%) per statement template and language; bar = "
                                           "min–max over templates, tick = mean, star = ensemble"))
    return blocks


def sensitivity_text(result: EvalRecord | RunResult) -> str:
    """Markdown tables of one run's template sensitivity (what `bench run --templates all` prints); "" without."""
    parts = []
    for table in sensitivity_tables([result]):
        rows = [row[1:] for row in table.rows]  # one run: no model column
        parts.append(f"{table.caption}\n{markdown_table(table.headers[1:], rows, align=(table.align or '')[1:])}")
    return "\n\n".join(parts)
