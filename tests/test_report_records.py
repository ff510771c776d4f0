"""The typed reading side of result.json: one validating reader (`read_result` / `record_from_dict`), evaluation and
efficiency records, typed sub-records with unknown keys kept, the 1.x migration, and one-line errors."""

from __future__ import annotations

import copy
import json
import math
from pathlib import Path
from typing import Any

import pytest

from harness.errors import DataError
from harness.reports.build import ReportOptions, build_report
from harness.reports.efficiency import efficiency_results, throughput_table
from harness.results.schema import (
    EfficiencyRecord,
    EvalRecord,
    ModelInfo,
    RunResult,
    TaskResult,
    as_record,
    read_eval,
    read_result,
    result_from_dict,
    result_to_dict,
    write_result,
)


def _language(lang: str, accuracy: Any = 0.6) -> dict[str, Any]:
    return {"language": lang, "n": 20, "n_rows": 500, "accuracy": accuracy, "stderr": 0.11, "ci95_low": 0.39,
            "ci95_high": 0.78, "truncated": 0, "data_source": "packaged",
            "data_location": f"xcopa/test/{lang}.jsonl.gz",
            "data_sha256": None, "data_derived": False, "acc_norm": None, "acc_norm_stderr": None}


def _eval_doc(version: str = "1.3") -> dict[str, Any]:
    """An accuracy run's result.json object as `bench run` writes it (1.3)."""
    task = {"task": "xcopa", "split": "test", "metric": "acc",
            "languages": {"et": _language("et"), "ht": _language("ht", None)},
            "mean_accuracy": 0.6, "mean_stderr": 0.05, "mean_ci95_low": 0.5, "mean_ci95_high": 0.7, "n_languages": 2,
            "n_examples": 40, "templates": {}, "prompt": "statements", "mean_acc_norm": None,
            "mean_acc_norm_ci95_low": None, "mean_acc_norm_ci95_high": None, "title": "XCOPA", "chance": 50.0,
            "task_file": None, "template_sensitivity": None}
    return {"schema_version": version, "run_id": "encoder-x-0123456789ab",
            "config": {"backend": "encoder", "model": None, "tasks": ["xcopa"], "limit": 20, "seed": 0,
                       "batch_size": 32},
            "model": {"backend": "encoder", "model": "me5-small-st", "num_parameters": 119130244,
                      "adapter": None, "notes": ["a note"], "revision": "sha256:abc"},
            "environment": {"python": "3.11.7", "cpu": "AMD EPYC", "torch_threads": 2,
                            "packages": {"torch": "2.13.0+cpu"}, "cuda_available": False},
            "tasks": {"xcopa": task}, "samples_file": "samples.jsonl",
            "timing": {"wall_seconds": 1.5}, "efficiency": None}


def _efficiency_doc() -> dict[str, Any]:
    record = {"model": {"model": "fake", "dtype": "float32", "backend": "random-weights"}, "kind": "encoder",
              "weights": "random", "mode": "measured", "settings": {"warmup": 1},
              "workload": {"probe_length": 40, "tokenizer": "own"},
              "cost": {"parameters": 1e6, "flops_per_token_at_mean": 2e6, "vocab": 100},
              "device": {"profile": {"name": "CPU", "peak_flops": {"float32": 2e11}, "bandwidth_bytes_per_s": 3e10,
                                     "memory_bytes": 2**31, "measured": True}, "measured_peaks": None},
              "max_batch": {"max_batch": 48, "max_pow2": 32, "stop_reason": "oom", "limit_bytes": 2**31,
                            "probes": [{"batch_size": 48, "fits": True, "peak_bytes": 1.5 * 2**30}]},
              "throughput": [{"batch_size": 48, "label": "max", "examples_per_s": 123.456, "rows_per_s": 246.9,
                              "tokens_per_s": 5000.0, "padded_tokens_per_s": 6000.0, "iterations": 10,
                              "latency_s": {"p50": 0.2, "p90": 0.3, "p99": 0.4, "stdev": 0.05},
                              "first_call_s": 0.5, "flops_per_s": 1e10, "peak_flops": 2e11, "pct_of_peak": 5.0,
                              "padding_share": 0.1},
                             {"batch_size": 64, "label": "2x", "error": "out of memory: 64"}],
              "estimate": None}
    return {"schema_version": "1.3", "run_id": "efficiency-fake-0123456789ab",
            "config": {"command": "efficiency", "model": "fake", "tasks": ["xcopa"], "limit": None, "seed": 0,
                       "identity": {"kind": "efficiency"}},
            "model": {"model": "fake", "dtype": "float32", "weights": "random", "kind": "encoder"},
            "environment": {"torch_threads": 2, "dtype": "float32", "packages": {"torch": "2.13.0+cpu"}},
            "tasks": {}, "samples_file": "", "timing": {"started_at": "2026-01-01T00:00:00+00:00"},
            "efficiency": record}


def _write(path: Path, doc: dict[str, Any]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(doc), encoding="utf-8")
    return path


def _error(path: Path) -> str:
    with pytest.raises(DataError) as err:
        read_result(path)
    message = str(err.value)
    assert "\n" not in message
    return message


# -- one reader, two record types -------------------------------------------------------------------------------------

def test_an_accuracy_run_reads_as_a_typed_eval_record(tmp_path: Path) -> None:
    record = read_result(_write(tmp_path / "r" / "result.json", _eval_doc()))
    assert isinstance(record, EvalRecord)
    assert isinstance(record.model, ModelInfo) and record.model.backend == "encoder"
    assert record.model.num_parameters == 119130244 and record.model.notes == ["a note"]
    assert record.model.extra == {"revision": "sha256:abc"}  # unknown keys kept
    assert record.model["revision"] == "sha256:abc" and record.model.get("model") == "me5-small-st"  # a mapping too
    assert record.config.limit == 20 and record.config.extra == {"batch_size": 32}
    assert record.environment.torch_threads == 2 and record.environment.extra == {"cuda_available": False}
    tr = record.tasks["xcopa"]
    assert isinstance(tr, TaskResult) and tr.title == "XCOPA"
    assert math.isnan(tr.languages["ht"].accuracy)  # null (NaN when written) reads back as NaN
    assert read_eval(tmp_path / "r" / "result.json") == record


def test_an_efficiency_record_reads_as_its_own_type(tmp_path: Path) -> None:
    path = _write(tmp_path / "e" / "result.json", _efficiency_doc())
    record = read_result(path)
    assert isinstance(record, EfficiencyRecord) and not hasattr(record, "tasks")
    e = record.efficiency
    assert e.max_batch is not None and e.max_batch.max_batch == 48 and e.max_batch.probes[0].fits is True
    ok, failed = e.throughput
    assert ok.examples_per_s == 123.456 and ok.latency_s.p90 == 0.3 and ok.energy is None
    assert ok.extra == {"padding_share": 0.1} and failed.error == "out of memory: 64"
    assert e.device.profile.name == "CPU" and e.device.measured_peaks is None and e.estimate is None
    assert e.extra == {"mode": "measured", "settings": {"warmup": 1}} and e.cost.extra == {"vocab": 100}
    assert e["max_batch"]["probes"] == [{"batch_size": 48, "fits": True, "peak_bytes": 1.5 * 2**30}]
    assert record.model.weights == "random" and record.config.command == "efficiency"
    assert efficiency_results([record]) == [record]
    with pytest.raises(DataError, match="an efficiency record, not an accuracy run"):
        read_eval(path)


def test_records_write_back_the_same_bytes(tmp_path: Path) -> None:
    """Writing is unchanged (`RunResult`); a record read from a file gives back the file's object and bytes."""
    for doc in (_eval_doc(), _efficiency_doc()):
        source = tmp_path / "src" / "result.json"
        write_result(source, result_from_dict(copy.deepcopy(doc)))
        record = read_result(source)
        assert result_to_dict(record) == json.loads(source.read_text(encoding="utf-8"))
        again = tmp_path / "again" / "result.json"
        write_result(again, record.to_result())
        assert again.read_bytes() == source.read_bytes()


def test_an_in_memory_run_result_reads_as_its_record() -> None:
    result = result_from_dict(_efficiency_doc())
    assert isinstance(result, RunResult) and isinstance(as_record(result), EfficiencyRecord)
    table = throughput_table([result])  # report functions take records; a RunResult is read as one
    assert table.rows[0][2] == "123.46" and table.rows[1][2] == "out of memory: 64"


# -- migration ----------------------------------------------------------------------------------------------------

def test_a_1_2_file_migrates(tmp_path: Path) -> None:
    doc = _eval_doc("1.2")
    for key in ("title", "chance", "task_file", "template_sensitivity"):  # 1.3 task fields
        del doc["tasks"]["xcopa"][key]
    record = read_result(_write(tmp_path / "r" / "result.json", doc))
    assert isinstance(record, EvalRecord) and record.schema_version == "1.2"
    tr = record.tasks["xcopa"]
    assert tr.title is None and tr.chance is None and tr.task_file is None and tr.template_sensitivity is None


def test_a_1_0_file_migrates(tmp_path: Path) -> None:
    doc = _eval_doc("1.0")
    del doc["efficiency"], doc["timing"]
    for lang in doc["tasks"]["xcopa"]["languages"].values():
        del lang["acc_norm"], lang["acc_norm_stderr"]
    for key in ("mean_acc_norm", "mean_acc_norm_ci95_low", "mean_acc_norm_ci95_high", "title", "chance", "task_file",
                "template_sensitivity", "prompt", "templates"):
        del doc["tasks"]["xcopa"][key]
    record = read_result(_write(tmp_path / "r" / "result.json", doc))
    assert isinstance(record, EvalRecord) and record.timing == {}
    assert record.tasks["xcopa"].languages["et"].acc_norm is None and record.tasks["xcopa"].prompt == "statements"


def test_a_1_2_efficiency_record_reports(tmp_path: Path) -> None:
    doc = _efficiency_doc()
    doc["schema_version"] = "1.2"
    path = _write(tmp_path / "e" / "result.json", doc)
    record = read_result(path)
    built = build_report([(record, path)], ReportOptions(reference=None, figures_dir=None))
    assert "1 efficiency record(s)" in built.doc.intro[0]


# -- malformed files: one line naming the file and the field --------------------------------------------------------

def test_a_malformed_number_names_file_and_field(tmp_path: Path) -> None:
    doc = _eval_doc()
    doc["tasks"]["xcopa"]["languages"]["et"]["accuracy"] = "abc"
    path = _write(tmp_path / "x" / "result.json", doc)
    assert _error(path) == f"{path}: tasks.xcopa.languages.et.accuracy: expected a number, got 'abc'"


@pytest.mark.parametrize(("edit", "message"), [
    (lambda d: d["tasks"]["xcopa"].pop("mean_accuracy"), "tasks.xcopa.mean_accuracy: missing"),
    (lambda d: d.pop("run_id"), "run_id: missing"),
    (lambda d: d["model"].update(num_parameters="big"), "model.num_parameters: expected a number, got 'big'"),
    (lambda d: d["model"].update(notes="one"), "model.notes: expected a list, got 'one'"),
    (lambda d: d["tasks"]["xcopa"]["languages"]["et"].update(n=True), "tasks.xcopa.languages.et.n: expected an "
                                                                       "integer, got True"),
    (lambda d: d.update(config=[]), "config: expected an object, got []"),
    (lambda d: d["tasks"].update(xnli=3), "tasks.xnli: expected an object, got 3"),
])
def test_malformed_eval_fields(tmp_path: Path, edit: Any, message: str) -> None:
    doc = _eval_doc()
    edit(doc)
    path = _write(tmp_path / "x" / "result.json", doc)
    assert _error(path) == f"{path}: {message}"


def test_malformed_efficiency_fields(tmp_path: Path) -> None:
    doc = _efficiency_doc()
    doc["efficiency"]["throughput"][0]["examples_per_s"] = "fast"
    path = _write(tmp_path / "e" / "result.json", doc)
    assert _error(path) == f"{path}: efficiency.throughput[0].examples_per_s: expected a number, got 'fast'"
    doc = _efficiency_doc()
    doc["efficiency"]["device"]["profile"]["measured"] = "yes"
    path = _write(tmp_path / "e" / "result.json", doc)
    assert _error(path) == f"{path}: efficiency.device.profile.measured: expected true or false, got 'yes'"


def test_unsupported_version_and_non_objects(tmp_path: Path) -> None:
    doc = _eval_doc("2.0")
    path = _write(tmp_path / "v" / "result.json", doc)
    assert _error(path) == f"{path}: schema_version '2.0' is not supported (this bench reads 1.4)"
    listing = tmp_path / "l" / "result.json"
    listing.parent.mkdir()
    listing.write_text("[1, 2]", encoding="utf-8")
    assert _error(listing) == f"{listing}: not a statement-bench result file"


def test_bench_report_fails_with_the_one_line(tmp_path: Path) -> None:
    from click.testing import CliRunner

    from harness.cli import main

    doc = _eval_doc()
    doc["tasks"]["xcopa"]["languages"]["et"]["accuracy"] = "abc"
    path = _write(tmp_path / "in" / "x" / "result.json", doc)
    res = CliRunner().invoke(main, ["report", str(tmp_path / "in"), "--out", str(tmp_path / "out" / "r"),
                                    "--format", "md"])
    assert res.exit_code != 0
    assert f"{path}: tasks.xcopa.languages.et.accuracy: expected a number, got 'abc'" in res.output


def _with_sensitivity(doc: dict[str, Any]) -> dict[str, Any]:
    doc["tasks"]["xcopa"]["template_sensitivity"] = {
        "ensemble_rule": "mean P(True)", "std": "population (ddof=0) over templates", "group_field": None,
        "languages": {"et": {"templates": {"1": {"accuracy": 0.5, "n": 20}, "2": {"accuracy": None, "n": 0}},
                             "n_templates": 1, "mean": 0.5, "min": 0.5, "max": 0.5, "spread": 0.0, "std": 0.0,
                             "ensemble_accuracy": 0.6, "n": 20}},
        "summary": {"templates": {"1": 0.5, "2": None}, "n_languages": 1, "mean": 0.5, "min": 0.5, "max": 0.5,
                    "spread": 0.0, "std": 0.0, "language_mean": {"mean": 0.5}}}
    return doc


def test_template_sensitivity_reads_typed(tmp_path: Path) -> None:
    record = read_result(_write(tmp_path / "t" / "result.json", _with_sensitivity(_eval_doc())))
    assert isinstance(record, EvalRecord) and list(record.template_sensitivity) == ["xcopa"]
    block = record.template_sensitivity["xcopa"]
    et = block.languages["et"]
    assert et.templates["1"].accuracy == 0.5 and et.templates["2"].accuracy is None and et.max == 0.5
    assert block.summary.templates == {"1": 0.5, "2": None} and block.group_field is None
    assert record.tasks["xcopa"].template_sensitivity == block.to_dict()  # the task keeps the block as written


def test_malformed_template_sensitivity_names_the_field(tmp_path: Path) -> None:
    doc = _with_sensitivity(_eval_doc())
    doc["tasks"]["xcopa"]["template_sensitivity"]["languages"]["et"]["templates"]["1"]["n"] = "20"
    path = _write(tmp_path / "t" / "result.json", doc)
    assert _error(path) == (f"{path}: tasks.xcopa.template_sensitivity.languages.et.templates.1.n: expected an "
                            "integer, got '20'")
