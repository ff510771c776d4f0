"""`bench run --templates all`: every eligible template scored per example, per-template accuracy, mean and spread;
resumable samples; draw mode unchanged; the report's table and figure."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from harness.backends.base import BackendConfig
from harness.backends.fake import FakeBackend
from harness.cli import main
from harness.core import Sample, StatementRequest, argmax
from harness.errors import DataError, UsageError
from harness.reports.document import Figure, Table
from harness.reports.sensitivity import (
    sensitivity_blocks,
    sensitivity_plot,
    sensitivity_rows,
    sensitivity_tables,
    sensitivity_text,
)
from harness.results.schema import read_result, result_from_dict, result_to_dict
from harness.results.sensitivity import language_sensitivity, spread_stats, task_summary, template_sensitivity
from harness.runner import RunConfig, execute, plan_run, run_identity
from harness.statement.verbalizer import draw_template

ARGS = ["run", "--backend", "fake", "--tasks", "xcopa,xwinograd", "--langs", "et,en", "--limit", "10", "--quiet"]
XCOPA_GROUPS = {"cause-1": "cause", "cause-2": "cause", "cause-3": "cause",
                "effect-1": "effect", "effect-2": "effect", "effect-3": "effect"}


def bench(args: list[str]) -> Any:
    return CliRunner().invoke(main, args, catch_exceptions=False)


def lines(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def run_dir(output: Path) -> Path:
    dirs = [p.parent for p in output.glob("*/samples.jsonl")]
    assert len(dirs) == 1, dirs
    return dirs[0]


@pytest.fixture(scope="module")
def all_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    out = tmp_path_factory.mktemp("all")
    res = bench([*ARGS, "--templates", "all", "--output", str(out)])
    assert res.exit_code == 0, res.output
    return run_dir(out), res.output


# -- end to end -------------------------------------------------------------------------------------------------------

def test_every_eligible_template_is_scored_for_each_example(all_run: tuple[Path, str]):
    directory, _ = all_run
    samples = lines(directory / "samples.jsonl")
    assert [s["example_id"] for s in samples] == [f"xcopa/et/test/{i}" for i in range(10)] + \
        [f"xwinograd/en/test/{i}" for i in range(10)]
    fake = FakeBackend(BackendConfig())
    for s in samples:
        assert s["template_id"] == "all" and s["requests"] == [] and s["extra"]["ensemble"] == "mean"
        templates = s["extra"]["templates"]
        if s["task"] == "xcopa":
            question = "cause" if next(iter(templates)).startswith("cause") else "effect"
            assert list(templates) == [f"{question}-{k}" for k in (1, 2, 3)]
        else:
            assert list(templates) == ["1", "2", "3", "4", "5"]
        for record in templates.values():
            assert len(record["requests"]) == len(record["scores"]) == 2
            # each statement really was scored: the fake's score of exactly that text
            assert record["scores"] == [fake._one(StatementRequest(s["example_id"], i, text)).value
                                        for i, text in enumerate(record["requests"])]
            assert record["prediction"] == argmax(record["scores"])
        ensemble = [sum(r["scores"][i] for r in templates.values()) / len(templates) for i in range(2)]
        assert s["scores"] == pytest.approx(ensemble)
        assert s["prediction"] == argmax(s["scores"]) and s["correct"] == (s["prediction"] == s["gold"])
    first, wino = samples[0], samples[10]
    assert first["extra"]["templates"]["cause-1"]["requests"] == [
        'The cause of "Ese oli mullikilesse mässitud." is that "See oli õrn."',
        'The cause of "Ese oli mullikilesse mässitud." is that "See oli väike."']
    assert first["extra"]["templates"]["cause-2"]["requests"] == [
        '"Ese oli mullikilesse mässitud." because "See oli õrn."',
        '"Ese oli mullikilesse mässitud." because "See oli väike."']
    assert first["extra"]["templates"]["cause-3"]["requests"] == [
        '"Ese oli mullikilesse mässitud." due to "See oli õrn."',
        '"Ese oli mullikilesse mässitud." due to "See oli väike."']
    sentence = "The city councilmen refused the demonstrators a permit because _ feared violence."
    assert wino["extra"]["templates"]["3"]["requests"] == [
        f'The missing word in "{sentence}" is "The city councilmen"',
        f'The missing word in "{sentence}" is "the demonstrators"']
    assert wino["extra"]["templates"]["4"]["requests"][1] == f'_ in: "{sentence}" is "the demonstrators"'


def test_per_template_accuracy_equals_a_recount_of_the_samples(all_run: tuple[Path, str]):
    directory, output = all_run
    samples = lines(directory / "samples.jsonl")
    result = read_result(directory / "result.json")
    assert result.config["identity"]["templates_mode"] == "all"
    for task, lang in (("xcopa", "et"), ("xwinograd", "en")):
        mine = [s for s in samples if s["task"] == task and s["language"] == lang]
        counts: dict[str, list[bool]] = {}
        for s in mine:
            for tid, record in s["extra"]["templates"].items():
                counts.setdefault(tid, []).append(argmax(record["scores"]) == s["gold"])
        block = result.tasks[task].template_sensitivity
        assert block is not None
        lb = block["languages"][lang]
        assert {tid: (c["accuracy"], c["n"]) for tid, c in lb["templates"].items()} == \
            {tid: (sum(f) / len(f), len(f)) for tid, f in counts.items()}
        accs = [sum(f) / len(f) for f in counts.values()]
        mean = sum(accs) / len(accs)
        assert lb["mean"] == pytest.approx(mean)
        assert (lb["min"], lb["max"], lb["spread"]) == (min(accs), max(accs), max(accs) - min(accs))
        assert lb["std"] == pytest.approx(math.sqrt(sum((a - mean) ** 2 for a in accs) / len(accs)))
        assert lb["ensemble_accuracy"] == result.tasks[task].languages[lang].accuracy == \
            sum(s["correct"] for s in mine) / len(mine)
        assert block["summary"]["templates"] == {tid: c["accuracy"] for tid, c in lb["templates"].items()}
        for c in lb["templates"].values():  # the printed table has the same numbers
            assert f"{100 * c['accuracy']:.1f} ({c['n']})" in output
    xcopa = result.tasks["xcopa"].template_sensitivity
    assert xcopa is not None and xcopa["group_field"] == "question" and xcopa["groups"] == XCOPA_GROUPS
    n = xcopa["languages"]["et"]["templates"]
    assert n["cause-1"]["n"] + n["effect-1"]["n"] == 10  # a grouped template counts over its group only
    wino = result.tasks["xwinograd"].template_sensitivity
    assert wino is not None and wino["group_field"] is None and "groups" not in wino
    assert "ensemble" in output and "min–max (spread)" in output


def test_resume_after_a_partial_samples_file(all_run: tuple[Path, str], tmp_path: Path):
    directory, _ = all_run
    full = (directory / "samples.jsonl").read_bytes()
    part_dir = tmp_path / directory.name
    part_dir.mkdir()
    cut = full.split(b"\n")
    partial = b"\n".join(cut[:7]) + b"\n" + cut[7][: len(cut[7]) // 2]  # 7 samples and a torn 8th line
    (part_dir / "samples.jsonl").write_bytes(partial)
    res = bench([*ARGS, "--templates", "all", "--output", str(tmp_path)])
    assert res.exit_code == 0, res.output
    assert "scored 13 examples now, 7 resumed" in res.output
    assert (part_dir / "samples.jsonl").read_bytes() == full
    a, b = read_result(directory / "result.json"), read_result(part_dir / "result.json")
    assert {t: tr.template_sensitivity for t, tr in a.tasks.items()} == \
        {t: tr.template_sensitivity for t, tr in b.tasks.items()}


class StopAfter(FakeBackend):
    def __init__(self, calls: int) -> None:
        super().__init__(BackendConfig())
        self.stop = calls

    def score(self, requests):  # type: ignore[no-untyped-def]
        if self.calls >= self.stop:
            raise KeyboardInterrupt
        return super().score(requests)


def test_interrupted_run_keeps_finished_chunks_and_resumes(all_run: tuple[Path, str], tmp_path: Path):
    directory, _ = all_run
    cfg = RunConfig(backend="fake", tasks=("xcopa", "xwinograd"), languages=("et", "en"), limit=10,
                    templates_mode="all", output_dir=str(tmp_path))
    plan = plan_run(cfg)
    with pytest.raises(KeyboardInterrupt):  # chunks of >= 20 statements: 4 XCOPA examples (3 templates x 2)
        execute(plan, StopAfter(calls=2), show_progress=False, environment=dict, chunk_requests=20)
    kept = lines(tmp_path / directory.name / "samples.jsonl")
    assert [s["example_id"] for s in kept] == [f"xcopa/et/test/{i}" for i in range(8)]
    backend = FakeBackend(BackendConfig())
    outcome = execute(plan, backend, show_progress=False, environment=dict, chunk_requests=20)
    assert (outcome.scored_now, outcome.resumed) == (12, 8)
    assert outcome.samples_path.read_bytes() == (directory / "samples.jsonl").read_bytes()


def test_draw_mode_is_unchanged(all_run: tuple[Path, str], tmp_path: Path):
    directory, _ = all_run
    res = bench([*ARGS, "--output", str(tmp_path)])
    assert res.exit_code == 0, res.output
    draw = run_dir(tmp_path)
    assert draw.name != directory.name
    result = read_result(draw / "result.json")
    assert "templates_mode" not in result.config["identity"]
    assert all(tr.template_sensitivity is None for tr in result.tasks.values())
    plan = plan_run(RunConfig(backend="fake", tasks=("xcopa", "xwinograd"), languages=("et", "en"), limit=10))
    examples = {ex.example_id: ex for es in plan.example_sets for ex in es.examples}
    for s in lines(draw / "samples.jsonl"):
        template = draw_template(plan.templates[s["task"]], examples[s["example_id"]], 0)
        assert s["template_id"] == template.id and len(s["requests"]) == 2 and s["extra"] == {}
    model = {"backend": "fake", "model": "random", "revision": None, "adapter": None, "dtype": "float32",
             "max_length": None, "device": "cpu"}
    identity = run_identity(plan, model, "statements")
    all_plan = plan_run(RunConfig(backend="fake", tasks=("xcopa", "xwinograd"), languages=("et", "en"), limit=10,
                                  templates_mode="all"))
    assert run_identity(all_plan, model, "statements") == {**identity, "templates_mode": "all"}


def test_templates_all_needs_statements():
    res = bench(["run", "--backend", "fake", "--prompt", "lm-eval", "--tasks", "xcopa", "--limit", "2",
                 "--templates", "all", "--output", "/nonexistent-never-written"])
    assert res.exit_code == 2
    assert res.output.count("\n") == 1 and "--templates all" in res.output and "--prompt statements" in res.output
    res = bench(["run", "--backend", "hf", "--model", "no-such-model", "--tasks", "xcopa", "--templates", "all"])
    assert res.exit_code == 2 and "--backend hf with --prompt default" in res.output  # refused before any load
    with pytest.raises(UsageError, match="choose draw or all"):
        plan_run(RunConfig(backend="fake", templates_mode="some"))


def test_judge_mode_statements_are_allowed(tmp_path: Path):
    res = bench(["run", "--backend", "fake", "--prompt", "statements", "--tasks", "xwinograd", "--langs", "fr",
                 "--limit", "3", "--templates", "all", "--output", str(tmp_path), "--quiet"])
    assert res.exit_code == 0, res.output


# -- the metrics module on hand-made samples ---------------------------------------------------------------------------

def sample(index: int, gold: int, predictions: dict[str, int], prediction: int = 0, lang: str = "et") -> Sample:
    templates = {tid: {"requests": ["a", "b"], "scores": [0.0, 0.0], "prediction": p}
                 for tid, p in predictions.items()}
    return Sample(example_id=f"t/{lang}/test/{index}", task="t", language=lang, split="test", index=index,
                  template_id="all", requests=(), scores=(0.0, 0.0), prediction=prediction, gold=gold,
                  extra={"templates": templates})


def test_spread_stats_known_values():
    s = spread_stats([0.5, 0.75, 1.0, 0.75])
    assert s == {"mean": 0.75, "min": 0.5, "max": 1.0, "spread": 0.5, "std": pytest.approx(math.sqrt(0.125 / 4))}
    assert all(math.isnan(v) for v in spread_stats([]).values())


def test_language_sensitivity_known_values():
    samples = [sample(0, 0, {"c1": 0, "c2": 1}, prediction=0),  # cause example
               sample(1, 1, {"c1": 1, "c2": 1}, prediction=1),
               sample(2, 0, {"e1": 0}, prediction=1),  # effect example
               sample(3, 1, {"e1": 0}, prediction=1)]
    block = language_sensitivity(samples, ["c1", "c2", "e1", "e2"])
    assert block["templates"] == {"c1": {"accuracy": 1.0, "n": 2}, "c2": {"accuracy": 0.5, "n": 2},
                                  "e1": {"accuracy": 0.5, "n": 2}, "e2": {"accuracy": None, "n": 0}}
    assert block["n_templates"] == 3 and block["n"] == 4
    assert block["mean"] == pytest.approx(2 / 3) and (block["min"], block["max"], block["spread"]) == (0.5, 1.0, 0.5)
    assert block["std"] == pytest.approx(math.sqrt(((1 / 3) ** 2 + 2 * (1 / 6) ** 2) / 3))
    assert block["ensemble_accuracy"] == 0.75
    with pytest.raises(DataError, match="not an all-templates sample"):
        language_sensitivity([Sample("x", "t", "et", "test", 0, "c1", ("a", "b"), (0.0, 1.0), 1, 1)])


def test_task_summary_and_block_known_values():
    by_lang = {"et": [sample(0, 0, {"1": 0, "2": 1}), sample(1, 0, {"1": 0, "2": 0})],  # 1: 1.0, 2: 0.5
               "tr": [sample(0, 1, {"1": 0, "2": 1}, lang="tr"), sample(1, 1, {"1": 1, "2": 1}, lang="tr")]}
    block = template_sensitivity(by_lang, ["1", "2"], ensemble_rule="rule")  # tr: 1: 0.5, 2: 1.0
    assert block["ensemble_rule"] == "rule" and block["group_field"] is None and "note" not in block
    summary = block["summary"]
    assert summary["templates"] == {"1": 0.75, "2": 0.75}
    assert (summary["mean"], summary["spread"], summary["std"], summary["n_languages"]) == (0.75, 0.0, 0.0, 2)
    assert summary["language_mean"] == {"mean": 0.75, "min": 0.5, "max": 1.0, "spread": 0.5, "std": 0.25}
    grouped = template_sensitivity(by_lang, ["1", "2"], {"1": "cause", "2": "effect"}, "question")
    assert grouped["groups"] == {"1": "cause", "2": "effect"} and "question" in grouped["note"]
    assert task_summary({})["n_languages"] == 0


def test_result_files_without_template_sensitivity_still_read(all_run: tuple[Path, str]):
    directory, _ = all_run
    d = json.loads((directory / "result.json").read_text(encoding="utf-8"))
    again = result_from_dict(json.loads(json.dumps(d)))
    assert result_to_dict(again) == d  # round trip keeps the block
    for t in d["tasks"].values():
        del t["template_sensitivity"]
    assert all(tr.template_sensitivity is None for tr in result_from_dict(d).tasks.values())


# -- the report ----------------------------------------------------------------------------------------------------

def test_report_table_and_figure(all_run: tuple[Path, str], tmp_path: Path):
    directory, _ = all_run
    result = read_result(directory / "result.json")
    draw_like = result_from_dict(json.loads((directory / "result.json").read_text(encoding="utf-8")))
    for tr in draw_like.tasks.values():
        tr.template_sensitivity = None
    tables = sensitivity_tables([result, draw_like])  # a run without the block adds nothing
    assert tables[0].headers[3:9] == [f"{tid} ({g})" for tid, g in XCOPA_GROUPS.items()]
    xcopa = result.tasks["xcopa"].template_sensitivity
    assert xcopa is not None
    et = xcopa["languages"]["et"]
    row = tables[0].rows[0]
    assert row[:3] == ["fake:random", "et", "10"]
    assert row[3] == f"{100 * et['templates']['cause-1']['accuracy']:.1f} ({et['templates']['cause-1']['n']})"
    assert row[-4:] == [f"{100 * et['mean']:.1f}", f"{100 * et['min']:.1f}–{100 * et['max']:.1f} "
                        f"({100 * et['spread']:.1f})", f"{100 * et['std']:.1f}",
                        f"{100 * et['ensemble_accuracy']:.1f}"]
    assert tables[0].rows[1][1] == "**mean**" and tables[1].headers[3:8] == ["1", "2", "3", "4", "5"]
    rows = sensitivity_rows([result])
    assert len(rows) == 2 * (6 + 5)  # per language and the mean row, per template
    assert {r["group"] for r in rows if r["task"] == "xcopa"} == {"cause", "effect"}

    blocks = sensitivity_blocks([result, draw_like], tmp_path / "figs")
    assert isinstance(blocks[0], str)
    assert [type(b) for b in blocks[1:]] == [Table, Figure, Table, Figure]
    for b in blocks:
        if isinstance(b, Figure):
            assert b.path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert {b.path.name for b in blocks if isinstance(b, Figure)} == {"templates-xcopa.png", "templates-xwinograd.png"}
    assert sensitivity_blocks([draw_like], tmp_path) == []
    assert sensitivity_plot([draw_like], "xcopa", tmp_path / "none.png") is None
    assert sensitivity_text(draw_like) == "" and "cause-1 (cause)" in sensitivity_text(result)
