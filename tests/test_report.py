"""`bench report`: tables checked against the result files they come from (not against snapshots of themselves)."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from click.testing import CliRunner

from harness.cli import main
from harness.reports.paired import compare_runs, correct_by_example
from harness.reports.tidy import reference_table
from harness.results.schema import RunResult, read_result, result_to_dict, write_result


def _run(args: list[str]) -> None:
    res = CliRunner().invoke(main, args)
    assert res.exit_code == 0, res.output


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Two fake-backend runs on the same examples (xcopa + xwinograd, 30 per language)."""
    out = tmp_path_factory.mktemp("runs")
    for model in ("length", "random"):
        _run(["run", "--backend", "fake", "--model", model, "--tasks", "xcopa,xwinograd", "--limit", "30",
              "--output", str(out), "--quiet"])
    return out


def _results(folder: Path) -> dict[str, tuple[RunResult, Path]]:
    return {read_result(p).model["model"]: (read_result(p), p) for p in sorted(folder.rglob("result.json"))}


def _report(tmp_path: Path, *inputs: Path, extra: tuple[str, ...] = ()) -> tuple[str, Path]:
    out = tmp_path / "rep" / "cmp"
    res = CliRunner().invoke(main, ["report", *map(str, inputs), "--out", str(out), "--bootstrap", "500", *extra])
    assert res.exit_code == 0, res.output
    return out.with_suffix(".md").read_text(encoding="utf-8"), out


def test_main_table_and_csv_carry_the_result_file_values(runs: Path, tmp_path: Path) -> None:
    text, out = _report(tmp_path, runs)
    results = _results(runs)
    best = {t: max(r.tasks[t].mean_accuracy for r, _ in results.values()) for t in ("xcopa", "xwinograd")}
    header = text.split("## Main results")[1].split("\n| ")[1]
    for r, _ in results.values():
        for task in ("xcopa", "xwinograd"):
            tr = r.tasks[task]
            cell = f"{100 * tr.mean_accuracy:.1f} [{100 * tr.mean_ci95_low:.1f}, {100 * tr.mean_ci95_high:.1f}]"
            assert (f"**{cell}**" in text) == (tr.mean_accuracy == best[task]), cell
            assert cell in text
            # both runs scored the same languages and examples: said once, under the task's title
            assert f"{tr.title} ({tr.n_languages} langs, n={tr.n_examples:,})" in header
    tidy = pd.read_csv(out.with_suffix(".csv"))
    assert list(tidy.columns[:8]) == ["model", "task", "language", "metric", "value", "n", "ci_low", "ci_high"]
    measured = tidy[tidy.source == "measured"]
    for r, _ in results.values():
        label = f"fake:{r.model['model']}"
        for task, tr in r.tasks.items():
            rows = measured[(measured.model == label) & (measured.task == task) & (measured.metric == "acc")]
            assert len(rows) == len(tr.languages) + 1  # every language and the mean
            for lang, lr in tr.languages.items():
                row = rows[rows.language == lang].iloc[0]
                assert row.value == pytest.approx(lr.accuracy) and row.n == lr.n
                assert row.ci_low == pytest.approx(lr.ci95_low) and row.ci_high == pytest.approx(lr.ci95_high)
            mean = rows[rows.language == "mean"].iloc[0]
            assert mean.value == pytest.approx(tr.mean_accuracy) and mean.n == tr.n_examples
    published = tidy[tidy.source == "published"]
    assert len(published) == 6 * 4 and set(published.language) == {"mean"}
    gemma = published[(published.model == "Gemma-2-9B (published)") & (published.task == "xnli")].iloc[0]
    assert gemma.value == pytest.approx(0.465)
    # the published block is separate from the measured table
    main_part = text.split("## Published reference")[0]
    assert "Qwen2-72B" not in main_part and "| Qwen2-72B " in text and "84.02" in text
    # per-language tables and heatmaps
    assert "## XWinograd per language" in text and "| zh " in text
    for name in ("heatmap-xcopa.png", "heatmap-xwinograd.png", "accuracy-vs-parameters.png"):
        png = out.parent / "cmp-files" / name
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert f"(cmp-files/{name})" in text
    html = out.with_suffix(".html").read_text(encoding="utf-8")
    assert html.count("data:image/png;base64,") == text.count("![")
    assert "http://" not in html.replace('xmlns="http://www.w3.org/2000/svg"', "")


def test_paired_table_matches_an_independent_computation(runs: Path, tmp_path: Path) -> None:
    text, _ = _report(tmp_path, runs)
    results = _results(runs)
    (ra, pa), (rb, pb) = results["length"], results["random"]
    comparisons = compare_runs(correct_by_example(pa.parent / ra.samples_file),
                               correct_by_example(pb.parent / rb.samples_file), "a", "b", resamples=500)
    assert {c.task for c in comparisons} == {"xcopa", "xwinograd"}
    for c in comparisons:
        # acc of each side = the run's own mean accuracy (both scored every example)
        assert c.acc_a == pytest.approx(ra.tasks[c.task].mean_accuracy)
        assert c.acc_b == pytest.approx(rb.tasks[c.task].mean_accuracy)
        row = (f"| {c.n:,} | {100 * c.acc_a:.1f} | {100 * c.acc_b:.1f} | {100 * c.diff:+.1f} | "
               f"[{100 * c.ci_low:+.1f}, {100 * c.ci_high:+.1f}] | {c.only_a} | {c.only_b} |")
        assert " ".join(row.split()) in " ".join(text.split())


def _clone(src: tuple[RunResult, Path], dest: Path, **model: object) -> Path:
    """A copy of a run (result + samples) with changed model fields, as another run would record them."""
    result, path = src
    doc = result_to_dict(result)
    doc["model"].update(model)
    doc["run_id"] = f"{result.run_id}-{dest.name}"
    dest.mkdir(parents=True)
    (dest / "samples.jsonl").write_bytes((path.parent / result.samples_file).read_bytes())
    (dest / "result.json").write_text(json.dumps(doc), encoding="utf-8")
    return dest


def test_published_delta_and_ablation_views(runs: Path, tmp_path: Path) -> None:
    results = _results(runs)
    recipe = {"base_model": "mdeberta-v3-base", "method": "full", "languages": "25", "template_language": "en",
              "translation": True, "per_task": 1500, "max_steps": 1000, "learning_rate": 2e-6, "max_length": 512}
    a = _clone(results["length"], tmp_path / "in" / "a", model="st-a", training=recipe)
    b = _clone(results["random"], tmp_path / "in" / "b", model="st-b", training={**recipe, "languages": "en"})
    c = _clone(results["random"], tmp_path / "in" / "c", model="qwen2-72b", backend="hf")
    text, _ = _report(tmp_path, a, b, c)
    # deltas for the runs of published models: the statement-tuned mDeBERTa runs and the Qwen2-72B run
    ref = {row["model"]: row for row in reference_table("seed")["rows"]}
    ra, rc = read_result(a / "result.json"), read_result(c / "result.json")
    delta_a = 100 * ra.tasks["xcopa"].mean_accuracy - ref["mDeBERTa-276M"]["scores"]["xcopa"]
    delta_c = 100 * rc.tasks["xwinograd"].mean_accuracy - ref["Qwen2-72B"]["scores"]["xwinograd"]
    assert "| fake:st-a " in text and f"{delta_a:+.2f}" in text and f"{delta_c:+.2f}" in text
    # the ablation view lines up the two runs that differ only in training languages
    section = text.split("## Ablations")[1].split("\n## ")[0]
    assert "**languages** varies" in section
    flat = " ".join(section.split())
    assert "| 25 | fake:st-a |" in flat and "| en | fake:st-b |" in flat and "(reference)" in section
    rb = read_result(b / "result.json")
    assert f"{100 * rb.tasks['xcopa'].mean_accuracy:.1f} [" in section


def test_efficiency_section_and_formats(runs: Path, tmp_path: Path) -> None:
    record = {"model": {"model": "length", "dtype": "float32"}, "kind": "encoder", "weights": "real",
              "workload": {"probe_length": 40, "tokenizer": "own"}, "cost": {"parameters": 1e6,
              "flops_per_token_at_mean": 2e6},
              "device": {"profile": {"name": "CPU (2 threads)", "peak_flops": {"float32": 2e11},
                                     "bandwidth_bytes_per_s": 3e10, "memory_bytes": 2**31, "measured": True}},
              "max_batch": {"max_batch": 48, "max_pow2": 32, "stop_reason": "oom", "limit_bytes": 2**31,
                            "probes": [{"batch_size": 48, "fits": True, "peak_bytes": 1.5 * 2**30}]},
              "throughput": [{"batch_size": 48, "label": "max", "examples_per_s": 123.456, "rows_per_s": 246.9,
                              "tokens_per_s": 5000.0, "padded_tokens_per_s": 6000.0, "iterations": 10,
                              "latency_s": {"p50": 0.2, "p90": 0.3, "p99": 0.4, "stdev": 0.05},
                              "first_call_s": 0.5, "flops_per_s": 1e10, "peak_flops": 2e11, "pct_of_peak": 5.0}],
              "estimate": None}
    eff = RunResult(schema_version="1.2", run_id="efficiency-length", config={}, model={"model": "length"},
                    environment={"torch_threads": 2}, tasks={}, samples_file="", efficiency=record)
    write_result(tmp_path / "eff" / "efficiency-length" / "result.json", eff)
    text, out = _report(tmp_path, runs, tmp_path / "eff", extra=("--format", "md,csv,parquet", "--gpu-price", "2"))
    flat = " ".join(text.split())
    assert "## Efficiency" in text and "| 123.46 |" in flat and "| 32 | 48 | oom |" in flat
    assert (out.parent / "cmp-files" / "pareto.png").is_file() and "(cmp-files/pareto.png)" in text
    assert "per US dollar at 2 $/GPU-hour" in text
    assert not out.with_suffix(".html").exists()
    parquet = pd.read_parquet(out.with_suffix(".parquet"))
    assert len(parquet) == len(pd.read_csv(out.with_suffix(".csv")))
    assert math.isclose(parquet[parquet.language == "mean"].value.max(), 0.8402, rel_tol=1e-9)


@pytest.mark.parametrize(("args", "needle"), [
    (["--format", "pdf"], "--format 'pdf': choose from md, html, csv, parquet"),
    (["--reference", "other"], "--reference 'other': choose one of seed or none"),
    (["--gpu-price", "0"], "--gpu-price must be positive"),
    (["--include-path", "/nonexistent/tasks"], "--include-path /nonexistent/tasks: no such file or directory"),
])
def test_bad_report_options_are_one_line_errors(runs: Path, tmp_path: Path, args: list[str], needle: str) -> None:
    res = CliRunner().invoke(main, ["report", str(runs), "--out", str(tmp_path / "x"), *args])
    assert res.exit_code == 2 and res.output.startswith("error: ") and needle in res.output, res.output
    assert len(res.output.strip().splitlines()) == 1


@pytest.mark.slow
def test_report_on_demo_shaped_results(tmp_path: Path) -> None:
    """What `make demo` feeds the report, shrunk: the bundled encoder and causal LM on real data, plus a CPU
    efficiency run of both; every number in the main table and the cost plot comes from those files."""
    runs, eff = tmp_path / "demo", tmp_path / "demo-efficiency"
    _run(["run", "--backend", "encoder", "--tasks", "xcopa,xwinograd", "--langs", "it,en,fr", "--limit", "6",
          "--output", str(runs), "--quiet"])
    _run(["run", "--backend", "hf", "--model", "smollm2-135m", "--tasks", "xcopa,xwinograd", "--langs", "it,en,fr",
          "--limit", "6", "--output", str(runs), "--quiet"])
    _run(["efficiency", "--models", "me5-small-st,smollm2-135m", "--tasks", "xcopa", "--langs", "it", "--limit",
          "4", "--max-batch", "2", "--batch-sizes", "1", "--min-iters", "1", "--min-seconds", "0",
          "--output", str(eff)])
    text, out = _report(tmp_path, runs, eff, extra=("--gpu-price", "1.5"))
    for path in sorted(runs.rglob("result.json")):
        r = read_result(path)
        for tr in r.tasks.values():
            cell = f"{100 * tr.mean_accuracy:.1f} [{100 * tr.mean_ci95_low:.1f}, {100 * tr.mean_ci95_high:.1f}]"
            coverage = f"({tr.n_languages} langs, n={tr.n_examples:,})"
            assert f"{cell} {coverage}" in text or (cell in text and f"{tr.title} {coverage}" in text)
    assert "| encoder:me5-small-st " in text and "LoRA on me5-small, 25 langs" in text
    assert "zero-shot, lm-eval-0.4.13 prompts" in text
    for path in sorted(eff.rglob("result.json")):
        e = read_result(path).efficiency
        assert e is not None
        point = e["throughput"][0]
        assert f"| {point['examples_per_s']:.2f} |" in " ".join(text.split())
    assert (out.parent / "cmp-files" / "pareto.png").is_file()  # accuracy joined with measured examples/s
    assert out.with_suffix(".html").is_file() and out.with_suffix(".csv").is_file()


# ---- task titles and chance: from the result files, else the task files ---------------------------------------

USER_TASK = """\
task: copa_en
title: COPA (English)
format: 1
languages: [en]
splits:
  test: {rows: 12, files: {path: data/test.jsonl}}
schema: {premise: str, choice1: str, choice2: str, question: str, label: int, idx: int}
example:
  fields: {premise: premise, question: question}
  candidates: [choice1, choice2]
  gold: {field: label, as: index}
statements:
  candidate_slot: choice
  templates:
    - {id: t1, text: '"{premise}" so "{choice}"'}
"""


@pytest.fixture(scope="module")
def user_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(task folder, run folder): a fake-backend run of a two-way user task from a task file outside the package."""
    base = tmp_path_factory.mktemp("user")
    tasks = base / "tasks"
    (tasks / "data").mkdir(parents=True)
    rows = [{"premise": f"The man opened tap {i}.", "choice1": "Water flowed.", "choice2": "The bath filled.",
             "question": "effect" if i % 2 else "cause", "label": i % 2, "idx": i} for i in range(12)]
    (tasks / "data" / "test.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    (tasks / "copa_en.yaml").write_text(USER_TASK, encoding="utf-8")
    _run(["run", "--backend", "fake", "--include-path", str(tasks), "--tasks", "copa_en", "--output",
          str(base / "runs"), "--quiet"])
    return tasks, base / "runs"





def _rewrite(src: Path, dest: Path, edit: Any) -> Path:
    """Copies of the runs under `src` (result + samples) into `dest`, each result dict passed through `edit`."""
    for path in sorted(src.rglob("result.json")):
        doc = json.loads(path.read_text(encoding="utf-8"))
        edit(doc)
        folder = dest / path.parent.name
        folder.mkdir(parents=True)
        (folder / "samples.jsonl").write_bytes((path.parent / doc["samples_file"]).read_bytes())
        (folder / "result.json").write_text(json.dumps(doc), encoding="utf-8")
    return dest


def _as_schema_1_2(doc: dict[str, Any]) -> None:
    """What a result file written before task files (schema 1.2) holds: no title, chance or task file."""
    doc["schema_version"] = "1.2"
    for task in doc["tasks"].values():
        for key in ("title", "chance", "task_file"):
            task.pop(key, None)


def _header(text: str) -> str:
    return text.split("## Main results")[1].split("\n| ")[1].split("\n")[0]


def test_user_task_title_and_chance_from_the_result_file(user_run: tuple[Path, Path], tmp_path: Path) -> None:
    """A user task the report cannot look up (no --include-path): its title and chance (50%, two candidates) come
    from the result file."""
    _, runs = user_run
    result = read_result(next(runs.rglob("result.json")))
    tr = result.tasks["copa_en"]
    assert (tr.title, tr.chance) == ("COPA (English)", 50.0)
    text, _ = _report(tmp_path, runs)
    assert f"COPA (English) (1 langs, n={tr.n_examples})" in _header(text)
    assert "## COPA (English) per language\n\nChance accuracy: 50.0%." in text


def test_unknown_task_chance_line_at_the_recorded_value(user_run: tuple[Path, Path], tmp_path: Path,
                                                         figure_texts: list[str]) -> None:
    """A task no task file names: the report takes title and chance from the result file, and draws the chance
    line (accuracy vs parameters) and the heatmap's centre at that value."""
    _, runs = user_run

    def unknown(doc: dict[str, Any]) -> None:
        doc["model"]["num_parameters"] = 1.2e8  # placed on the accuracy-vs-parameters plot
        task = doc["tasks"].pop("copa_en")
        doc["tasks"]["toy_mc"] = {**task, "task": "toy_mc", "title": "Toy MC (4-way)", "chance": 25.0}

    text, out = _report(tmp_path, _rewrite(runs, tmp_path / "in", unknown), extra=("--reference", "none"))
    assert "Toy MC (4-way) (1 langs" in _header(text) and "toy_mc" not in _header(text)
    assert "## Toy MC (4-way) per language\n\nChance accuracy: 25.0%." in text
    assert "chance (25.0%)" in figure_texts and "Toy MC (4-way)" in figure_texts  # the panel and its line
    assert any(t.startswith("Toy MC (4-way):") and "white = chance (25.0%)" in t for t in figure_texts)
    assert (out.parent / "cmp-files" / "heatmap-toy_mc.png").is_file()


def test_old_result_files_take_titles_from_the_built_in_task_files(runs: Path, tmp_path: Path,
                                                                    figure_texts: list[str]) -> None:
    old = _rewrite(runs, tmp_path / "old", _as_schema_1_2)
    assert {read_result(p).tasks["xcopa"].title for p in old.rglob("result.json")} == {None}
    text, _ = _report(tmp_path, old)
    header = _header(text)
    assert header.index("XCOPA (") < header.index("XWinograd (") and "xcopa" not in header
    assert "## XCOPA per language\n\nChance accuracy: 50.0%." in text
    assert "## XWinograd per language" in text
    assert any(t.startswith("XWinograd:") and "chance (50.0%)" in t for t in figure_texts)


def test_old_user_task_results_need_the_include_path(user_run: tuple[Path, Path], tmp_path: Path) -> None:
    tasks, runs = user_run
    old = _rewrite(runs, tmp_path / "old", _as_schema_1_2)
    text, _ = _report(tmp_path / "a", old)
    assert "copa_en (1 langs" in _header(text) and "Chance accuracy" not in text  # raw name, no chance claimed
    text, _ = _report(tmp_path / "b", old, extra=("--include-path", str(tasks)))
    assert "COPA (English) (1 langs" in _header(text)
    assert "## COPA (English) per language\n\nChance accuracy: 50.0%." in text


def test_task_columns_built_in_first_then_as_first_seen(runs: Path, user_run: tuple[Path, Path],
                                                        tmp_path: Path) -> None:
    _, user = user_run
    text, _ = _report(tmp_path, user, runs, extra=("--format", "md", "--reference", "none"))
    header = _header(text)
    assert header.index("XCOPA") < header.index("XWinograd") < header.index("COPA (English)")


def test_languages_and_examples_in_the_cells_where_runs_differ(runs: Path, tmp_path: Path) -> None:
    def fewer(doc: dict[str, Any]) -> None:
        if doc["model"]["model"] == "length":
            doc["model"]["model"] = "length-subset"
            doc["tasks"]["xcopa"]["n_examples"] = 7  # as if it had scored fewer examples
    text, _ = _report(tmp_path, _rewrite(runs, tmp_path / "in", fewer), extra=("--format", "md"))
    header = _header(text)
    assert "XWinograd (" in header and "XCOPA |" in header  # shared / differing coverage
    results = {r.model["model"]: r for r in map(read_result, (tmp_path / "in").rglob("result.json"))}
    for model, r in results.items():
        tr = r.tasks["xcopa"]
        cell = (f"{100 * tr.mean_accuracy:.1f} [{100 * tr.mean_ci95_low:.1f}, {100 * tr.mean_ci95_high:.1f}] "
                f"({tr.n_languages} langs, n={tr.n_examples:,})")
        row = next(line for line in text.splitlines() if line.startswith(f"| fake:{model} "))
        assert cell in row


def test_report_modules_name_no_task() -> None:
    """Tasks are data (task files): no module of the report names one."""
    from harness.tasks.registry import load_registry

    names = load_registry().builtin
    assert names
    folder = Path(__file__).resolve().parents[1] / "harness" / "reports"
    for path in sorted(folder.glob("*.py")):
        source = path.read_text(encoding="utf-8").lower()
        assert not [n for n in names if n in source], path
