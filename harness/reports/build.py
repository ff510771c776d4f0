"""`bench report`: what a comparison report says, built from result files (accuracy runs and efficiency runs).

Sections: the main table in the paper's shape; the published reference in its own block (and deltas for runs
of a published model, never mixed into measured rows); paired model-vs-model significance on the examples two
runs share; ablations (runs that differ in one recorded training setting); per-language tables and heatmaps;
accuracy vs parameters; accuracy vs throughput (Pareto); efficiency. Renderers turn the `ReportDoc` into
Markdown or HTML; the tidy long table goes to CSV / parquet.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from harness.models.recipe import ABLATION_SETTINGS, describe_recipe, read_training_recipe
from harness.reports.document import Block, Figure, ReportDoc, Section, Table
from harness.reports.sensitivity import sensitivity_blocks
from harness.reports.tables import ci, model_label, pct
from harness.reports.tidy import LabelledRun, reference_table, tidy_frame
from harness.results.schema import EfficiencyRecord, EvalRecord, ResultRecord, RunResult, TaskResult, as_record
from harness.tasks.registry import find_task, load_registry
from harness.tasks.taskfile import TaskSpec


@dataclass(frozen=True)
class ReportOptions:
    title: str = "statement-bench report"
    reference: str | None = "seed"
    gpu_price_per_hour: float | None = None  # for the accuracy-per-dollar Pareto chart
    bootstrap: int = 2000
    seed: int = 0
    figures_dir: Path | None = None  # where PNGs go; None = no figures (stdout-only report)
    include_paths: tuple[str, ...] = ()  # task files for titles / chance that older result files lack


@dataclass
class BuiltReport:
    doc: ReportDoc
    tidy: pd.DataFrame
    figures: list[Path] = field(default_factory=list)


# -- helpers ---------------------------------------------------------------------------------------------------------

def _params(n: Any) -> str:
    if n is None or (isinstance(n, float) and not math.isfinite(n)):
        return "–"
    n = float(n)
    return f"{n / 1e9:.2f}B" if n >= 1e9 else f"{n / 1e6:.0f}M"


def recipe_of(result: EvalRecord) -> dict[str, Any] | None:
    """The training recipe a result records; older result files: read from the adapter directory it names."""
    if result.model.training is not None:
        return result.model.training
    return read_training_recipe(result.model.adapter)


def label_runs(results: Sequence[tuple[EvalRecord, Path]]) -> list[LabelledRun]:
    """Unique labels: the model label, with the run id appended where two runs share one."""
    labels = [model_label(r) for r, _ in results]
    runs = []
    for (r, path), label in zip(results, labels, strict=True):
        if labels.count(label) > 1:
            label = f"{label} ({r.run_id[-12:]})"
        samples = str(path.parent / r.samples_file) if r.samples_file else None
        runs.append(LabelledRun(label, r, samples))
    return runs


@dataclass(frozen=True)
class TaskInfo:
    name: str
    title: str  # display name
    chance: float | None  # chance accuracy (%); None = unknown (no chance line is drawn)


def _finite_or_none(value: Any) -> float | None:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


class TaskCatalog:
    """Display name and chance accuracy of each task a report names. No task is known here by name: both come
    from the result files (schema 1.3 records them), else from the task file of that name (built-in, or under
    ``include_paths`` for user tasks in older result files), else the raw name and no chance."""

    def __init__(self, results: Iterable[EvalRecord], include_paths: Sequence[str | Path] = ()) -> None:
        self._recorded: dict[str, tuple[str | None, float | None]] = {}
        for result in results:
            for name, tr in result.tasks.items():
                title, chance = self._recorded.get(name, (None, None))
                self._recorded[name] = (title or tr.title or None,
                                        chance if chance is not None else _finite_or_none(tr.chance))
        # loaded up front, so that a wrong --include-path is an error even when every file has its titles
        self._registry = load_registry(include_paths) if include_paths else None
        self._infos: dict[str, TaskInfo] = {}

    def _spec(self, name: str) -> TaskSpec | None:
        return self._registry.tasks.get(name) if self._registry is not None else find_task(name)

    def __getitem__(self, name: str) -> TaskInfo:
        info = self._infos.get(name)
        if info is None:
            title, chance = self._recorded.get(name, (None, None))
            if title is None or chance is None:
                spec = self._spec(name)
                if spec is not None:
                    title = title or spec.title
                    chance = chance if chance is not None else _finite_or_none(spec.chance)
            info = self._infos[name] = TaskInfo(name, title or name, chance)
        return info

    def title(self, name: str) -> str:
        return self[name].title

    def order(self, names: Iterable[str]) -> list[str]:
        """Distinct names: built-in tasks first (in the registry's order), then the others as first seen."""
        builtin = (self._registry or load_registry()).builtin
        seen = list(dict.fromkeys(names))
        rank = {n: builtin.index(n) if n in builtin else len(builtin) for n in seen}
        return sorted(seen, key=lambda n: rank[n])  # stable: first-seen order within equal rank


def _tasks(runs: Sequence[LabelledRun], catalog: TaskCatalog) -> list[str]:
    return catalog.order(t for run in runs for t in run.result.tasks)


# -- sections --------------------------------------------------------------------------------------------------------

def _lines(*parts: str) -> str:
    """A cell of several lines: line breaks in HTML, spaces in Markdown (see `Table`); empty parts are left out."""
    return "\n".join(p for p in parts if p)


def _coverage(tr: TaskResult) -> str:
    """(languages, examples) behind a mean: one line under a title, two in a cell (a column no wider than the
    interval)."""
    return f"({tr.n_languages} langs,\nn={tr.n_examples:,})"


def main_table(runs: Sequence[LabelledRun], tasks: Sequence[str], catalog: TaskCatalog) -> Table:
    """Rows = models (labelled backend:model); per task: mean accuracy [95% CI] (languages, examples); the best of
    each column in bold.

    Narrow enough for a page (the HTML must not scroll sideways with many tasks): the interval goes under the
    value (a line break in HTML, see `Table`), and the languages and examples under the task's title when every
    run of it has the same (the usual case), else under the interval.
    """
    best = {t: max((run.result.tasks[t].mean_accuracy for run in runs if t in run.result.tasks
                    and math.isfinite(run.result.tasks[t].mean_accuracy)), default=math.nan) for t in tasks}
    shared: dict[str, str | None] = {}
    for t in tasks:
        coverages = {_coverage(run.result.tasks[t]) for run in runs if t in run.result.tasks}
        shared[t] = coverages.pop() if len(coverages) == 1 else None
    rows = []
    for run in runs:
        r = run.result
        row = [run.label, _params(r.model.num_parameters), _recipe_cell(r)]
        for t in tasks:
            tr = r.tasks.get(t)
            if tr is None:
                row.append("")
                continue
            cell = _lines(pct(tr.mean_accuracy), ci(tr.mean_ci95_low, tr.mean_ci95_high),
                          "" if shared[t] else _coverage(tr))
            row.append(f"**{cell}**" if len(runs) > 1 and tr.mean_accuracy == best[t] else cell)
        rows.append(row)
    headers = [_lines(catalog.title(t), (shared[t] or "").replace("\n", " ")) for t in tasks]
    return Table(["model", "parameters", "training recipe", *headers], rows, align="lrl" + "r" * len(tasks),
                 caption="Accuracy (%): unweighted mean over languages [95% interval]; (languages, examples) under "
                         "the task, or in the cell where runs differ; best measured value per column in bold. "
                         "Model = backend:model.")


def _recipe_cell(result: EvalRecord) -> str:
    """The training recipe, or how an untuned model was scored (zero-shot prompts of a causal LM, a base encoder)."""
    recipe = recipe_of(result)
    if recipe:
        return describe_recipe(recipe)
    prompts = sorted({t.prompt for t in result.tasks.values()})
    if result.model.backend == "encoder":
        return "none (base encoder, statements)"
    return f"zero-shot, {', '.join(prompts)} prompts" if prompts else "zero-shot"


def _matches(row: dict[str, Any], result: EvalRecord) -> bool:
    """A run of a published model: its preset or base model, statement-tuned when the published one is."""
    names = {str(result.model.model), str(result.model.base_model)}
    recipe = recipe_of(result)
    if recipe:
        names.add(str(recipe.get("base_model")))
    if not names & (set(row["presets"]) | set(row["hub_ids"])):
        return False
    return row["kind"] == "causal" or recipe is not None


def reference_blocks(runs: Sequence[LabelledRun], name: str, catalog: TaskCatalog) -> list[Block]:
    ref = reference_table(name)
    ref_tasks = list(ref["tasks"])  # the reference's own task keys, titled like the measured ones
    rows = [[row["model"], _params(row["parameters"]), row["recipe"],
             *[f"{row['scores'][t]:.2f}" for t in ref_tasks]] for row in ref["rows"]]
    blocks: list[Block] = [
        f"{ref['title']}. {ref['metric']}. Citation: {ref['citation']}. {ref['caveat']} "
        "These numbers are quoted, not measured here, and are never mixed into the measured tables.",
        Table(["published model", "parameters", "recipe", *[catalog.title(t) for t in ref_tasks]], rows,
              align="lrl" + "r" * len(ref_tasks), caption=f"Published reference ({name})")]
    deltas = []
    for run in runs:
        for row in ref["rows"]:
            if not _matches(row, run.result):
                continue
            cells = []
            for t in ref_tasks:
                tr = run.result.tasks.get(t)
                cells.append("" if tr is None else f"{100 * tr.mean_accuracy - row['scores'][t]:+.2f}")
            deltas.append([run.label, row["model"], *cells])
    if deltas:
        blocks.append(Table(["measured run", "published model", *[f"Δ {catalog.title(t)}" for t in ref_tasks]],
                            deltas, align="ll" + "r" * len(ref_tasks),
                            caption="Measured minus published (points); the run's data or language set may differ"))
    else:
        blocks.append("No measured run is a published model (matching is by preset or base model; a published "
                      "encoder matches only a statement-tuned run of it).")
    return blocks


def paired_blocks(runs: Sequence[LabelledRun], options: ReportOptions, cache: dict[tuple[str, str], list[Any]],
                  catalog: TaskCatalog) -> list[Block]:
    comparisons: list[tuple[str, str, Any]] = []
    with_samples = [run for run in runs if run.samples_path and Path(run.samples_path).is_file()]
    for i, a in enumerate(with_samples):
        for b in with_samples[i + 1:]:
            comparisons.extend((a.label, b.label, c) for c in _paired(a, b, options, cache))
    if not comparisons:
        return ["No two runs scored the same examples."]
    rows = [[catalog.title(c.task), la, lb, f"{c.n:,}", pct(c.acc_a), pct(c.acc_b),
             f"{100 * c.diff:+.1f}", f"[{100 * c.ci_low:+.1f}, {100 * c.ci_high:+.1f}]", str(c.only_a),
             str(c.only_b), _p(c.p_mcnemar)] for la, lb, c in comparisons]
    return [f"Pairs of runs on the examples both scored. Δ = A − B in points, unweighted over languages; interval: "
            f"paired bootstrap within languages ({options.bootstrap} resamples, seed {options.seed}); p: exact "
            "McNemar on the discordant examples (A right only / B right only).",
            Table(["task", "A", "B", "shared examples", "A %", "B %", "Δ", "95% interval", "A only", "B only",
                   "McNemar p"], rows, align="lllrrrrrrrr")]


def _p(p: float) -> str:
    return "<1e-4" if p < 1e-4 else f"{p:.3g}"


def _paired(a: LabelledRun, b: LabelledRun, options: ReportOptions,
            cache: dict[tuple[str, str], list[Any]]) -> list[Any]:
    from harness.reports.paired import compare_runs, correct_by_example

    key = (a.result.run_id, b.result.run_id)
    if key not in cache:
        assert a.samples_path and b.samples_path
        cache[key] = compare_runs(correct_by_example(Path(a.samples_path)), correct_by_example(Path(b.samples_path)),
                                  a.label, b.label, resamples=options.bootstrap, seed=options.seed)
    return cache[key]


def ablation_blocks(runs: Sequence[LabelledRun], tasks: Sequence[str], options: ReportOptions,
                    cache: dict[tuple[str, str], list[Any]], catalog: TaskCatalog) -> list[Block]:
    """Runs whose recorded recipes differ in exactly one setting, lined up against the first of them."""
    recipes = [(run, recipe_of(run.result)) for run in runs]
    tuned = [(run, rec) for run, rec in recipes if rec]
    blocks: list[Block] = []
    for setting in ABLATION_SETTINGS:
        families: dict[tuple[Any, ...], list[tuple[LabelledRun, dict[str, Any]]]] = {}
        for run, rec in tuned:
            rest = tuple(str(rec.get(s)) for s in ABLATION_SETTINGS if s != setting)
            families.setdefault(rest, []).append((run, rec))
        for family in families.values():
            if len({str(rec.get(setting)) for _, rec in family}) < 2:
                continue
            base_run = family[0][0]
            rows = []
            for run, rec in family:
                row = [str(rec.get(setting)), run.label]
                for t in tasks:
                    tr = run.result.tasks.get(t)
                    row.append("" if tr is None else _lines(pct(tr.mean_accuracy),
                                                             ci(tr.mean_ci95_low, tr.mean_ci95_high)))
                    row.append(_delta(base_run, run, t, options, cache))
                rows.append(row)
            headers = [setting.replace("_", " "), "run"]
            for t in tasks:
                headers += [catalog.title(t), "Δ vs first [95%], p"]
            blocks += [f"**{setting.replace('_', ' ')}** varies; every other recorded setting is equal "
                       f"({describe_recipe(family[0][1])}).",
                       Table(headers, rows, align="ll" + "r" * (2 * len(tasks)))]
    return blocks or ["No two statement-tuned runs differ in exactly one recorded training setting."]


def _delta(base: LabelledRun, run: LabelledRun, task: str, options: ReportOptions,
           cache: dict[tuple[str, str], list[Any]]) -> str:
    if run is base:
        return "(reference)"
    if not (base.samples_path and run.samples_path and Path(base.samples_path).is_file()
            and Path(run.samples_path).is_file()):
        return ""
    for c in _paired(run, base, options, cache):
        if c.task == task:
            return _lines(f"{100 * c.diff:+.1f} [{100 * c.ci_low:+.1f}, {100 * c.ci_high:+.1f}],",
                          f"p={_p(c.p_mcnemar)}")
    return ""


def language_blocks(runs: Sequence[LabelledRun], task: TaskInfo, tidy: pd.DataFrame,
                    figures_dir: Path | None, figures: list[Path]) -> list[Block]:
    name = task.name
    present = [run for run in runs if name in run.result.tasks]
    languages = list(dict.fromkeys(lang for run in present for lang in run.result.tasks[name].languages))
    rows = []
    for lang in languages:
        row = [lang]
        for run in present:
            lr = run.result.tasks[name].languages.get(lang)
            row.append("" if lr is None else f"{pct(lr.accuracy)} {ci(lr.ci95_low, lr.ci95_high)} (n={lr.n})")
        rows.append(row)
    blocks: list[Block] = [] if task.chance is None else [f"Chance accuracy: {task.chance:.1f}%."]
    blocks.append(Table(["language", *[run.label for run in present]], rows))
    if figures_dir is not None:
        from harness.reports.plots import language_heatmap

        path = language_heatmap(tidy, name, figures_dir / f"heatmap-{name}.png", title=task.title,
                                chance=task.chance)
        if path is not None:
            figures.append(path)
            blocks.append(Figure(path, f"{task.title}: accuracy (%) per model and language"))
    return blocks


def throughput_frame(runs: Sequence[LabelledRun], efficiency: Sequence[EfficiencyRecord]) -> pd.DataFrame:
    """Examples/s per accuracy-run label: the efficiency record of the same model (measured at its max batch, else
    the estimate's ceiling)."""
    by_model = {str(run.result.model.model): run.label for run in runs}
    rows = []
    for r in efficiency:
        e = r.efficiency
        label = by_model.get(str(e.model.model or r.model.model))
        if label is None:
            continue
        measured = [p.examples_per_s for p in e.throughput if p.examples_per_s is not None]
        estimated = [p.examples_per_s for p in (e.estimate.throughput if e.estimate else [])
                     if p.examples_per_s is not None]
        speeds, is_estimate = (measured, False) if measured else (estimated, True)
        if not speeds:
            continue
        profile = e.device.profile
        device = str(profile.name) if "name" in profile else "?"
        rows.append({"model": label, "device": device, "examples_per_s": float(max(speeds)),
                     "estimated": is_estimate})
    return pd.DataFrame(rows, columns=["model", "device", "examples_per_s", "estimated"])


# -- the report ------------------------------------------------------------------------------------------------------

def build_report(results: Sequence[tuple[ResultRecord | RunResult, Path]], options: ReportOptions) -> BuiltReport:
    """The report document, its tidy table and the figures written (into `options.figures_dir`), from the records
    `read_result` gives (a `RunResult` is read as its record)."""
    from harness.reports.efficiency import efficiency_blocks, efficiency_plot, efficiency_results

    records = [(as_record(r), p) for r, p in results]
    accuracy_results = [(r, p) for r, p in records if isinstance(r, EvalRecord) and r.tasks]
    efficiency = efficiency_results([r for r, _ in records])
    runs = label_runs(accuracy_results)
    catalog = TaskCatalog((r for r, _ in accuracy_results), options.include_paths)
    tasks = _tasks(runs, catalog)
    tidy = tidy_frame(runs, options.reference)
    figures: list[Path] = []
    fig_dir = options.figures_dir
    doc = ReportDoc(options.title, intro=[
        f"{len(runs)} accuracy run(s), {len(efficiency)} efficiency record(s). Accuracy is the unweighted mean "
        "over languages with its 95% interval; the tidy long table (model, task, language, metric, value, n, "
        "ci_low, ci_high) is in the CSV."])
    cache: dict[tuple[str, str], list[Any]] = {}
    if runs:
        doc.sections.append(Section("Main results", [main_table(runs, tasks, catalog)], anchor="main"))
    if options.reference:
        doc.sections.append(Section("Published reference", reference_blocks(runs, options.reference, catalog),
                                    anchor="reference"))
    if len(runs) > 1:
        doc.sections.append(Section("Model vs model (paired)", paired_blocks(runs, options, cache, catalog),
                                    anchor="paired"))
        doc.sections.append(Section("Ablations", ablation_blocks(runs, tasks, options, cache, catalog),
                                    anchor="ablations"))
    for task in tasks:
        doc.sections.append(Section(f"{catalog.title(task)} per language",
                                    language_blocks(runs, catalog[task], tidy, fig_dir, figures),
                                    anchor=f"lang-{task}"))
    sensitivity = sensitivity_blocks([r for r, _ in accuracy_results], fig_dir)
    if sensitivity:
        figures.extend(b.path for b in sensitivity if isinstance(b, Figure))
        doc.sections.append(Section("Template sensitivity", sensitivity, anchor="templates"))
    if fig_dir is not None and runs:
        from harness.reports.plots import accuracy_vs_parameters, pareto_accuracy_throughput

        blocks: list[Block] = []
        shown = catalog.order([*tasks, *tidy["task"].astype(str)])  # measured tasks, then published-only ones
        path = accuracy_vs_parameters(tidy, fig_dir / "accuracy-vs-parameters.png",
                                      titles={t: catalog.title(t) for t in shown},
                                      chance={t: c for t in shown if (c := catalog[t].chance) is not None})
        if path is not None:
            figures.append(path)
            blocks.append(Figure(path, "Mean accuracy vs parameters (log x); published points hollow"))
        speed = throughput_frame(runs, efficiency)
        path = pareto_accuracy_throughput(tidy, speed, fig_dir / "pareto.png",
                                          gpu_price_per_hour=options.gpu_price_per_hour)
        if path is not None:
            figures.append(path)
            per = (f"per US dollar at {options.gpu_price_per_hour:g} $/GPU-hour" if options.gpu_price_per_hour
                   else "per second")
            blocks.append(Figure(path, f"Accuracy vs examples {per} (Pareto frontier); estimated speeds marked"))
        if blocks:
            doc.sections.append(Section("Accuracy and cost", blocks, anchor="cost"))
    if efficiency:
        plot = efficiency_plot(efficiency, fig_dir / "efficiency.png") if fig_dir is not None else None
        if plot is not None:
            figures.append(plot)
        blocks = efficiency_blocks(efficiency, plot, options.gpu_price_per_hour)
        doc.sections.append(Section("Efficiency", blocks, anchor="efficiency"))
    notes = sorted({n for r, _ in records for n in r.model.notes or []})
    if notes:
        doc.sections.append(Section("Notes", [f"- {n}" for n in notes], anchor="notes"))
    return BuiltReport(doc, tidy, figures)
