"""The GPU proof's logic on CPU: `harness.results.compare` on real `bench run` outputs (identical runs, a
differing pair, a subset), the efficiency and training record checks on small records, and
``benchmarks/gpu_check.py`` itself: its plan is accepted by the real CLI, its rows and exit codes, and the one
line it prints without CUDA."""

from __future__ import annotations

import importlib.util
import json
import math
import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import asdict, replace
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from click.testing import CliRunner

from harness.cli import main
from harness.core import Sample
from harness.efficiency.batch_search import OutOfMemory, linear_guess, search_max_batch
from harness.errors import DataError
from harness.results import compare as cmp

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "benchmarks" / "gpu_check.py"
GB = 2**30


def bench(*args: str) -> None:
    res = CliRunner().invoke(main, list(args), catch_exceptions=False)
    assert res.exit_code == 0, res.output


def _samples_json(run_root: Path) -> dict[str, dict[str, Any]]:
    """The samples file read with plain json: the expected figures are computed from this, not from compare."""
    (file,) = run_root.glob("*/samples.jsonl")
    return {d["example_id"]: d for d in map(json.loads, file.read_text(encoding="utf-8").splitlines())}


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Real CLI runs on CPU: smollm2-135m fp32 twice and bf16 once (4 XCOPA examples), and fake backends whose
    scores differ in a way the test recomputes from the samples files."""
    root = tmp_path_factory.mktemp("runs")
    out = {name: root / name for name in ("fp32-a", "fp32-b", "bf16", "random", "length", "length-small")}
    hf = ("run", "--backend", "hf", "--model", "smollm2-135m", "--tasks", "xcopa", "--langs", "et", "--limit", "4",
          "--device", "cpu", "--threads", "1", "--quiet")
    bench(*hf, "--dtype", "fp32", "--output", str(out["fp32-a"]))
    bench(*hf, "--dtype", "fp32", "--output", str(out["fp32-b"]))
    bench(*hf, "--dtype", "bf16", "--output", str(out["bf16"]))
    fake = ("run", "--backend", "fake", "--tasks", "xcopa,xnli", "--langs", "tr,sw", "--quiet")
    bench(*fake, "--model", "random", "--limit", "6", "--output", str(out["random"]))
    bench(*fake, "--model", "length", "--limit", "6", "--output", str(out["length"]))
    bench(*fake, "--model", "length", "--limit", "3", "--output", str(out["length-small"]))
    return out


# -- score comparisons on real runs ----------------------------------------------------------------------------


def test_identical_cpu_runs_pass_with_zero_difference(runs: dict[str, Path]) -> None:
    result = cmp.compare_runs(runs["fp32-a"], runs["fp32-b"], cmp.LOGLIK_FP32, reference_device="cpu",
                              candidate_device="cpu")
    assert (result.n_paired, result.max_abs_diff, result.agreement) == (4, 0.0, 1.0)
    assert result.agreement_norm == 1.0 and not result.missing and not result.extra
    assert result.verdict.passed and result.verdict.status == "PASS" and str(result.verdict) == "PASS"
    assert result.labels["candidate"]["backend"] == "hf" and result.labels["candidate"]["dtype"] == "float32"
    assert result.figures()["verdict"] == "PASS" and result.figures()["max_abs_diff"] == 0.0


def test_bf16_vs_fp32_figures_are_the_exact_differences(runs: dict[str, Path]) -> None:
    ref, cand = _samples_json(runs["fp32-a"]), _samples_json(runs["bf16"])
    per_sample = [max(abs(a - b) for a, b in zip(ref[i]["scores"], cand[i]["scores"], strict=True)) for i in ref]
    agree = sum(ref[i]["prediction"] == cand[i]["prediction"] for i in ref) / len(ref)
    result = cmp.compare_runs(runs["fp32-a"], runs["bf16"], cmp.LOGLIK_BF16, reference_device="cpu")
    assert result.max_abs_diff == max(per_sample) > 0  # bf16 rounding moves the log-likelihoods
    assert result.mean_abs_diff == pytest.approx(sum(per_sample) / len(per_sample), rel=1e-12)
    assert result.agreement == agree
    assert result.labels["candidate"]["dtype"] == "bfloat16"
    assert result.verdict.passed, result.verdict.reasons  # well inside the bf16 tolerance (about 1 nat)


def test_different_models_fail_with_the_exact_difference(runs: dict[str, Path]) -> None:
    ref, cand = _samples_json(runs["random"]), _samples_json(runs["length"])
    assert ref.keys() == cand.keys() and len(ref) == 2 * 6 + 2 * 6  # xcopa tr,sw + xnli tr,sw
    expected_max = max(abs(a - b) for i in ref for a, b in zip(ref[i]["scores"], cand[i]["scores"], strict=True))
    expected_agree = sum(ref[i]["prediction"] == cand[i]["prediction"] for i in ref) / len(ref)
    result = cmp.compare_runs(runs["random"], runs["length"], cmp.LOGLIK_FP32)
    assert result.max_abs_diff == expected_max
    assert result.agreement == expected_agree < 0.98
    assert result.verdict.status == "FAIL"
    assert any("over loglik-fp32 tolerance" in r for r in result.verdict.reasons)
    assert any(r.startswith(f"agreement {expected_agree:.4f} < 0.98") for r in result.verdict.reasons)
    figures = result.figures()
    assert figures["over_tolerance"] == len(ref) and figures["verdict"] == "FAIL" and len(figures["worst"]) == 5
    assert f"max abs Δ {expected_max:.3g}" in result.summary()


def test_tolerance_boundary_on_the_worst_real_sample(runs: dict[str, Path]) -> None:
    ref, cand = _samples_json(runs["random"]), _samples_json(runs["length"])
    per_sample = {i: max(abs(a - b) for a, b in zip(ref[i]["scores"], cand[i]["scores"], strict=True)) for i in ref}
    worst = max(per_sample.values())
    strict = cmp.ScoreTolerance("strict", atol=worst * 0.999, min_agreement=0.0)
    loose = cmp.ScoreTolerance("loose", atol=worst * 1.001, min_agreement=0.0)
    failing = cmp.compare_runs(runs["random"], runs["length"], strict)
    over = sorted(i for i, d in per_sample.items() if d > strict.atol)
    assert sorted(d.example_id for d in failing.over_tolerance) == over
    assert failing.verdict.reasons == (f"{len(over)} of 24 sample(s) over strict tolerance (worst "
                                       f"{failing.worst(1)[0].example_id}: abs Δ {worst:.4g}, "
                                       f"{worst / strict.atol:.3g}x the allowed)",)
    assert cmp.compare_runs(runs["random"], runs["length"], loose).verdict.passed


def test_subset_pairs_only_the_reference_examples(runs: dict[str, Path]) -> None:
    small, big = runs["length-small"], runs["length"]
    subset = cmp.compare_runs(small, big, cmp.LOGLIK_FP32, ids="subset")
    assert (subset.n_paired, len(subset.extra), subset.max_abs_diff, subset.agreement) == (12, 12, 0.0, 1.0)
    assert subset.verdict.passed
    same = cmp.compare_runs(small, big, cmp.LOGLIK_FP32, ids="same")
    assert same.verdict.reasons == ("12 candidate example(s) not in the reference (e.g. "
                                    f"{same.extra[0]})",)
    reverse = cmp.compare_runs(big, small, cmp.LOGLIK_FP32, ids="subset")  # the candidate lacks 12
    assert len(reverse.missing) == 12 and not reverse.verdict.passed


def test_device_expectation_catches_a_cpu_run(runs: dict[str, Path]) -> None:
    result = cmp.compare_runs(runs["fp32-a"], runs["fp32-b"], cmp.LOGLIK_FP32, candidate_device="cuda")
    assert result.max_abs_diff == 0.0 and not result.verdict.passed
    (reason,) = result.verdict.reasons
    assert reason.startswith("candidate ran on cpu (") and reason.endswith(", not cuda")


def test_check_run_counts_requests(runs: dict[str, Path]) -> None:
    ok = cmp.check_run(runs["length"], min_requests=12 * 2 + 12 * 3)  # 2 choices (XCOPA), 3 labels (XNLI)
    assert (ok.examples, ok.planned, ok.requests, ok.non_finite) == (24, 24, 60, 0) and ok.verdict.passed
    short = cmp.check_run(runs["length"], min_requests=61)
    assert short.verdict.reasons == ("60 requests < 61",)


def test_read_samples_ignores_a_torn_line_without_touching_the_file(runs: dict[str, Path], tmp_path: Path) -> None:
    (src,) = runs["length-small"].glob("*/samples.jsonl")
    torn = tmp_path / "samples.jsonl"
    text = src.read_text(encoding="utf-8") + '{"example_id": "half'
    torn.write_text(text, encoding="utf-8")
    assert len(cmp.read_samples(torn)) == 12
    assert torn.read_text(encoding="utf-8") == text  # read-only: SampleStore would truncate it
    with pytest.raises(DataError, match=r"no samples\.jsonl"):
        cmp.read_samples(tmp_path / "nowhere")
    with pytest.raises(DataError, match="2 run folders"):
        cmp.read_samples(_two_runs(runs, tmp_path))


def _two_runs(runs: dict[str, Path], tmp_path: Path) -> Path:
    both = tmp_path / "both"
    for name in ("random", "length"):
        (run_dir,) = runs[name].glob("*/")
        target = both / run_dir.name
        target.mkdir(parents=True)
        (target / "samples.jsonl").write_bytes((run_dir / "samples.jsonl").read_bytes())
    return both


# -- tolerance arithmetic on handmade samples --------------------------------------------------------------------


def _sample(example_id: str, scores: tuple[float, ...], gold: int = 0) -> Sample:
    return Sample(example_id=example_id, task="xcopa", language="et", split="test", index=0, template_id=None,
                  requests=tuple("s" for _ in scores), scores=scores, prediction=max(range(len(scores)),
                                                                                     key=lambda i: scores[i]),
                  gold=gold)


def test_tolerance_is_absolute_plus_relative() -> None:
    tol = cmp.ScoreTolerance("t", atol=0.5, rtol=0.1, min_agreement=0.0)
    ref = {"a": _sample("a", (-10.0, -12.0))}
    assert tol.allowed(-10.0, -11.5) == 0.5 + 0.1 * 11.5
    inside = cmp.compare_samples(ref, {"a": _sample("a", (-11.5, -12.0))}, tol)  # 1.5 <= 0.5 + 1.15
    outside = cmp.compare_samples(ref, {"a": _sample("a", (-11.7, -12.0))}, tol)  # 1.7 > 0.5 + 1.17
    assert inside.verdict.passed and inside.diffs[0].excess == pytest.approx(1.5 / 1.65)
    assert not outside.verdict.passed and outside.max_abs_diff == pytest.approx(1.7)


def test_agreement_threshold_and_non_finite_and_mismatched_examples() -> None:
    tol = cmp.ScoreTolerance("t", atol=1.0, min_agreement=0.75)
    ref = {k: _sample(k, (0.6, 0.4)) for k in "abcd"}
    one_flip = {**ref, "d": _sample("d", (0.4, 0.6))}  # |Δ| 0.2 <= 1, prediction flips: 3/4 agree
    assert cmp.compare_samples(ref, one_flip, tol).verdict.passed
    two_flips = {**one_flip, "c": _sample("c", (0.4, 0.6))}
    assert cmp.compare_samples(ref, two_flips, tol).verdict.reasons == ("agreement 0.5000 < 0.75",)
    nan = cmp.compare_samples(ref, {**ref, "a": _sample("a", (math.nan, 0.4))}, tol)
    assert math.isnan(nan.max_abs_diff) and math.isinf(nan.diffs[0].excess) and not nan.verdict.passed
    assert nan.figures()["max_abs_diff"] is None  # JSON-safe
    other = cmp.compare_samples(ref, {**ref, "b": _sample("b", (0.6, 0.4), gold=1),
                                      "c": _sample("c", (0.6, 0.4, 0.0))}, tol)
    assert other.mismatched == ("b", "c") and other.n_paired == 2 and not other.verdict.passed
    assert cmp.compare_samples({}, {}, tol).verdict.reasons == ("no example scored by both runs",)


def test_presets_are_ordered_by_strictness() -> None:
    assert cmp.LOGLIK_FP32.atol < cmp.LOGLIK_BF16.atol and cmp.PTRUE_FP32.atol < cmp.PTRUE_BF16.atol
    assert cmp.LOGLIK_FP32.min_agreement > cmp.LOGLIK_BF16.min_agreement
    # a broken path agrees at chance level on two choices: every preset fails it
    assert all(t.min_agreement > 0.5 for t in (cmp.LOGLIK_FP32, cmp.LOGLIK_BF16, cmp.PTRUE_FP32, cmp.PTRUE_BF16))


# -- efficiency records --------------------------------------------------------------------------------------------


def efficiency_record(capacity_gb: float = 4.0, fixed_gb: float = 1.0, per_row_mb: float = 10.0, cap: int = 65536,
                      device: str = "cuda:0 (NVIDIA H100 80GB HBM3)") -> dict[str, Any]:
    """A record shaped like `harness.efficiency.measure`'s, with probes from the real search against a linear
    fake allocator (peak = fixed + n x per row; over capacity is out of memory)."""
    limit = capacity_gb * GB

    def try_batch(n: int) -> float:
        peak = fixed_gb * GB + n * per_row_mb * 2**20
        if peak > limit:
            raise OutOfMemory(f"CUDA out of memory at batch {n}")
        return peak

    found = search_max_batch(try_batch, cap=cap, next_probe=linear_guess(limit))
    probes = [{**asdict(p), "torch_allocated": p.peak_bytes, "torch_reserved": p.peak_bytes, "rss": 3e9}
              for p in found.probes]
    return {"model": {"model": "gemma3-270m", "device": device}, "kind": "causal",
            "max_batch": {"max_batch": found.max_batch, "max_pow2": found.max_pow2, "stop_reason": found.stop_reason,
                          "cap": found.cap, "limit_bytes": limit, "probes": probes},
            "throughput": [{"batch_size": 1, "label": "matched", "examples_per_s": 10.0},
                           {"batch_size": found.max_batch, "label": "max", "examples_per_s": 50.0}],
            "estimate": {"label": "estimated", "max_batch": {"max_batch": 300, "max_pow2": 256}},
            "device": {"measured_on": device}}


def test_efficiency_record_from_a_real_search_passes() -> None:
    record = efficiency_record()
    exact = math.floor((4 - 1) * 1024 / 10)  # 307 rows of 10 MiB above 1 GiB in 4 GiB
    check = cmp.check_efficiency({"efficiency": record})  # a result.json's dict
    assert check.verdict.passed, check.verdict.reasons
    f = check.figures()
    assert (f["max_batch"], f["stop_reason"], f["estimated_max_batch"]) == (exact, "oom", 300)
    assert f["estimate_over_measured"] == round(300 / exact, 3) and f["examples_per_s_at_max"] == 50.0
    peaks = [v for _, v in f["peaks_gb"]]
    assert peaks == sorted(peaks) and peaks[0] < peaks[-1]
    assert "max batch 307 (oom" in check.summary()


def test_efficiency_failures_are_each_named() -> None:
    capped = cmp.check_efficiency(efficiency_record(cap=64))  # everything fits up to the cap
    assert any("stopped by cap (cap 64), not by running out of memory" in r for r in capped.verdict.reasons)

    record = efficiency_record()
    exact = record["max_batch"]["max_batch"]
    record["max_batch"]["probes"] = [p for p in record["max_batch"]["probes"] if p["batch_size"] != exact + 1]
    assert any("not bracketed" in r for r in cmp.check_efficiency(record).verdict.reasons)

    record = efficiency_record()
    fitted = [p for p in record["max_batch"]["probes"] if p["fits"]]
    fitted[-1]["torch_allocated"] = fitted[0]["torch_allocated"] * 0.5  # the largest batch used less: not real
    assert any("probe peak falls" in r for r in cmp.check_efficiency(record).verdict.reasons)

    record = efficiency_record()
    for p in record["max_batch"]["probes"]:
        p["torch_allocated"] = p["peak_bytes"] = p["rss"] = None
    assert any("probe peaks not recorded" in r for r in cmp.check_efficiency(record).verdict.reasons)

    record = efficiency_record()
    record["max_batch"]["probes"].append({"batch_size": 10_000, "fits": True, "torch_allocated": 5e12})
    assert any("fitted after" in r for r in cmp.check_efficiency(record).verdict.reasons)

    assert any("no estimate" in r for r in cmp.check_efficiency({**efficiency_record(), "estimate": None})
               .verdict.reasons)
    on_cpu = cmp.check_efficiency(efficiency_record(device="cpu (AMD EPYC, 2 threads)"))
    assert on_cpu.verdict.reasons == ("gemma3-270m: measured on cpu (AMD EPYC, 2 threads), not cuda",)
    assert cmp.check_efficiency(efficiency_record(device="cpu (x)"), expect_device=None).verdict.passed
    assert any("no throughput" in r for r in cmp.check_efficiency({**efficiency_record(), "throughput": []})
               .verdict.reasons)
    assert "no measured max batch" in str(cmp.check_efficiency({**efficiency_record(), "max_batch": None}).verdict)


def test_cpu_rss_peaks_allow_small_noise() -> None:
    record = efficiency_record()
    fitted = sorted((p for p in record["max_batch"]["probes"] if p["fits"]), key=lambda p: p["batch_size"])
    for p in record["max_batch"]["probes"]:
        p["torch_allocated"] = None  # CPU: the peak the probe measured (RSS)
    fitted[-1]["peak_bytes"] = fitted[-2]["peak_bytes"] * 0.995  # within the 1% slack
    assert cmp.check_efficiency(record, expect_device=None).verdict.passed
    assert not cmp.check_efficiency(record, expect_device=None, peak_rel_slack=0.001).verdict.passed


def test_check_efficiency_dir_reads_result_files(tmp_path: Path) -> None:
    for name in ("efficiency-a", "efficiency-b"):
        (tmp_path / name).mkdir()
        (tmp_path / name / "result.json").write_text(json.dumps({"efficiency": efficiency_record()}))
    checks = cmp.check_efficiency_dir(tmp_path)
    assert len(checks) == 2 and all(c.verdict.passed for c in checks)


# -- training records --------------------------------------------------------------------------------------------


def training_info(**changes: Any) -> dict[str, Any]:
    info: dict[str, Any] = {
        "finished": True, "steps": 20, "seconds": 12.5, "device": "cuda:0 (NVIDIA H100 80GB HBM3)",
        "dtype": "bfloat16", "config": {"method": "lora"},
        "best": {"step": 20, "accuracy": 0.61, "loss": 0.66},
        "evaluations": [{"step": 10, "loss": 0.69, "accuracy": 0.52}, {"step": 20, "loss": 0.66, "accuracy": 0.61}]}
    info.update(changes)
    return info


def test_training_check(tmp_path: Path) -> None:
    (tmp_path / "training.json").write_text(json.dumps(training_info()))
    ok = cmp.check_training(tmp_path, steps=20)
    assert ok.verdict.passed and ok.figures()["best_accuracy"] == 0.61 and ok.figures()["method"] == "lora"
    assert "20 steps in 12.5s on cuda:0" in ok.summary()
    assert cmp.check_training(tmp_path, steps=30).verdict.reasons == ("20 steps, not 30",)
    bad = cmp.TrainingCheck(training_info(device="cpu (x)", finished=False,
                                          evaluations=[{"step": 10, "loss": math.nan, "accuracy": 0.5}]), 20)
    assert bad.verdict.reasons == ("training.json does not say finished", "trained on cpu (x), not cuda",
                                   "non-finite held-out loss or accuracy at step(s) [10]")
    assert cmp.TrainingCheck(training_info(evaluations=[]), 20).verdict.reasons == ("no held-out evaluation",)
    with pytest.raises(DataError, match="cannot read"):
        cmp.check_training(tmp_path / "missing", steps=20)


# -- benchmarks/gpu_check.py -------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def gpu_check() -> Iterator[ModuleType]:
    spec = importlib.util.spec_from_file_location("gpu_check", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses resolve their module by name
    spec.loader.exec_module(module)
    yield module
    sys.modules.pop(spec.name, None)


def test_without_cuda_one_line_and_exit_2(tmp_path: Path) -> None:
    env = dict(os.environ, CUDA_VISIBLE_DEVICES="")
    proc = subprocess.run([sys.executable, str(SCRIPT), "--out", str(tmp_path / "out")], capture_output=True,
                          text=True, env=env, cwd=tmp_path, timeout=120, check=False)
    lines = (proc.stdout + proc.stderr).splitlines()
    assert proc.returncode == 2
    assert len(lines) == 1, lines
    assert lines[0].startswith("gpu_check: no CUDA device (torch ") and lines[0].endswith(
        " sees none); run it on a GPU machine")
    assert not (tmp_path / "out").exists()


def test_plan_is_accepted_by_the_real_cli(gpu_check: ModuleType, tmp_path: Path) -> None:
    for size in (gpu_check.FULL, gpu_check.QUICK):
        steps = gpu_check.plan_steps(tmp_path, size, cpu_threads=2)
        assert set(steps) == {s for c in gpu_check.CHECKS for s in c.steps}
        for step in steps.values():
            command = main.commands[step.args[0]]
            ctx = command.make_context(step.args[0], list(step.args[1:]))  # raises on an unknown option
            assert ctx.params["output"] == str(tmp_path / "runs" / step.name)
            if step.args[0] in ("run", "efficiency", "train"):
                assert ctx.params["device"] == ("cpu" if step.device == "cpu" else
                                                "auto" if "vllm" in step.args else "cuda")
    steps = gpu_check.plan_steps(tmp_path, gpu_check.FULL)
    vllm_args = steps["vllm-bf16"].args  # the prompt-logprob stress run bounds its engine step and memory share
    assert vllm_args[vllm_args.index("--max-num-batched-tokens") + 1] == "2048"
    assert vllm_args[vllm_args.index("--gpu-memory-utilization") + 1] == "0.5"
    # the hf CPU reference is a subset of the CUDA fp32 run, which is what vLLM is compared with
    small, big = (int(steps[n].args[steps[n].args.index("--limit") + 1]) for n in ("hf-cpu-fp32", "hf-cuda-fp32"))
    assert small < big and steps["hf-cuda-fp32"].args.count("--tasks") == 1


def test_only_selects_checks(gpu_check: ModuleType) -> None:
    assert [c.name for c in gpu_check.select_checks("train-lora,hf-cuda-fp32")] == ["hf-cuda-fp32", "train-lora"]
    assert gpu_check.select_checks(None) == gpu_check.CHECKS
    with pytest.raises(ValueError, match="unknown check"):
        gpu_check.select_checks("hf-cuda,train-lora")


def test_rows_and_exit_codes(gpu_check: ModuleType, runs: dict[str, Path], tmp_path: Path) -> None:
    """Wiring from step outcomes to rows, on CPU outputs placed where the GPU steps would write."""
    steps = gpu_check.plan_steps(tmp_path, gpu_check.QUICK)
    for name, src in (("hf-cpu-fp32", "fp32-a"), ("hf-cuda-fp32", "fp32-b")):
        (run_dir,) = runs[src].glob("*/")
        target = tmp_path / "runs" / name / run_dir.name
        target.mkdir(parents=True)
        for f in run_dir.iterdir():
            (target / f.name).write_bytes(f.read_bytes())
    ok = {n: gpu_check.StepRun(n, ["bench"], returncode=0, seconds=1.0) for n in steps}
    check = next(c for c in gpu_check.CHECKS if c.name == "hf-cuda-fp32")
    row = gpu_check.evaluate(check, ok, steps, tmp_path, gpu_check.QUICK)
    # same scores, but the "CUDA" run recorded a CPU device: the check must not pass
    assert row.status == "FAIL" and row.figures["max_abs_diff"] == 0.0
    assert row.reasons == [r for r in row.reasons if "not cuda" in r] and len(row.reasons) == 1
    assert row.seconds == 1.0  # the CPU reference runs in the background: not counted

    vllm = next(c for c in gpu_check.CHECKS if c.name == "vllm-vs-hf")
    skipped = {**ok, "vllm-bf16": gpu_check.StepRun("vllm-bf16", [], skipped=gpu_check.VLLM_HINT)}
    skip_row = gpu_check.evaluate(vllm, skipped, steps, tmp_path, gpu_check.QUICK)
    assert (skip_row.status, skip_row.reasons) == ("SKIP", [f"vllm-bf16: {gpu_check.VLLM_HINT}"])
    failed = {**ok, "vllm-bf16": gpu_check.StepRun("vllm-bf16", [], returncode=4, error_line="error: boom")}
    fail_row = gpu_check.evaluate(vllm, failed, steps, tmp_path, gpu_check.QUICK)
    assert (fail_row.status, fail_row.reasons) == ("FAIL", ["vllm-bf16: exit 4: error: boom"])
    timed_out = {**ok, "vllm-bf16": gpu_check.StepRun("vllm-bf16", [], returncode=-9, timed_out=True)}
    assert "timed out after 360s" in gpu_check.evaluate(vllm, timed_out, steps, tmp_path, gpu_check.QUICK).reasons[0]

    passing = replace(row, status="PASS", reasons=[])
    assert gpu_check.exit_code([passing], allow_skip=False) == 0
    assert gpu_check.exit_code([passing, skip_row], allow_skip=False) == 1
    assert gpu_check.exit_code([passing, skip_row], allow_skip=True) == 0
    assert gpu_check.exit_code([fail_row, skip_row], allow_skip=True) == 1
    text = gpu_check.table([passing, skip_row, fail_row])
    assert "| vllm-vs-hf   | SKIP" in text and f"- vllm-vs-hf SKIP: vllm-bf16: {gpu_check.VLLM_HINT}" in text
    assert text.splitlines()[0].startswith("| check ")


def test_missing_module_skips(gpu_check: ModuleType, tmp_path: Path) -> None:
    step = gpu_check.Step("x", ("run",), 10, needs=(("no_such_module_xyz", "install it"),))
    assert gpu_check.missing_module(step) == "install it"
    result = gpu_check.run_step(step, tmp_path, lambda _m: None)
    assert result.skipped == "install it" and result.returncode is None and not result.ok



def test_run_step_runs_the_real_cli_logs_and_times_out(gpu_check: ModuleType, tmp_path: Path) -> None:
    fake = ("run", "--backend", "fake", "--tasks", "xcopa", "--langs", "et", "--limit", "2", "--quiet")
    ok = gpu_check.run_step(gpu_check.Step("ok", (*fake, "--output", str(tmp_path / "runs" / "ok")), 120),
                            tmp_path, lambda _m: None)
    assert ok.ok and ok.seconds > 0 and ok.argv[1:3] == ["-m", "harness.cli"]
    assert len(cmp.read_samples(tmp_path / "runs" / "ok")) == 2
    log = Path(ok.log).read_text(encoding="utf-8")
    assert log.startswith("$ bench run --backend fake") and "results:" in log
    bad = gpu_check.run_step(gpu_check.Step("bad", ("run", "--backend", "fake", "--tasks", "nope"), 120),
                             tmp_path, lambda _m: None)
    assert bad.returncode == 2 and bad.error_line.startswith("error: ") and "nope" in bad.error_line
    slow = gpu_check.run_step(gpu_check.Step("slow", (*fake, "--model", "slow", "--batch-size", "1", "--output",
                                                      str(tmp_path / "runs" / "slow")), 0.5),
                              tmp_path, lambda _m: None)
    assert slow.timed_out and not slow.ok and slow.returncode == -9


def test_main_runs_steps_prints_the_table_and_writes_json(gpu_check: ModuleType, tmp_path: Path,
                                                          monkeypatch: pytest.MonkeyPatch,
                                                          capsys: pytest.CaptureFixture[str]) -> None:
    """main() end to end with the device layer stubbed and the two hf steps replaced by fake-backend runs: the
    "CUDA" run records a CPU device, so the row fails, and that failure reaches the table, JSON and exit code."""
    real_plan = gpu_check.plan_steps

    def plan(out: Path, size: Any, **kw: Any) -> dict[str, Any]:
        steps = real_plan(out, size, **kw)
        for name in ("hf-cpu-fp32", "hf-cuda-fp32"):
            steps[name] = replace(steps[name], args=("run", "--backend", "fake", "--model", "length", "--tasks",
                                                     "xcopa", "--langs", "et", "--limit", "2", "--output",
                                                     str(out / "runs" / name), "--quiet"), timeout_s=120)
        return steps

    monkeypatch.setattr(gpu_check, "cuda_or_exit", lambda: type("FakeTorch", (), {"__version__": "0.0"}))
    monkeypatch.setattr(gpu_check, "machine_record", lambda _t: {"device": {"name": "Fake", "memory_gb": 1.0},
                                                                 "versions": {"vllm": None}})
    monkeypatch.setattr(gpu_check, "plan_steps", plan)
    code = gpu_check.main(["--out", str(tmp_path), "--only", "hf-cuda-fp32", "--quick"])
    out = capsys.readouterr().out
    assert code == 1
    assert "| hf-cuda-fp32 | FAIL" in out and "n=2, max abs Δ 0, agreement 1.000" in out
    assert "- hf-cuda-fp32 FAIL: candidate ran on cpu" in out and "exit 1" in out
    report = json.loads((tmp_path / "gpu_check.json").read_text(encoding="utf-8"))
    (row,) = report["checks"]
    assert (report["exit_code"], row["name"], row["status"]) == (1, "hf-cuda-fp32", "FAIL")
    assert row["figures"]["n_paired"] == 2 and [s["name"] for s in row["steps"]] == ["hf-cpu-fp32", "hf-cuda-fp32"]
    assert report["device"]["name"] == "Fake" and report["options"]["quick"] is True
    assert (tmp_path / "logs" / "hf-cuda-fp32.log").is_file()


def test_bench_compare_command(runs: dict[str, Path]) -> None:
    same = CliRunner().invoke(main, ["compare", str(runs["fp32-a"]), str(runs["fp32-b"])])
    assert same.exit_code == 0, same.output
    assert same.output.startswith("n=4, max abs Δ 0, agreement 1.000") and same.output.rstrip().endswith("PASS")
    assert "(loglik-fp32: abs Δ <= 0.05, agreement >= 0.98)" in same.output
    differ = CliRunner().invoke(main, ["compare", str(runs["random"]), str(runs["length"])])
    assert differ.exit_code == 1 and "FAIL: " in differ.output
    subset = CliRunner().invoke(main, ["compare", str(runs["length-small"]), str(runs["length"]), "--subset",
                                       "--tolerance", "p_true-fp32"])
    assert subset.exit_code == 0 and "12 extra" in subset.output
