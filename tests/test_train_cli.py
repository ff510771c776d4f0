"""`bench statements` and `bench train` end to end through CliRunner on the packaged training data."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from harness.cli import main


def invoke(*args: str):  # type: ignore[no-untyped-def]
    return CliRunner().invoke(main, list(args), catch_exceptions=False)


def test_statements_writes_balanced_mixture_and_manifest(tmp_path: Path) -> None:
    out = tmp_path / "st"
    res = invoke("statements", "--langs", "de,ha", "--tasks", "topic,sentiment", "--per-task", "40",
                 "--seed", "3", "--output", str(out))
    assert res.exit_code == 0, res.output
    rows = [json.loads(line) for line in (out / "statements.jsonl").read_text(encoding="utf-8").splitlines()]
    manifest = json.loads((out / "manifest.json").read_text(encoding="utf-8"))
    assert len(rows) == 160 and sum(r["label"] for r in rows) == 80
    for cell in ("topic/de", "topic/ha", "sentiment/de", "sentiment/ha"):
        task, lang = cell.split("/")
        assert sum(1 for r in rows if r["task_type"] == task and r["language"] == lang and r["label"] == 1) == 20
        assert manifest["counts"][f"{cell}/true"] == manifest["counts"][f"{cell}/false"] == 20
    assert "| sentiment | 40 | 40 |" in res.output
    # seeded: the same command gives the same statements
    again = tmp_path / "again"
    invoke("statements", "--langs", "de,ha", "--tasks", "topic,sentiment", "--per-task", "40", "--seed", "3",
           "--output", str(again))
    assert (again / "statements.jsonl").read_bytes() == (out / "statements.jsonl").read_bytes()


@pytest.mark.parametrize("args,code,needle", [
    (("--langs", "de,xx"), 2, "xx"),
    (("--tasks", "topic,bogus"), 2, "bogus"),
    (("--per-task", "1"), 2, "--per-task"),
])
def test_statements_bad_options_are_one_line_errors(tmp_path: Path, args: tuple[str, ...], code: int,
                                                    needle: str) -> None:
    res = CliRunner().invoke(main, ["statements", *args, "--output", str(tmp_path / "x")])
    assert res.exit_code == code
    assert res.output.startswith("error: ") and needle in res.output and res.output.count("\n") == 1


def test_leakage_guard_refuses_eval_task_statements(tmp_path: Path) -> None:
    extra = tmp_path / "copa.jsonl"
    extra.write_text(json.dumps({"text": "The man fell because the floor was wet.", "label": 1, "source": "copa",
                                 "language": "en", "task_type": "causal"}) + "\n", encoding="utf-8")
    base = ["statements", "--langs", "de", "--tasks", "topic", "--per-task", "4", "--extra-statements", str(extra)]
    res = CliRunner().invoke(main, [*base, "--output", str(tmp_path / "a")])
    assert res.exit_code == 2 and "copa" in res.output and res.output.count("\n") == 1
    res = CliRunner().invoke(main, [*base, "--allow-eval-overlap", "--output", str(tmp_path / "b")])
    assert res.exit_code == 0, res.output
    manifest = json.loads((tmp_path / "b" / "manifest.json").read_text(encoding="utf-8"))
    assert manifest["eval_overlap"]


def test_train_refuses_an_adapter_as_model(tmp_path: Path) -> None:
    res = invoke("train", "--model", "me5-small-st", "--method", "lora", "--langs", "en", "--tasks", "topic",
                 "--per-task", "20", "--output", str(tmp_path / "m"))
    assert res.exit_code == 2 and res.output.count("\n") == 1
    assert "--model me5-small-st is a peft adapter; train from its base model (--model me5-small)" in res.output


@pytest.mark.slow
def test_train_then_run_with_the_trained_model(tmp_path: Path) -> None:
    out = tmp_path / "model"
    args = ["train", "--model", "minilm-l6", "--method", "lora", "--langs", "en", "--tasks", "sentiment,topic",
            "--no-translation", "--per-task", "40", "--max-steps", "4", "--eval-every", "2", "--batch-size", "8",
            "--max-length", "128", "--dtype", "fp32", "--output", str(out)]
    res = invoke(*args)
    assert res.exit_code == 0, res.output
    assert "best held-out accuracy" in res.output and f"bench run --backend encoder --model {out}" in res.output
    info = json.loads((out / "training.json").read_text(encoding="utf-8"))
    assert info["steps"] == 4 and info["statements"]["train"] + info["statements"]["heldout"] == 80
    assert info["command"].startswith("bench ")
    manifest = json.loads((out / "data_manifest.json").read_text(encoding="utf-8"))
    assert manifest["counts"]["sentiment/en/true"] == 20
    assert (out / "README.md").read_text(encoding="utf-8").startswith("# Statement-tuned minilm-l6 (lora)")
    # the same command again: nothing to do
    res = invoke(*args)
    assert res.exit_code == 0, res.output
    # a different config into the same directory: refused in one line
    res = CliRunner().invoke(main, [*args[:-2], "--lr", "0.01", "--output", str(out)])
    assert res.exit_code == 2 and "different config" in res.output
    # the model runs on an eval task
    run = invoke("run", "--backend", "encoder", "--model", str(out), "--tasks", "xwinograd", "--langs", "en",
                 "--limit", "6", "--output", str(tmp_path / "results"), "--quiet")
    assert run.exit_code == 0, run.output
    result = json.loads(next((tmp_path / "results").glob("*/result.json")).read_text(encoding="utf-8"))
    assert result["tasks"]["xwinograd"]["languages"]["en"]["n"] == 6
