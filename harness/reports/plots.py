"""Figures (PNG) for `bench report`, drawn from the tidy frames the report builder assembles.

Each plot has a pure data helper (``heatmap_matrix``, ``parameter_points``, ``pareto_points``) that computes exactly
the numbers drawn, so tests and tables can check the content without reading pixels. Plot functions return the
path written, or None when there is nothing to draw. Drawing is deterministic (no jitter, fixed orders, fixed
figure sizes for a given input), uses the Agg backend, and colour-blind-safe colours (tab10 / RdBu).

Frames (columns guaranteed by the builder):

* ``accuracy``: one row per (run, task, language, metric): ``model``, ``task``, ``language`` ("mean" = unweighted
  mean over languages), ``metric`` ("acc" / "acc_norm"), ``value`` (fraction, may be NaN), ``n``, ``ci_low``,
  ``ci_high`` (fractions), ``parameters`` (may be NaN), ``backend``, ``source`` ("measured" / "published").
* ``throughput``: one row per model: ``model``, ``device``, ``examples_per_s``, ``estimated`` (bool).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

if TYPE_CHECKING:
    from matplotlib.figure import Figure

__all__ = [
    "DPI",
    "accuracy_vs_parameters",
    "heatmap_matrix",
    "language_heatmap",
    "parameter_points",
    "pareto_accuracy_throughput",
    "pareto_front",
    "pareto_points",
]

DPI = 120
METRIC = "acc"  # every figure compares plain accuracy; acc_norm lives in the tables only
MEASURED_COLOR = "tab:blue"
PUBLISHED_COLOR = "tab:orange"
ESTIMATED_COLOR = "tab:orange"
FRONT_COLOR = "tab:green"


def _has(frame: pd.DataFrame, columns: Sequence[str]) -> bool:
    return not frame.empty and all(c in frame.columns for c in columns)


def _ordered_unique(values: Any) -> list[str]:
    """Distinct values in order of first appearance (a stable, input-driven order for rows and colours)."""
    return list(dict.fromkeys(str(v) for v in values))


def _finite(value: Any) -> bool:
    try:
        return math.isfinite(float(value))
    except (TypeError, ValueError):
        return False


def _save(fig: Figure, path: Path) -> Path:
    import matplotlib.pyplot as plt

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=DPI)
    plt.close(fig)
    return path


def _pyplot() -> Any:
    """pyplot on the Agg backend, imported lazily so that importing this module never needs a display."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


# --------------------------------------------------------------------------------------------------------------
# language heatmap


def heatmap_matrix(accuracy: pd.DataFrame, task: str) -> pd.DataFrame:
    """Measured plain accuracy (%) of one task: models (rows, first-appearance order) x languages (sorted).

    The per-language view shows where a model transfers and where it does not, which the mean hides.
    Missing (model, language) cells are NaN; a duplicated cell keeps its first row.
    """
    if not _has(accuracy, ("model", "task", "language", "metric", "value", "source")):
        return pd.DataFrame()
    sub = accuracy[(accuracy["task"] == task) & (accuracy["metric"] == METRIC)
                   & (accuracy["source"] == "measured") & (accuracy["language"] != "mean")]
    if sub.empty:
        return pd.DataFrame()
    sub = sub.drop_duplicates(["model", "language"], keep="first")
    matrix = sub.pivot(index="model", columns="language", values="value").astype(float) * 100
    matrix = matrix.reindex(index=_ordered_unique(sub["model"]), columns=sorted(_ordered_unique(sub["language"])))
    matrix.index.name, matrix.columns.name = "model", "language"
    return matrix


def language_heatmap(accuracy: pd.DataFrame, task: str, path: Path, *, title: str | None = None,
                     chance: float | None = None) -> Path | None:
    """Models x languages heatmap of one task, cells annotated with accuracy %, colours diverging at chance.

    Centring the colormap on chance (%, the task's, which the caller knows) makes below-chance languages (red)
    stand out from real transfer (blue); without it a sequential colormap. ``title`` names the task (default:
    ``task``).
    """
    matrix = heatmap_matrix(accuracy, task)
    values = matrix.to_numpy(dtype=float) if not matrix.empty else np.empty((0, 0))
    finite = values[np.isfinite(values)]
    if finite.size == 0:
        return None
    plt = _pyplot()
    from matplotlib import colors

    if chance is not None and not _finite(chance):
        chance = None
    cmap = plt.get_cmap("RdBu" if chance is not None else "viridis").with_extremes(bad="#dddddd")
    norm: colors.Normalize
    if chance is not None:
        vmin = max(0.0, min(float(finite.min()), chance - 10))
        vmax = min(100.0, max(float(finite.max()), chance + 10))
        norm = colors.TwoSlopeNorm(vcenter=chance, vmin=vmin, vmax=vmax)
    else:
        low, high = float(finite.min()), float(finite.max())
        norm = colors.Normalize(vmin=low, vmax=high if high > low else low + 1)

    n_models, n_langs = matrix.shape
    fig, ax = plt.subplots(figsize=(max(6.0, 0.75 * n_langs + 4.0), max(3.0, 0.45 * n_models + 2.0)))
    image = ax.imshow(np.ma.masked_invalid(values), cmap=cmap, norm=norm, aspect="auto")
    for i in range(n_models):
        for j in range(n_langs):
            v = values[i, j]
            if math.isfinite(v):
                r, g, b, _ = cmap(norm(v))
                text_color = "black" if 0.299 * r + 0.587 * g + 0.114 * b > 0.5 else "white"
                ax.text(j, i, f"{v:.1f}", ha="center", va="center", fontsize=8, color=text_color)
            else:
                ax.text(j, i, "–", ha="center", va="center", fontsize=8, color="black")
    ax.set_xticks(range(n_langs), [str(c) for c in matrix.columns], fontsize=9)
    ax.set_yticks(range(n_models), [str(m) for m in matrix.index], fontsize=8)
    ax.set_xlabel("language")
    ax.set_ylabel("model")
    centre = f"; white = chance ({chance:.1f}%)" if chance is not None else ""
    ax.set_title(f"{title or task}: measured accuracy by language ({METRIC}){centre}", fontsize=10)
    fig.colorbar(image, ax=ax).set_label("accuracy (%)")
    fig.tight_layout()
    return _save(fig, path)


# --------------------------------------------------------------------------------------------------------------
# accuracy vs parameters


def parameter_points(accuracy: pd.DataFrame) -> pd.DataFrame:
    """One row per (model, task) with a known parameter count: mean-over-languages accuracy and its 95% CI (%).

    Columns: model, task, source, parameters, y, ci_low, ci_high (CIs NaN for published rows). Rows with NaN or
    non-positive parameters (a log axis cannot place them) or NaN accuracy are dropped. Sorted by task, then
    source, then parameters, then model.
    """
    columns = ["model", "task", "source", "parameters", "y", "ci_low", "ci_high"]
    if not _has(accuracy, ("model", "task", "language", "metric", "value", "ci_low", "ci_high", "parameters",
                           "source")):
        return pd.DataFrame(columns=columns)
    sub = accuracy[(accuracy["language"] == "mean") & (accuracy["metric"] == METRIC)]
    params = pd.to_numeric(sub["parameters"], errors="coerce")
    value = pd.to_numeric(sub["value"], errors="coerce")
    sub = sub[np.isfinite(params) & (params > 0) & np.isfinite(value)]
    if sub.empty:
        return pd.DataFrame(columns=columns)
    out = pd.DataFrame({
        "model": sub["model"].astype(str),
        "task": sub["task"].astype(str),
        "source": sub["source"].astype(str),
        "parameters": sub["parameters"].astype(float),
        "y": sub["value"].astype(float) * 100,
        "ci_low": pd.to_numeric(sub["ci_low"], errors="coerce").astype(float) * 100,
        "ci_high": pd.to_numeric(sub["ci_high"], errors="coerce").astype(float) * 100,
    })
    out = out.drop_duplicates(["model", "task", "source"], keep="first")
    return out.sort_values(["task", "source", "parameters", "model"], kind="stable").reset_index(drop=True)


def accuracy_vs_parameters(accuracy: pd.DataFrame, path: Path, *, titles: Mapping[str, str] | None = None,
                           chance: Mapping[str, float] | None = None) -> Path | None:
    """One panel per task: mean accuracy against parameter count (log x), measured with CIs vs the seed paper.

    Shows whether a small statement-tuned encoder keeps up with LLMs orders of magnitude larger. ``titles``
    (task -> display name) names the panels and orders them (tasks it lacks follow, sorted); ``chance`` (task ->
    chance accuracy %) draws a dashed chance line in the panels of the tasks it has.
    """
    points = parameter_points(accuracy)
    if points.empty:
        return None
    titles = titles or {}
    chance = chance or {}
    plt = _pyplot()
    present = set(points["task"].unique())
    tasks = [t for t in titles if t in present] + sorted(present - set(titles))
    ncols = 1 if len(tasks) == 1 else 2
    nrows = math.ceil(len(tasks) / ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(6.0 * ncols, 4.5 * nrows), squeeze=False)
    for k, ax in enumerate(axes.flat):
        if k >= len(tasks):
            ax.set_visible(False)
            continue
        task = tasks[k]
        rows = points[points["task"] == task]
        measured = rows[rows["source"] == "measured"]
        published = rows[rows["source"] != "measured"]
        if not measured.empty:
            y = measured["y"].to_numpy(dtype=float)
            low = np.nan_to_num(y - measured["ci_low"].to_numpy(dtype=float), nan=0.0).clip(min=0)
            high = np.nan_to_num(measured["ci_high"].to_numpy(dtype=float) - y, nan=0.0).clip(min=0)
            ax.errorbar(measured["parameters"], y, yerr=[low, high], fmt="o", color=MEASURED_COLOR,
                        ecolor=MEASURED_COLOR, elinewidth=1, capsize=3, markersize=6, label="measured (95% CI)")
        if not published.empty:
            ax.scatter(published["parameters"], published["y"], marker="s", s=40, facecolors="none",
                       edgecolors=PUBLISHED_COLOR, linewidths=1.5, label="published (seed paper)")
        for _, row in rows.iterrows():
            ax.annotate(str(row["model"]), (row["parameters"], row["y"]), xytext=(4, 4), textcoords="offset points",
                        fontsize=7)
        level = chance.get(task)
        if level is not None and _finite(level):
            ax.axhline(level, linestyle="--", color="grey", linewidth=1, label=f"chance ({level:.1f}%)")
        ax.set_xscale("log")
        ax.margins(x=0.15, y=0.12)  # room for the labels of the outermost points
        ax.set_title(titles.get(task, task))
        ax.set_xlabel("parameters (log scale)")
        ax.set_ylabel("mean accuracy over languages (%)")
        ax.grid(which="both", alpha=0.3)
        ax.legend(fontsize=7, loc="best")
    fig.suptitle(f"Accuracy vs model size ({METRIC}, unweighted mean over languages)")
    fig.tight_layout()
    return _save(fig, path)


# --------------------------------------------------------------------------------------------------------------
# accuracy vs throughput / cost (Pareto)


def pareto_front(points: Sequence[tuple[float, float]]) -> list[int]:
    """Indices of the non-dominated points when maximising both coordinates, sorted by x (then index).

    A point is dominated only if another point is >= in both coordinates and > in at least one, so exact
    duplicates of a front point are all on the front. Points with a NaN coordinate are never on the front and
    dominate nothing.
    """
    pts = [(float(x), float(y)) for x, y in points]
    ok = [i for i, (x, y) in enumerate(pts) if not (math.isnan(x) or math.isnan(y))]
    front = []
    for i in ok:
        xi, yi = pts[i]
        dominated = any(
            pts[j][0] >= xi and pts[j][1] >= yi and (pts[j][0] > xi or pts[j][1] > yi) for j in ok if j != i
        )
        if not dominated:
            front.append(i)
    return sorted(front, key=lambda i: (pts[i][0], i))


def pareto_points(accuracy: pd.DataFrame, throughput: pd.DataFrame,
                  gpu_price_per_hour: float | None = None) -> pd.DataFrame:
    """Per model: speed or cost-efficiency (x) against accuracy (y, %), and whether it is on the Pareto front.

    y is the unweighted mean, over the tasks the model has, of its measured per-task "mean" ``acc`` rows (so it
    is only comparable between models that ran the same tasks: ``n_tasks`` says how many). x is examples/s, or,
    given ``gpu_price_per_hour`` (US$), examples per US$ = examples_per_s * 3600 / price. Models are joined on
    ``model``; a model with several throughput rows keeps a measured one before an estimated one. Models without
    a finite positive x or a finite y are left out. Columns: model, device, x, y, n_tasks, estimated, on_front;
    sorted by x, then model.
    """
    columns = ["model", "device", "x", "y", "n_tasks", "estimated", "on_front"]
    if gpu_price_per_hour is not None and not (_finite(gpu_price_per_hour) and gpu_price_per_hour > 0):
        raise ValueError(f"gpu_price_per_hour must be a positive number, got {gpu_price_per_hour!r}")
    if not _has(accuracy, ("model", "task", "language", "metric", "value", "source")) or not _has(
            throughput, ("model", "device", "examples_per_s", "estimated")):
        return pd.DataFrame(columns=columns)
    sub = accuracy[(accuracy["language"] == "mean") & (accuracy["metric"] == METRIC)
                   & (accuracy["source"] == "measured")]
    sub = sub.assign(value=pd.to_numeric(sub["value"], errors="coerce").astype(float))
    sub = sub[np.isfinite(sub["value"])]
    if sub.empty:
        return pd.DataFrame(columns=columns)
    per_task = sub.groupby(["model", "task"], sort=True)["value"].mean()
    acc = per_task.groupby(level="model").agg(["mean", "count"])
    acc = pd.DataFrame({"model": acc.index.astype(str), "y": acc["mean"].to_numpy() * 100,
                        "n_tasks": acc["count"].to_numpy().astype(int)})

    tp = throughput.assign(model=throughput["model"].astype(str),
                           estimated=throughput["estimated"].fillna(False).astype(bool),
                           examples_per_s=pd.to_numeric(throughput["examples_per_s"], errors="coerce").astype(float))
    tp = tp[np.isfinite(tp["examples_per_s"]) & (tp["examples_per_s"] > 0)]
    tp = tp.sort_values("estimated", kind="stable").drop_duplicates("model", keep="first")
    merged = acc.merge(tp[["model", "device", "examples_per_s", "estimated"]], on="model", how="inner")
    if merged.empty:
        return pd.DataFrame(columns=columns)
    scale = 1.0 if gpu_price_per_hour is None else 3600.0 / float(gpu_price_per_hour)
    merged["x"] = merged["examples_per_s"] * scale
    merged["device"] = merged["device"].astype(str)
    merged = merged.sort_values(["x", "model"], kind="stable").reset_index(drop=True)
    front = set(pareto_front(list(zip(merged["x"], merged["y"], strict=True))))
    merged["on_front"] = [i in front for i in range(len(merged))]
    return merged[columns]


def pareto_accuracy_throughput(accuracy: pd.DataFrame, throughput: pd.DataFrame, path: Path, *,
                               gpu_price_per_hour: float | None = None) -> Path | None:
    """Accuracy against examples/s (or examples per US$), with the Pareto frontier as a step line.

    The frontier names the models worth considering: every other model is both slower (or dearer) and less
    accurate than one on it. Estimated throughputs are drawn hollow and hatched so they are never read as measured.
    """
    points = pareto_points(accuracy, throughput, gpu_price_per_hour)
    if points.empty:
        return None
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(8.0, 5.5))
    measured = points[~points["estimated"]]
    estimated = points[points["estimated"]]
    if not measured.empty:
        ax.scatter(measured["x"], measured["y"], s=50, color=MEASURED_COLOR, edgecolors="black", linewidths=0.5,
                   label="measured throughput", zorder=3)
    if not estimated.empty:
        ax.scatter(estimated["x"], estimated["y"], s=70, facecolors="none", edgecolors=ESTIMATED_COLOR,
                   hatch="////", linewidths=1.5, label="estimated throughput", zorder=3)
    front = points[points["on_front"]]
    # hollow rings mark the front points, so a one-point front (no line to draw) still shows
    ax.step(front["x"], front["y"], where="pre", color=FRONT_COLOR, linestyle="-", linewidth=1.5, marker="o",
            markersize=13, markerfacecolor="none", markeredgewidth=1.5, label="Pareto frontier", zorder=2)
    for _, row in points.iterrows():
        label = str(row["model"]) + (" (estimated)" if row["estimated"] else "")
        ax.annotate(label, (row["x"], row["y"]), xytext=(5, 4), textcoords="offset points", fontsize=7)
    ax.set_xscale("log")
    ax.margins(x=0.12, y=0.1)
    if gpu_price_per_hour is None:
        ax.set_xlabel("examples/s (log scale)")
        title = "Accuracy vs throughput (examples/s)"
    else:
        # "\\$": a bare "$" pair would switch matplotlib to mathtext
        ax.set_xlabel(f"examples per US\\$ at \\${gpu_price_per_hour:.2f}/GPU-hour (log scale)")
        title = f"Accuracy vs cost (examples per US\\$, GPU at \\${gpu_price_per_hour:.2f}/hour)"
    ax.set_ylabel("accuracy, mean over tasks (%)")
    ax.set_title(title)
    ax.grid(which="both", alpha=0.3)
    ax.legend(fontsize=8, loc="best")
    fig.tight_layout()
    return _save(fig, path)
