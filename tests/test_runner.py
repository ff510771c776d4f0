"""Runner end to end with the fake backend on the real packaged data: metrics, resume, crash safety."""

from __future__ import annotations

import json
import os
import signal
import stat
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import pytest

from harness.backends.base import BackendConfig, ModelInfo
from harness.backends.fake import FakeBackend
from harness.results.schema import read_result, result_to_dict
from harness.runner import RunConfig, execute, plan_run
from harness.statement.templates import task_templates
from harness.statement.verbalizer import verbalize
from harness.tasks.examples import load_examples
from harness.tasks.registry import get_task


def fixed_env() -> dict[str, object]:
    return {"test": True}


def comparable(path: Path) -> dict[str, object]:
    d = result_to_dict(read_result(path))
    d.pop("timing")
    d["config"].pop("output_dir")
    return d


def test_length_rule_accuracy_matches_independent_count(tmp_path: Path):
    cfg = RunConfig(backend="fake", model="length", tasks=("xcopa", "xwinograd"), languages=("et", "zh", "fr"),
                    limit=40, output_dir=str(tmp_path))
    outcome = execute(plan_run(cfg), FakeBackend(BackendConfig(model="length")), show_progress=False,
                      environment=fixed_env)
    r = outcome.result
    assert list(r.tasks["xcopa"].languages) == ["et", "zh"]  # fr: not an XCOPA language, skipped for xcopa
    assert list(r.tasks["xwinograd"].languages) == ["zh", "fr"]  # et: skipped for xwinograd
    assert r.tasks["xwinograd"].languages["zh"].n == 16  # only 16 zh rows exist
    for task, lang in [("xcopa", "et"), ("xcopa", "zh"), ("xwinograd", "fr"), ("xwinograd", "zh")]:
        tset = task_templates(get_task(task))
        examples = load_examples(task, lang, limit=40).examples
        correct = 0
        for ex in examples:
            lengths = [len(s) for s in verbalize(ex, tset, 0).statements]
            correct += int(lengths.index(max(lengths)) == ex.gold)
        assert r.tasks[task].languages[lang].accuracy == correct / len(examples)
    fr, zh = r.tasks["xwinograd"].languages["fr"].accuracy, r.tasks["xwinograd"].languages["zh"].accuracy
    assert r.tasks["xwinograd"].mean_accuracy == pytest.approx((fr + zh) / 2)
    lines = outcome.samples_path.read_text(encoding="utf-8").splitlines()
    assert len(lines) == 40 + 40 + 40 + 16
    first = json.loads(lines[0])
    assert first["example_id"] == "xcopa/et/test/0"
    assert first["template_id"].startswith("cause-")
    assert first["requests"][0].startswith('The cause of "Ese oli mullikilesse mässitud."') or \
        first["requests"][0].startswith('"Ese oli mullikilesse mässitud."')
    assert first["scores"] == [float(len(s)) for s in first["requests"]]
    saved = json.loads(outcome.result_path.read_text(encoding="utf-8"))
    assert saved["schema_version"] == "1.4"
    assert saved["tasks"]["xcopa"]["prompt"] == "statements"
    assert saved["tasks"]["xcopa"]["languages"]["et"]["acc_norm"] is None  # statements have no acc_norm
    assert saved["tasks"]["xcopa"]["languages"]["et"]["data_sha256"]
    assert saved["config"]["identity"]["templates"]["xcopa"] == r.tasks["xcopa"].templates["sha256"]


class InterruptAfter(FakeBackend):
    def __init__(self, calls: int) -> None:
        super().__init__(BackendConfig(model="random"))
        self.limit_calls = calls

    def score(self, requests):  # type: ignore[no-untyped-def]
        if self.calls >= self.limit_calls:
            raise KeyboardInterrupt
        return super().score(requests)


def test_resume_after_interrupt_scores_only_missing_and_gives_same_result(tmp_path: Path):
    cfg = RunConfig(backend="fake", model="random", tasks=("xcopa", "xnli"), languages=("tr", "sw"), limit=25,
                    output_dir=str(tmp_path / "a"))
    plan = plan_run(cfg)
    reference = execute(plan, FakeBackend(BackendConfig(model="random")), show_progress=False,
                        environment=fixed_env, chunk_requests=10)

    plan_b = plan_run(replace(cfg, output_dir=str(tmp_path / "b")))
    with pytest.raises(KeyboardInterrupt):
        execute(plan_b, InterruptAfter(calls=3), show_progress=False, environment=fixed_env, chunk_requests=10)
    samples = tmp_path / "b" / reference.result_path.parent.name / "samples.jsonl"
    kept = samples.read_text(encoding="utf-8").splitlines()
    assert 0 < len(kept) < 100
    assert not (samples.parent / "result.json").exists()

    resumed_backend = FakeBackend(BackendConfig(model="random"))
    resumed = execute(plan_b, resumed_backend, show_progress=False, environment=fixed_env, chunk_requests=10)
    assert resumed.resumed == len(kept) and resumed.scored_now == 100 - len(kept)
    assert comparable(resumed.result_path) == comparable(reference.result_path)
    assert sorted(samples.read_text(encoding="utf-8").splitlines()) == \
        sorted(reference.samples_path.read_text(encoding="utf-8").splitlines())

    again = FakeBackend(BackendConfig(model="random"))
    done = execute(plan_b, again, show_progress=False, environment=fixed_env)
    assert again.calls == 0 and done.scored_now == 0  # a finished run rescoring nothing


def test_torn_last_line_is_dropped_and_rescored(tmp_path: Path):
    cfg = RunConfig(backend="fake", tasks=("xstorycloze",), languages=("eu",), limit=12, output_dir=str(tmp_path))
    first = execute(plan_run(cfg), FakeBackend(BackendConfig()), show_progress=False, environment=fixed_env)
    lines = first.samples_path.read_bytes().splitlines(keepends=True)
    first.samples_path.write_bytes(b"".join(lines[:5]) + lines[5][:37])  # as if killed mid-write
    second = execute(plan_run(cfg), FakeBackend(BackendConfig()), show_progress=False, environment=fixed_env)
    assert (second.resumed, second.scored_now) == (5, 7)
    assert comparable(second.result_path) == comparable(first.result_path)


def test_duplicate_sample_lines_are_compacted_on_resume(tmp_path: Path):
    cfg = RunConfig(backend="fake", tasks=("xcopa",), languages=("it",), limit=10, output_dir=str(tmp_path))
    first = execute(plan_run(cfg), FakeBackend(BackendConfig()), show_progress=False, environment=fixed_env)
    lines = first.samples_path.read_text(encoding="utf-8").splitlines(keepends=True)
    first.samples_path.write_text("".join(lines + lines[2:6]), encoding="utf-8")  # as two unlocked writers left it
    again = FakeBackend(BackendConfig())
    second = execute(plan_run(cfg), again, show_progress=False, environment=fixed_env)
    assert again.calls == 0 and (second.resumed, second.scored_now) == (10, 0)
    assert first.samples_path.read_text(encoding="utf-8").splitlines(keepends=True) == lines
    assert comparable(second.result_path) == comparable(first.result_path)
    # the result file gets the same permissions as any file the user creates (not mkstemp's 0600)
    assert stat.S_IMODE(second.result_path.stat().st_mode) == stat.S_IMODE(second.samples_path.stat().st_mode)


def test_kill_9_then_resume_via_cli(tmp_path: Path):
    out = tmp_path / "results"
    cmd = [sys.executable, "-m", "harness.cli", "run", "--backend", "fake", "--model", "slow", "--tasks", "xcopa",
           "--langs", "et", "--batch-size", "4", "--output", str(out), "--quiet"]
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 60
    samples: list[Path] = []
    while time.time() < deadline:
        samples = list(out.glob("*/samples.jsonl"))
        if samples and samples[0].stat().st_size > 0:
            break
        time.sleep(0.05)
    # a second writer on the same run directory is refused while the first holds it
    clash = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=120)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert samples, "the run never wrote a sample"
    assert clash.returncode == 2, clash.stderr
    message = clash.stderr.strip()
    assert "\n" not in message and f"another bench run (pid {proc.pid}) is writing to" in message
    assert str(samples[0].parent) in message
    kept = len(samples[0].read_text(encoding="utf-8").splitlines())
    assert 0 < kept < 500
    assert not (samples[0].parent / "result.json").exists()
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert f"{500 - kept} examples now, {kept} resumed" in done.stdout
    result = read_result(samples[0].parent / "result.json")
    assert result.tasks["xcopa"].languages["et"].n == 500


def test_loglikelihood_path_records_requests_and_acc_norm(tmp_path: Path):
    """A log-likelihood backend gets lm-eval prompts; samples keep (context, continuation); acc_norm as lm-eval."""
    from harness.prompts.lm_eval_prompts import LMEvalRequestBuilder

    cfg = RunConfig(backend="fake", prompt="lm-eval", tasks=("xcopa", "xwinograd"), languages=("et", "en"),
                    limit=10, output_dir=str(tmp_path))
    backend = FakeBackend(BackendConfig(prompt="lm-eval"))
    outcome = execute(plan_run(cfg), backend, show_progress=False, environment=fixed_env)
    r = outcome.result
    assert r.tasks["xcopa"].prompt == LMEvalRequestBuilder.version
    builder = LMEvalRequestBuilder()
    rows = [json.loads(x) for x in outcome.samples_path.read_text(encoding="utf-8").splitlines()]
    for row in rows:
        es = load_examples(row["task"], row["language"], limit=10)
        example = es.examples[row["index"]]
        _, requests = builder.build(example)
        assert row["requests"] == [[q.context, q.continuation] for q in requests]
        norm = [s / len(q.choice or q.continuation) for s, q in zip(row["scores"], requests, strict=True)]
        assert row["prediction_norm"] == norm.index(max(norm))
        assert row["prediction"] == row["scores"].index(max(row["scores"]))
    et = r.tasks["xcopa"].languages["et"]
    expected = sum(row["prediction_norm"] == row["gold"] for row in rows if row["task"] == "xcopa") / 10
    assert et.acc_norm == pytest.approx(expected)
    assert r.tasks["xwinograd"].mean_acc_norm is not None


class _DeviceBackend(FakeBackend):
    """The fake backend as if it ran on `device` in `dtype`, with the hf backend's `numerics`."""

    def __init__(self, device: str, dtype: str = "bfloat16", **numerics: bool) -> None:
        super().__init__(BackendConfig(model="length"))
        self._device, self._dtype, self._numerics = device, dtype, numerics

    def info(self) -> ModelInfo:
        return replace(super().info(), device=self._device, dtype=self._dtype)

    @property
    def numerics(self) -> dict[str, bool]:
        return dict(self._numerics)


def _run_id(tmp_path: Path, backend: FakeBackend) -> str:
    cfg = RunConfig(backend="fake", model="length", tasks=("xcopa",), languages=("et",), limit=3,
                    output_dir=str(tmp_path))
    return execute(plan_run(cfg), backend, show_progress=False, environment=fixed_env).result.run_id


def test_run_id_separates_cpu_autocast_from_cuda_bf16(tmp_path: Path):
    cpu = _run_id(tmp_path, _DeviceBackend("cpu (Test CPU, 2 threads)", autocast=True, packing=True))
    cuda = _run_id(tmp_path, _DeviceBackend("cuda:0 (NVIDIA T4)", autocast=False, packing=True))
    assert cpu != cuda
    assert _run_id(tmp_path, _DeviceBackend("cuda:1 (NVIDIA H100 80GB HBM3)", autocast=False, packing=True)) == cuda
    unpacked = _run_id(tmp_path, _DeviceBackend("cpu (Test CPU, 2 threads)", autocast=True, packing=False))
    assert unpacked not in (cpu, cuda)


def test_cpu_run_identity_keeps_its_legacy_fields():
    """Run ids of CPU runs (packing on or not applicable) did not change: no extra identity field."""
    from harness.runner import run_identity

    plan = plan_run(RunConfig(backend="fake", tasks=("xcopa",), languages=("et",), limit=3))
    legacy = {"schema_version", "backend", "model", "revision", "adapter", "dtype", "max_length", "seed", "limit",
              "xcopa_question", "prompt", "chat_template", "add_bos", "templates", "data"}
    model = {"backend": "fake", "model": "m", "revision": None, "adapter": None, "dtype": "bfloat16",
             "max_length": None, "device": "cpu (Test CPU, 2 threads)"}
    assert set(run_identity(plan, model, "statements")) == legacy
    assert set(run_identity(plan, model, "statements", {"autocast": True, "packing": True})) == legacy
    cuda = run_identity(plan, {**model, "device": "cuda:0 (NVIDIA H100)"}, "statements", {"autocast": False})
    assert cuda["numerics"] == {"device": "cuda", "autocast": False}


@pytest.mark.parametrize("where", ["file", "under-file"])
def test_output_that_is_a_file_is_a_usage_error_before_loading(tmp_path: Path, where: str):
    from harness.errors import UsageError

    existing = tmp_path / "results.txt"
    existing.write_text("not a directory\n", encoding="utf-8")
    output = existing if where == "file" else existing / "sub"
    with pytest.raises(UsageError) as err:
        plan_run(RunConfig(backend="fake", tasks=("xcopa",), languages=("et",), limit=3, output_dir=str(output)))
    message = str(err.value)
    assert message.startswith("--output") and str(existing) in message and "\n" not in message
