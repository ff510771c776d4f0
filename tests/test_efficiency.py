"""`bench efficiency`: cost model, workload, estimates, memory-limited search on a real model, child processes,
resume, refusals, and the CLI end to end (real bundled models, short timings)."""

from __future__ import annotations

import json
import math
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
import torch
from click.testing import CliRunner

from harness.cli import main
from harness.efficiency.cost import model_cost
from harness.efficiency.estimate import estimate_record, memory_model, roofline
from harness.efficiency.loading import load_real
from harness.efficiency.measure import measure, search
from harness.efficiency.memory import MemoryTracker, reset_peak_rss, rss_bytes
from harness.efficiency.profiles import get_profile
from harness.efficiency.runner import efficiency_run_id, execute_efficiency, plan_efficiency
from harness.efficiency.spec import MeasureSpec
from harness.efficiency.timing import latency_stats, percentile
from harness.efficiency.workload import build_workload
from harness.errors import BenchError, UsageError
from harness.models.shipped_config import load_shipped_config
from harness.results.schema import EfficiencyRecord, read_result

QWEN05_LINEAR = 24 * (2 * 896 * 896 + 2 * 896 * 128 + 3 * 896 * 4864) + 151_936 * 896


# -- cost ----------------------------------------------------------------------------------------------------------

def test_cost_from_config_counts_every_linear_weight() -> None:
    cost = model_cost(load_shipped_config("qwen2-0.5b"), "causal")
    assert cost.linear_parameters == QWEN05_LINEAR == 493_961_216
    assert cost.head_parameters == 151_936 * 896  # tied to the embeddings, but applied at every position
    assert cost.parameters == 494_032_768  # unique weights (the tied head counted once)
    assert (cost.heads, cost.kv_heads, cost.head_dim, cost.gated_mlp) == (14, 2, 64, True)
    # 2 FLOPs per weight + attention over (T+1)/2 positions on average (causal)
    assert cost.flops_per_token(58) == 2 * QWEN05_LINEAR + 4 * 24 * 29.5 * 14 * 64


def test_cost_of_encoders_and_relative_attention() -> None:
    xlmr = model_cost(load_shipped_config("xlm-roberta-large"), "encoder")
    assert xlmr.linear_parameters == 24 * (4 * 1024 * 1024 + 2 * 1024 * 4096) + 1024 * 1024 + 1024 * 2
    assert xlmr.flops_per_token(61) == 2 * xlmr.linear_parameters + 4 * 24 * 61 * 16 * 64  # attends to all T
    deberta = model_cost(load_shipped_config("mdeberta-v3-base"), "encoder")
    assert deberta.relative_span == 256
    plain = 2 * deberta.linear_parameters + 4 * 12 * 40 * 12 * 64
    assert deberta.flops_per_token(40) == plain + 4 * 12 * 80 * 12 * 64  # c2p/p2c over 2 x min(span, T)
    gemma = model_cost(load_shipped_config("gemma-2-9b"), "causal")
    assert gemma.logit_softcap and gemma.sliding_window is None  # mixed local/global layers


# -- estimate ------------------------------------------------------------------------------------------------------

def test_memory_model_solves_for_the_exact_and_power_of_two_batch() -> None:
    cost = model_cost(load_shipped_config("qwen2-0.5b"), "causal")
    a100 = get_profile("a100")
    mm = memory_model(cost, a100, dtype="bfloat16", weight_dtype="bfloat16", attention="sdpa", probe_length=58)
    per_row = 1.10 * max(2 * 58 * 896 * 2 + 3 * 58 * 4864 * 2, 58 * 896 * 2 + 2 * 58 * 151_936 * 2)
    assert mm.per_row_bytes == pytest.approx(per_row)
    assert mm.fixed_bytes == 494_032_768 * 2 + (1 << 30)
    exact, pow2, reason = mm.max_batch(cap=65536)
    assert exact == math.floor((80 * 2**30 - mm.fixed_bytes) / per_row)
    assert mm.fits(exact) and not mm.fits(exact + 1)
    assert pow2 == 1 << (exact.bit_length() - 1) and reason == "oom"
    assert mm.max_batch(cap=100) == (100, 64, "cap")


def test_roofline_is_an_upper_bound_and_says_which_limit_binds() -> None:
    workload = _tiny_workload("statement")
    cost = model_cost(load_shipped_config("xlm-roberta-large"), "encoder")
    a100 = get_profile("a100")
    one = roofline(cost, a100, workload, dtype="bfloat16", weight_dtype="bfloat16", batch_size=1, label="matched")
    many = roofline(cost, a100, workload, dtype="bfloat16", weight_dtype="bfloat16", batch_size=64, label="max")
    assert one is not None and many is not None
    assert one.bound == "memory"  # batch 1 re-reads 1.1 GB of weights per row
    assert many.examples_per_s > 5 * one.examples_per_s  # one batch of 16 rows instead of 16 weight reads
    assert one.rows_per_s == pytest.approx(2 * one.examples_per_s)  # XCOPA: two statements per example
    rec = estimate_record(cost, a100, workload, dtype="bfloat16", weight_dtype="bfloat16", attention="sdpa",
                          probe_length=max(workload.lengths), cap=65536, batch_sizes=(1, 16))
    assert rec["label"] == "estimated"
    assert [p["label"] for p in rec["throughput"]] == ["matched", "matched", "max"]
    assert get_profile("t4").peak_for("bf16") is None
    assert roofline(cost, get_profile("t4"), workload, dtype="bfloat16", weight_dtype="bfloat16", batch_size=1,
                    label="x") is None


def test_latency_percentiles_match_numpy() -> None:
    import numpy as np

    values = [0.5, 0.1, 0.3, 0.9, 0.2, 0.7, 0.4]
    for q in (50, 90, 99):
        assert percentile(values, q) == pytest.approx(float(np.percentile(values, q)))
    stats = latency_stats(values)
    assert stats["stdev"] == pytest.approx(float(np.std(values, ddof=1)))
    assert (stats["min"], stats["max"]) == (0.1, 0.9)


# -- workload --------------------------------------------------------------------------------------------------------

def _tiny_workload(kind: str) -> Any:
    from transformers import AutoTokenizer

    from harness.models.materialise import resolve_model

    name = "minilm-l6" if kind == "statement" else "smollm2-135m"
    tok = AutoTokenizer.from_pretrained(resolve_model(name).path)
    return build_workload(["xcopa"], kind, tok, max_length=512, languages=["it"], limit=8)  # type: ignore[arg-type]


def test_workload_rows_are_the_real_requests() -> None:
    statements = _tiny_workload("statement")
    assert (statements.n_examples, statements.n_rows, statements.rows_per_example) == (8, 16, 2.0)
    assert statements.example_of_row[:4] == [0, 0, 1, 1]
    lm = _tiny_workload("loglikelihood")
    assert (lm.n_examples, lm.n_rows) == (8, 16)
    from transformers import AutoTokenizer

    from harness.models.materialise import resolve_model

    tok = AutoTokenizer.from_pretrained(resolve_model("smollm2-135m").path)
    from harness.prompts.lm_eval_prompts import LMEvalRequestBuilder
    from harness.tasks.examples import load_examples

    first = load_examples("xcopa", "it", limit=1).examples[0]
    request = LMEvalRequestBuilder().build(first)[1][0]
    context, continuation = request.context, request.continuation  # type: ignore[union-attr]
    whole = tok(context + continuation)["input_ids"]
    assert lm.rows[0] == tuple(whole[:-1])  # lm-eval's model input: (context + continuation)[:-1]
    assert lm.summary()["data_sha256"]["xcopa/it/test"]
    assert statements.fingerprint() != lm.fingerprint()
    batches = statements.batches(5)
    assert sorted(i for b in batches for i in b) == list(range(16))
    assert [len(b) for b in batches].count(5) == 3


# -- the memory-limited search on a real model -----------------------------------------------------------------------

@pytest.mark.slow
def test_memory_limit_stops_the_search_at_the_exact_boundary() -> None:
    """A real model in this process: the limit sits 60 MB above the warmed-up RSS; the search must stop on it
    with the last fitting batch under the limit and the next batch over it."""
    if not reset_peak_rss():
        pytest.skip("the kernel does not allow resetting the peak RSS (/proc/self/clear_refs)")
    spec = MeasureSpec(model="minilm-l6", weights="real", dtype="fp32", device="cpu", tasks=("xcopa",),
                       languages=("it",), limit=20, probe_forwards=3, warmup=0)
    tm = load_real(spec)
    workload = build_workload(spec.tasks, "statement", tm.tokenizer, max_length=tm.max_length,
                              languages=spec.languages, limit=spec.limit)
    tm.forward(tm.inputs([workload.longest]))  # the first forward allocates the runtime's lazy buffers
    limit = int((rss_bytes() or 0) + 60e6)
    tracker = MemoryTracker(torch.device("cpu"), limit)
    found, details = search(tm, workload, replace(spec, max_batch=4096), tracker, lambda _m: None)
    assert found.stop_reason == "oom" and found.max_batch >= 1
    fits = {p.batch_size: p for p in found.probes if p.fits}
    fails = {p.batch_size: p for p in found.probes if not p.fits}
    assert found.max_batch in fits and found.max_batch + 1 in fails
    assert fits[found.max_batch].peak_bytes is not None and fits[found.max_batch].peak_bytes <= limit
    assert "over --memory-limit" in (fails[found.max_batch + 1].error or "")
    assert found.max_pow2 == 1 << (found.max_batch.bit_length() - 1)
    assert all(d["rss"] <= limit for d in details)


# -- planning and refusals -------------------------------------------------------------------------------------------

def test_a_profile_this_machine_lacks_is_refused_without_estimate() -> None:
    if torch.cuda.is_available():
        pytest.skip("this machine has a CUDA device")
    base = MeasureSpec(model="", profile="a100")
    with pytest.raises(UsageError, match=r"--gpu a100 is NVIDIA A100 80GB SXM, but this machine has no CUDA"):
        plan_efficiency(["me5-small-st"], base, "out")
    plan = plan_efficiency(["mdeberta-v3-base"], replace(base, estimate=True), "out")
    assert [s.measure for s in plan.specs] == [False]
    with pytest.raises(UsageError, match="--gpu 'mi300x' is not a known device profile"):
        plan_efficiency(["me5-small-st"], replace(base, profile="mi300x"), "out")


def test_plan_checks_models_and_weights() -> None:
    base = MeasureSpec(model="")
    plan = plan_efficiency(None, base, "out")  # the seed's efficiency set, random weights
    assert plan.models[0] == "mdeberta-v3-base" and len(plan.models) == 8
    assert {s.weights for s in plan.specs} == {"random"}
    auto = plan_efficiency(["me5-small-st", "qwen2-0.5b"], base, "out")
    assert [s.weights for s in auto.specs] == ["real", "random"]
    with pytest.raises(UsageError, match="hub-only preset, its weights are not on this machine"):
        plan_efficiency(["qwen2-0.5b"], replace(base, weights="real"), "out")
    with pytest.raises(UsageError, match="neither a preset"):
        plan_efficiency(["no-such-model"], base, "out")
    with pytest.raises(UsageError, match="--probe-forwards must be at least 3"):
        plan_efficiency(["me5-small-st"], replace(base, probe_forwards=2), "out")


def test_finished_models_are_resumed_and_failures_recorded(tmp_path: Path) -> None:
    calls: list[str] = []

    def fake_runner(spec: MeasureSpec, log: Any) -> dict[str, Any]:
        calls.append(spec.model)
        if spec.model == "smollm2-135m":
            raise BenchError("child process killed by SIGKILL (likely the kernel's out-of-memory killer)")
        return {"model": {"model": spec.model, "dtype": "float32"}, "kind": "encoder", "weights": "real",
                "environment": {"torch_threads": 2}, "timing": {"total_s": 1.0}, "max_batch": {"max_batch": 3}}

    plan = plan_efficiency(["me5-small-st", "smollm2-135m"], MeasureSpec(model=""), str(tmp_path))
    first = execute_efficiency(plan, runner=fake_runner)
    assert [o.error is None for o in first] == [True, False]
    assert "SIGKILL" in (first[1].error or "")
    assert first[0].result_path == tmp_path / efficiency_run_id(plan.specs[0]) / "result.json"
    saved = read_result(first[0].result_path)
    assert isinstance(saved, EfficiencyRecord) and saved.efficiency["max_batch"] == {"max_batch": 3}
    assert saved.efficiency.max_batch is not None and saved.efficiency.max_batch.max_batch == 3
    second = execute_efficiency(plan, runner=fake_runner)
    assert second[0].resumed and calls == ["me5-small-st", "smollm2-135m", "smollm2-135m"]


# -- end to end through the CLI (child processes, real bundled models) ----------------------------------------------

@pytest.mark.slow
def test_cli_measures_bundled_encoder_and_causal_lm(tmp_path: Path) -> None:
    out = tmp_path / "eff"
    args = ["efficiency", "--models", "minilm-l6,smollm2-135m", "--tasks", "xcopa", "--langs", "it",
            "--limit", "6", "--max-batch", "4", "--batch-sizes", "1,2", "--min-iters", "2", "--min-seconds", "0",
            "--estimate", "--output", str(out)]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    files = sorted(out.rglob("result.json"))
    assert len(files) == 2
    records = {read_result(f).model["model"]: read_result(f) for f in files}
    enc = records["minilm-l6"].efficiency
    lm = records["smollm2-135m"].efficiency
    assert enc is not None and lm is not None
    for rec, kind in ((enc, "statement"), (lm, "loglikelihood")):
        assert rec["workload"]["request_kind"] == kind
        assert rec["workload"]["n_examples"] == 6 and rec["workload"]["n_rows"] == 12
        mb = rec["max_batch"]
        assert (mb["max_batch"], mb["max_pow2"], mb["stop_reason"]) == (4, 4, "cap")
        assert [p["batch_size"] for p in mb["probes"]] == [1, 2, 4]
        assert mb["forwards_per_probe"] == 4
        points = {p["batch_size"]: p for p in rec["throughput"]}
        assert sorted(points) == [1, 2, 4] and points[4]["label"] == "max"
        for p in points.values():
            assert p["iterations"] >= 2
            assert p["examples_per_s"] == pytest.approx(p["rows_per_s"] / 2)
            assert p["padded_tokens_per_s"] >= p["tokens_per_s"] > 0
            assert p["latency_s"]["p50"] <= p["latency_s"]["p99"]
            assert 0 < p["pct_of_peak"] < 100
            assert p["peak_memory"]["rss"] > 0
        assert rec["estimate"]["label"] == "estimated" and rec["mode"] == "measured+estimated"
        assert rec["device"]["profile"]["key"] == "local-cpu"
        assert rec["environment"]["attention_implementation"]
        assert rec["environment"]["packages"]["torch"] == torch.__version__
    # the printed tables carry the stored values
    p4 = {p["batch_size"]: p for p in lm["throughput"]}[4]
    assert f"{p4['examples_per_s']:.2f}" in result.output
    assert "estimated" in result.output and "% of peak" in result.output
    # the same command again resumes both models
    again = CliRunner().invoke(main, args)
    assert again.exit_code == 0 and again.output.count("(resumed)") == 2


@pytest.mark.slow
def test_cli_estimate_for_a_gpu_profile_on_cpu(tmp_path: Path) -> None:
    if torch.cuda.is_available():
        pytest.skip("this machine has a CUDA device")
    args = ["efficiency", "--gpu", "a100", "--estimate", "--weights", "random", "--models",
            "mdeberta-v3-base,qwen2-0.5b", "--tasks", "xcopa", "--langs", "it", "--limit", "10",
            "--output", str(tmp_path)]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    recs = {read_result(f).model["model"]: read_result(f).efficiency for f in tmp_path.rglob("result.json")}
    qwen = recs["qwen2-0.5b"]
    assert qwen is not None and qwen["mode"] == "estimated" and qwen["max_batch"] is None
    assert qwen["workload"]["tokenizer"].startswith("stand-in: gemma3-270m")
    est = qwen["estimate"]
    mm = est["memory_model"]
    assert est["max_batch"]["max_batch"] == math.floor((mm["limit_bytes"] - mm["fixed_bytes"]) / mm["per_row_bytes"])
    assert f"{est['max_batch']['max_pow2']} / {est['max_batch']['max_batch']}" in result.output
    assert "NVIDIA A100 80GB SXM" in result.output
    refused = CliRunner().invoke(main, [a for a in args if a != "--estimate"])
    assert refused.exit_code == 2
    assert "add --estimate" in refused.output


def test_child_reports_errors_as_one_line(tmp_path: Path) -> None:
    from harness.efficiency.child import main as child_main

    spec = tmp_path / "spec.json"
    spec.write_text(json.dumps({"model": "me5-small-st", "measure": False}), encoding="utf-8")
    out = tmp_path / "out.json"
    assert child_main([str(spec), str(out)]) == 1
    assert json.loads(out.read_text())["error"] == "--estimate without a measurement needs --gpu PROFILE"


def test_measure_estimate_only_needs_no_weights() -> None:
    rec = measure(MeasureSpec(model="gemma-2-9b", measure=False, profile="h100", tasks=("xcopa",),
                              languages=("it",), limit=4))
    assert rec["weights"] == "none (estimate only)"
    assert rec["estimate"]["profile"] == "h100-sxm"
    assert rec["cost"]["parameters"] == 9_241_705_984
    assert rec["estimate"]["memory_model"]["weights_bytes"] == 2 * 9_241_705_984


@pytest.mark.slow
def test_random_weights_build_the_true_architecture_and_report_it(tmp_path: Path) -> None:
    """mbert-base has no weights here: its shipped config.json is built with random weights and measured on
    stand-in token ids folded into its vocabulary; `bench report` then shows it with a plot."""
    out = tmp_path / "eff"
    args = ["efficiency", "--models", "mbert-base", "--weights", "random", "--dtype", "fp32", "--tasks", "xcopa",
            "--langs", "it", "--limit", "4", "--max-batch", "2", "--batch-sizes", "1", "--min-iters", "1",
            "--min-seconds", "0", "--output", str(out)]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    (path,) = out.rglob("result.json")
    rec = read_result(path).efficiency
    assert rec is not None
    assert rec["model"]["backend"] == "random-weights" and rec["weights"] == "random"
    assert rec["model"]["num_parameters"] == pytest.approx(177_853_440, rel=0.01)
    assert rec["workload"]["tokenizer"].startswith("stand-in: me5-small")
    assert rec["cost"]["vocab"] == 119_547
    assert rec["max_batch"]["max_batch"] == 2 and rec["max_batch"]["stop_reason"] == "cap"
    report = CliRunner().invoke(main, ["report", str(out), "--out", str(tmp_path / "r")])
    assert report.exit_code == 0, report.output
    text = (tmp_path / "r.md").read_text(encoding="utf-8")
    assert "## Efficiency" in text
    assert "![max batch and examples/s per model (log scale; estimated bars hatched)](r-files/efficiency.png)" in text
    png = tmp_path / "r-files" / "efficiency.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    point = rec["throughput"][0]
    assert f"{point['examples_per_s']:.2f}" in text  # the table shows the stored value
    assert "Accuracy (%)" not in text  # no accuracy runs were given


def test_random_weights_too_large_for_memory_are_refused_before_loading() -> None:
    from harness.efficiency.loading import check_weights_fit
    from harness.errors import ModelError

    spec = MeasureSpec(model="qwen2-72b", weights="random", device="cpu", memory_limit_bytes=4 * 2**30)
    with pytest.raises(ModelError, match=r"qwen2-72b: its weights take 270\.\d GB, more than the 4\.0 GB"):
        check_weights_fit(spec)
