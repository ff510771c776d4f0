"""`bench reproduce`: the plan of the full study (no GPU, no hub, nothing written), the stand-in run end to end with
the bundled models, its rerun (every step skipped, no file touched), and a failed step (finished steps kept, the
rerun starts at the failed one)."""

from __future__ import annotations

import json
import re
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import click
import pytest
from click.testing import CliRunner, Result

from harness.cli import main
from harness.commands.common import failure
from harness.errors import DataError
from harness.reproduce.study import load_study, parse_study

STAND_IN_STEPS = ["train-mdeberta-25", "eval-mdeberta-25", "llm-qwen2-72b", "efficiency", "report"]


def invoke(*args: str) -> Result:
    return CliRunner().invoke(main, list(args))


def _table_rows(text: str) -> dict[str, list[str]]:
    """Plan table rows by step id: the cells of each `| n | id | ... |` line."""
    rows = {}
    for line in text.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) == 9 and (cells[0].isdigit() or cells[1] == "total"):
            rows[cells[1]] = cells
    return rows


def test_plan_prints_the_full_study_with_gpu_hours_and_touches_nothing(tmp_path: Path,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    def no_network(*_a: Any, **_k: Any) -> None:
        raise AssertionError("--plan tried to open a network connection")

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(socket.socket, "connect", no_network)
    out = tmp_path / "study"
    res = invoke("reproduce", "--plan", "--output", str(out))
    assert res.exit_code == 0, res.output
    assert not out.exists() and list(tmp_path.iterdir()) == []  # nothing written

    study = load_study()
    rows = _table_rows(res.output)
    assert [r for r in rows if r != "total"] == [s.id for s in study.steps] and len(study.steps) == 29
    for step_id in ("train-mdeberta-25", "train-xlmr-large-25", "train-mdeberta-en", "train-mdeberta-11",
                    "train-mdeberta-25-translated", "train-mdeberta-25-no-mt", "train-mbert-25", "eval-xlmr-base-25",
                    "llm-qwen2-0.5b", "llm-qwen2-72b", "llm-llama-3.1-70b", "llm-gemma-2-27b", "llm-aya-23-35b",
                    "efficiency", "report"):
        assert step_id in rows
    # the commands as they will run, the recipe's settings included
    assert ("train-mdeberta-25: bench train --model mdeberta-v3-base --method full --lr 2e-6 --langs 25 "
            "--per-task 1500") in res.output
    assert f"--output {out}/models/mdeberta-25" in res.output
    assert ("llm-qwen2-72b: bench run --backend vllm --model qwen2-72b --tasks xcopa,xnli,xstorycloze,xwinograd "
            "--tensor-parallel-size 4") in res.output
    assert "--template-language translated" in res.output and "--no-translation" in res.output
    # hub needs per step, none for the packaged-data eval of a trained model
    assert rows["train-xlmr-large-25"][7] == "FacebookAI/xlm-roberta-large"
    assert rows["llm-llama-3.1-70b"][7] == "meta-llama/Llama-3.1-70B-Instruct"
    assert rows["eval-mdeberta-25"][7] == "none" and rows["report"][7] == "none"
    # GPU-hours: positive for every GPU step, 0 for the report, summing to the printed total
    hours = {k: float(v[5]) for k, v in rows.items() if k != "total"}
    assert all(h > 0 for k, h in hours.items() if k != "report") and hours["report"] == 0.0
    total = float(rows["total"][5])
    assert sum(hours.values()) == pytest.approx(total, abs=0.0005 * len(hours))
    assert rows["llm-qwen2-72b"][4] == "4" and hours["llm-qwen2-72b"] > hours["llm-qwen2-7b"] > hours["llm-qwen2-0.5b"]
    assert hours["train-xlmr-large-25"] > hours["train-mdeberta-25"] > hours["train-mdeberta-en"]
    by_kind = re.search(r"GPU-hours by kind: train ([\d.]+), run ([\d.]+), efficiency ([\d.]+), report ([\d.]+); "
                        r"total ([\d.]+)", res.output)
    assert by_kind is not None
    train, run, eff, rep, total2 = map(float, by_kind.groups())
    assert train + run + eff + rep == pytest.approx(total2, abs=0.002) and total2 == pytest.approx(total, abs=0.001)
    assert "estimates for h100-sxm" in res.output and "How the estimates are derived" in res.output


def test_plan_statement_counts_match_the_mixture() -> None:
    """The plan's training sizes are what `bench train` builds (checked on the cheapest, English-only, one)."""
    from harness.training.mixture import MixtureConfig, build_mixture

    step = next(s for s in load_study().steps if s.id == "train-mdeberta-en")
    mixture = build_mixture(MixtureConfig(langs="en", per_task=1500, seed=42))
    assert step.statements == len(mixture.statements) == 46288


@pytest.mark.parametrize("edit,needle", [
    (lambda d: d["steps"][0].update(kind="bogus"), "steps[0] (train-mdeberta-25).kind: 'bogus' is not one of"),
    (lambda d: d["steps"][0].update(args="bench run --output {out}/x"),
     "steps[0] (train-mdeberta-25).args: must start with 'bench train'"),
    (lambda d: d["steps"][0].update(depends_on=["report"]), "depends_on forms a cycle"),
    (lambda d: d["steps"][1].update(id="train-mdeberta-25"), "'train-mdeberta-25' appears twice"),
    (lambda d: d["estimates"].pop("utilisation"), "estimates.utilisation: missing"),
])
def test_study_file_errors_are_one_line_naming_the_key(edit: Any, needle: str) -> None:
    from importlib import resources

    import yaml

    data = yaml.safe_load(resources.files("harness.reproduce").joinpath("paper.yaml").read_text(encoding="utf-8"))
    edit(data)
    with pytest.raises(DataError) as err:
        parse_study(data, "paper.yaml")
    assert str(err.value).startswith("paper.yaml: ") and needle in str(err.value) and "\n" not in str(err.value)


def test_full_study_refuses_a_machine_without_cuda(tmp_path: Path) -> None:
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA: the full study would start")
    res = invoke("reproduce", "--output", str(tmp_path / "s"))
    assert res.exit_code == 2 and res.output.count("\n") == 1
    assert "needs CUDA GPUs" in res.output and "--stand-in" in res.output and not (tmp_path / "s").exists()


@pytest.fixture(scope="module")
def stand_in(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, Result, float]]:
    """One stand-in run shared by the tests below (the expensive part of this file)."""
    out = tmp_path_factory.mktemp("reproduce") / "stand-in"
    t0 = time.monotonic()
    res = invoke("reproduce", "--stand-in", "--output", str(out))
    yield out, res, time.monotonic() - t0


def test_stand_in_completes_and_reports_published_table_and_deltas(stand_in: tuple[Path, Result, float]) -> None:
    out, res, seconds = stand_in
    assert res.exit_code == 0, res.output
    assert seconds < 180
    assert "stand-in: stand-in at reduced size" in res.output and "minilm-l6" in res.output
    assert "5 step(s) ran, 0 skipped" in res.output
    study = load_study()
    for step in study.steps_for("stand-in"):
        marker = json.loads((out / "steps" / f"{step.id}.json").read_text(encoding="utf-8"))
        assert marker["mode"] == "stand-in" and marker["command"] == step.command("stand-in", str(out))
        assert marker["outputs"] and all(Path(p).is_file() for p in marker["outputs"])
        assert marker["versions"]["statement-bench"] and marker["finished"] >= marker["started"]
    assert [p.stem for p in sorted((out / "steps").glob("*.json"))] == sorted(STAND_IN_STEPS)

    report = (out / "report" / "report.md").read_text(encoding="utf-8")
    assert "(STAND-IN: bundled small models, reduced size)" in report.splitlines()[0]
    assert "## Published reference" in report and "| Qwen2-72B " in report and "67.84" in report
    assert "## Reproduction (bench reproduce)" in report and "**Stand-in run, not the paper's study.**" in report
    # measured (measured - published) cells: the delta is the measured value minus the packaged published value
    published = {"mDeBERTa-276M": [65.52, 47.84, 73.53, 54.75], "Qwen2-72B": [67.84, 42.10, 66.70, 84.02]}
    found = 0
    for line in report.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) == 7 and cells[2] in published:
            for cell, ref in zip(cells[3:], published[cells[2]], strict=True):
                measured, delta = re.fullmatch(r"([\d.]+) \(([+-][\d.]+)\)", cell).groups()  # type: ignore[union-attr]
                assert float(delta) == pytest.approx(float(measured) - ref, abs=0.006)
            found += 1
    assert found == 2
    assert "minilm-l6 (statement-tuned: mdeberta-25)" in report and "smollm2-135m" in report
    # the HTML report carries the same section (inside <main>, listed in the contents)
    page = (out / "report" / "report.html").read_text(encoding="utf-8")
    section = page[page.index('<section id="reproduction-bench-reproduce">'):page.index("</main>")]
    assert "Stand-in run, not the paper&#x27;s study." in section or "Stand-in run, not the paper's study." in section
    assert "minilm-l6 (statement-tuned: mdeberta-25)" in section and "mDeBERTa-276M" in section
    assert '<a href="#reproduction-bench-reproduce">' in page[:page.index("<main>")]


def test_second_invocation_skips_every_step_and_touches_no_file(stand_in: tuple[Path, Result, float]) -> None:
    out, first, _ = stand_in
    assert first.exit_code == 0, first.output
    before = {p: p.stat().st_mtime_ns for p in out.rglob("*") if p.is_file()}
    t0 = time.monotonic()
    res = invoke("reproduce", "--stand-in", "--output", str(out))
    assert res.exit_code == 0, res.output
    assert time.monotonic() - t0 < 10
    skipped = re.findall(r"^skip (\S+) \(done \d{4}-\d\d-\d\dT[\d:]+Z\)$", res.output, flags=re.M)
    assert skipped == STAND_IN_STEPS and "0 step(s) ran, 5 skipped" in res.output
    assert {p: p.stat().st_mtime_ns for p in out.rglob("*") if p.is_file()} == before


def _stub(calls: list[tuple[str, ...]], fail_on: str | None = None) -> click.Command:
    """A stand-in for a `bench` command: records its arguments, writes its --output / --out, or fails."""

    @click.command("stub", context_settings={"ignore_unknown_options": True, "allow_extra_args": True})
    @click.argument("args", nargs=-1, type=click.UNPROCESSED)
    def stub(args: tuple[str, ...]) -> None:
        calls.append(args)
        if fail_on is not None and any(fail_on in a for a in args):
            raise failure("data file broken (injected)", 3)
        for flag, suffix in (("--output", "/out.txt"), ("--out", ".md")):
            if flag in args:
                target = Path(args[args.index(flag) + 1] + suffix)
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_text("x\n", encoding="utf-8")
    return stub


def test_failed_step_keeps_finished_markers_and_the_rerun_starts_there(tmp_path: Path,
                                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    from harness.commands import efficiency, report, run, train

    out = tmp_path / "s"
    calls: list[tuple[str, ...]] = []
    for module, name in ((train, "train_cmd"), (efficiency, "efficiency_cmd"), (report, "report_cmd")):
        monkeypatch.setattr(module, name, _stub(calls))
    monkeypatch.setattr(run, "run_cmd", _stub(calls, fail_on="eval-mdeberta-25"))
    res = invoke("reproduce", "--stand-in", "--output", str(out))
    assert res.exit_code == 3
    error = res.output.splitlines()[-1]
    assert error.startswith("error: step eval-mdeberta-25 failed: data file broken (injected); finished steps are "
                            f"kept in {out}/steps")
    assert [p.stem for p in (out / "steps").glob("*.json")] == ["train-mdeberta-25"]
    kept = (out / "steps" / "train-mdeberta-25.json").read_bytes()
    assert len(calls) == 2 and calls[0][calls[0].index("--model") + 1] == "minilm-l6"

    calls.clear()
    monkeypatch.setattr(run, "run_cmd", _stub(calls))
    res = invoke("reproduce", "--stand-in", "--output", str(out))
    assert res.exit_code == 0, res.output
    assert res.output.splitlines()[1].startswith("skip train-mdeberta-25 (done ")
    assert "[2/5] eval-mdeberta-25 (not run): bench run --backend encoder" in res.output
    outputs = [c[c.index("--output") + 1] if "--output" in c else c[c.index("--out") + 1] for c in calls]
    assert outputs == [f"{out}/runs/eval-mdeberta-25", f"{out}/runs/llm-qwen2-72b", f"{out}/efficiency",
                       f"{out}/report/report"]
    assert (out / "steps" / "train-mdeberta-25.json").read_bytes() == kept
    assert sorted(p.stem for p in (out / "steps").glob("*.json")) == sorted(STAND_IN_STEPS)
    assert "## Reproduction (bench reproduce)" in (out / "report" / "report.md").read_text(encoding="utf-8")


def test_changed_command_reruns_the_step_and_its_dependents_and_modes_never_mix(tmp_path: Path) -> None:
    from dataclasses import replace

    from harness.errors import UsageError
    from harness.reproduce.execute import execute_study

    calls: list[list[str]] = []

    def runner(_command: click.Command, args: list[str]) -> None:
        calls.append(args)
        target = Path(args[args.index("--output") + 1] if "--output" in args else args[args.index("--out") + 1])
        target.mkdir(parents=True, exist_ok=True)
        (target / "out.txt").write_text("x\n", encoding="utf-8")

    study = load_study()
    commands = {kind: click.Command(kind) for kind in ("train", "run", "efficiency", "report")}
    lines: list[str] = []
    first = execute_study(study, "stand-in", tmp_path, commands, lines.append, runner=runner)
    assert first.ran == STAND_IN_STEPS and len(calls) == 5
    # eval-mdeberta-25 gets another --limit: it runs again, and so does the report that depends on it
    steps = tuple(replace(s, stand_in=s.stand_in.replace("--limit 5", "--limit 6")) if s.id == "eval-mdeberta-25"
                  and s.stand_in else s for s in study.steps)
    second = execute_study(replace(study, steps=steps), "stand-in", tmp_path, commands, lines.append, runner=runner)
    assert second.ran == ["eval-mdeberta-25", "report"]
    assert second.skipped == ["train-mdeberta-25", "llm-qwen2-72b", "efficiency"]
    assert "[2/5] eval-mdeberta-25 (command changed): bench run" in "\n".join(lines)
    assert "[5/5] report (eval-mdeberta-25 ran again): bench report" in "\n".join(lines)
    with pytest.raises(UsageError, match="holds the stand-in study"):
        execute_study(study, "full", tmp_path, commands, lines.append, runner=runner)
