"""One model's efficiency record (runs inside its own child process: see `harness.efficiency.runner`).

Load (real weights through the same backend `bench run` uses, or the true architecture with random weights),
build the task workload, then: max-batch search at the task's longest input, throughput and latency at matched
batch sizes and at the max batch, peak memory, and the analytic estimate for the chosen device profile.
"""

from __future__ import annotations

import math
import platform
import sys
import time
from collections.abc import Callable
from dataclasses import asdict
from typing import Any

import torch

from harness.efficiency.batch_search import MaxBatch, is_out_of_memory, linear_guess, search_max_batch
from harness.efficiency.cost import ModelCost, build_on_meta, model_cost
from harness.efficiency.energy import EnergyMeter, open_energy_meter
from harness.efficiency.estimate import estimate_record
from harness.efficiency.loading import (
    TimedModel,
    attention_impl,
    check_weights_fit,
    load_random,
    load_real,
    max_length_of,
    model_config,
    profile_dtype,
    tokenizer_for,
)
from harness.efficiency.memory import GB, MemoryTracker, available_memory_bytes, release_memory, rss_bytes
from harness.efficiency.profiles import (
    DeviceProfile,
    MeasuredPeaks,
    get_profile,
    local_cpu_profile,
    measured_cuda_profile,
    measured_peaks_for,
    profile_of_cuda_device,
)
from harness.efficiency.spec import MeasureSpec
from harness.efficiency.timing import latency_stats, timed
from harness.efficiency.workload import Workload, build_workload
from harness.errors import UsageError, one_line

#: Without --memory-limit a CPU search stops at this share of the memory available at start.
CPU_DEFAULT_LIMIT_SHARE = 0.8


# -- measurements ----------------------------------------------------------------------------------------------------

def probe_rows(workload: Workload, seq_len: int | None) -> tuple[tuple[int, ...], int]:
    """The row every max-batch probe repeats: the task's longest input (or one padded to --seq-len)."""
    longest = workload.longest
    if seq_len is None:
        return longest, len(longest)
    return longest[:seq_len], seq_len


def search(tm: TimedModel, workload: Workload, spec: MeasureSpec, tracker: MemoryTracker,
           log: Callable[[str], None]) -> tuple[MaxBatch, list[dict[str, Any]]]:
    row, width = probe_rows(workload, spec.seq_len)
    details: list[dict[str, Any]] = []

    def try_batch(n: int) -> float:
        inputs = tm.inputs([row] * n, pad_to=width)
        tracker.reset()
        started = time.perf_counter()
        try:
            for _ in range(spec.warmup + spec.probe_forwards):
                tm.forward(inputs)
                used = tracker.check_limit()
        except BaseException as err:
            if is_out_of_memory(err):
                log(f"  probe {n}: out of memory ({(str(err).splitlines() or [type(err).__name__])[0][:100]})")
            raise
        finally:
            del inputs
        details.append({"batch_size": n, "seconds": time.perf_counter() - started, **tracker.peak()})
        log(f"  probe {n}: fits, peak {used / GB:.3f} GB")
        return used

    def cleanup() -> None:
        release_memory(tm.device)

    limit = tracker.limit_bytes
    if limit is None and tm.device.type == "cuda":  # the allocator's own ceiling
        limit = torch.cuda.get_device_properties(tm.device).total_memory
    guess = linear_guess(limit) if limit is not None else None
    result = search_max_batch(try_batch, cap=spec.max_batch, cleanup=cleanup, next_probe=guess)
    return result, details


def throughput(tm: TimedModel, workload: Workload, cost: ModelCost, spec: MeasureSpec, tracker: MemoryTracker,
               batch_size: int, label: str, profile: DeviceProfile, dtype: str,
               energy: EnergyMeter | None = None) -> dict[str, Any]:
    """Examples/s, rows/s, real and padded tokens/s, latency percentiles over >= min_iters batches and
    >= min_seconds; the first call and the warm-up calls are timed apart and excluded. ``energy`` (default: one
    opened for this point) reads the device's energy counter around the timed batches only."""
    batches = workload.batches(batch_size, spec.seed)

    def run(batch: list[int]) -> tuple[float, int]:
        """(seconds, padded width) of one forward over these rows; inputs are built outside the timing."""
        inputs = tm.inputs([workload.rows[i] for i in batch])
        _, seconds = timed(lambda: tm.forward(inputs), tm.device)
        return seconds, int(inputs["input_ids"].shape[1])

    tracker.reset()
    first_call = run(batches[0])[0]
    warm = [run(batches[(k + 1) % len(batches)])[0] for k in range(spec.warmup)]
    latencies: list[float] = []
    rows = real = padded = 0
    flops = 0.0
    k = spec.warmup + 1
    meter = energy if energy is not None else open_energy_meter(tm.device)
    window = meter.start()
    while len(latencies) < spec.min_iters or sum(latencies) < spec.min_seconds:
        batch = batches[k % len(batches)]
        k += 1
        chunk = [workload.rows[i] for i in batch]
        seconds, width = run(batch)
        latencies.append(seconds)
        rows += len(chunk)
        real += sum(len(r) for r in chunk)
        padded += width * len(chunk)
        flops += width * len(chunk) * cost.flops_per_token(width)
        if len(latencies) >= 100_000:  # pragma: no cover - a guard against a zero-time clock
            break
    used = window.stop(rows / workload.rows_per_example)
    if energy is None:
        meter.close()
    total = sum(latencies)
    peak_flops = profile.peak_for(dtype)
    achieved = flops / total if total > 0 else math.nan
    return {
        "batch_size": batch_size, "label": label, "iterations": len(latencies), "seconds": total,
        "examples_per_s": rows / workload.rows_per_example / total, "rows_per_s": rows / total,
        "tokens_per_s": real / total, "padded_tokens_per_s": padded / total,
        "padding_share": 1 - real / padded if padded else 0.0,
        "latency_s": latency_stats(latencies), "first_call_s": first_call, "warmup_s": warm,
        "peak_memory": tracker.peak(), "over_memory_limit": _over_limit(tracker), "flops_per_s": achieved,
        "peak_flops": peak_flops, "pct_of_peak": 100 * achieved / peak_flops if peak_flops else None,
        "distinct_batches": min(len(batches), len(latencies)), "energy": used,
    }


def _over_limit(tracker: MemoryTracker) -> bool | None:
    """Whether a throughput run (batches of differing shapes) went past the limit the search respected: the
    allocator's fragmentation can push the peak above that of the probe's uniform batches."""
    if tracker.limit_bytes is None:
        return None
    return tracker.peak_used() > tracker.limit_bytes


def environment_record(tm: TimedModel | None, estimate: dict[str, Any] | None = None) -> dict[str, Any]:
    """The machine that produced the record; for an estimate alone, the dtype and attention it assumes."""
    from harness.device import environment

    env = dict(environment())
    if tm is None and estimate is not None:
        assumed = estimate.get("assumptions", {})
        env["dtype"] = f"{assumed.get('dtype')} (assumed by the estimate)"
        env["attention_implementation"] = f"{assumed.get('attention')} (assumed by the estimate)"
        env["device"] = f"none: estimate for {estimate.get('profile')}"
    if tm is not None:
        env["dtype"] = tm.info.get("dtype")
        env["autocast_bf16_cpu"] = tm.autocast
        env["attention_implementation"] = attention_impl(tm.model)
        env["device"] = tm.info.get("device")
    env["torch_threads"] = torch.get_num_threads()
    env["python_executable"] = sys.executable
    env["hostname"] = platform.node()
    return env


def resolve_profile(spec: MeasureSpec, device: torch.device, dtype: str) -> tuple[DeviceProfile, str | None]:
    """(profile, mismatch message or None). The measured device's profile, or --gpu's when it names one."""
    here: DeviceProfile | None
    if device.type == "cuda":
        here, device_name = profile_of_cuda_device(device)
    else:
        here = local_cpu_profile(spec.threads, dtype, spec.memory_limit_bytes, seconds=spec.cpu_profile_seconds)
        device_name = here.name
    if spec.profile is None:
        if here is None:  # a CUDA device without a datasheet profile: its own measured peaks, not a refusal
            return measured_cuda_profile(device, dtype, spec.cpu_profile_seconds), None
        return here, None
    wanted = get_profile(spec.profile)
    if here is not None and here.key == wanted.key:
        return here, None
    found = here.name if here is not None else device_name
    return wanted, f"--gpu {spec.profile} is {wanted.name}, but this machine's device is {found}"


def measure(spec: MeasureSpec, log: Callable[[str], None] = lambda _m: None) -> dict[str, Any]:
    """The efficiency record of one model (see the module doc); estimate-only when ``spec.measure`` is False."""
    from harness.device import dtype_name

    started = time.perf_counter()
    timing: dict[str, float] = {}
    tm: TimedModel | None = None
    if spec.measure:
        t0 = time.perf_counter()
        if spec.weights == "random":
            check_weights_fit(spec)
        tm = load_random(spec) if spec.weights == "random" else load_real(spec)
        timing["load_s"] = time.perf_counter() - t0
        config, kind, tokenizer, label = tm.config, tm.kind, tm.tokenizer, tm.tokenizer_label
        max_length, vocab = tm.max_length, tm.vocab_size
        device, dtype = tm.device, tm.dtype
        attention = attention_impl(tm.model)
        cost = model_cost(config, kind, tm.model)
        log(f"{spec.model}: loaded ({spec.weights} weights, {dtype_name(dtype)}, {attention}) "
            f"in {timing['load_s']:.1f}s")
    else:
        if spec.profile is None:
            raise UsageError("--estimate without a measurement needs --gpu PROFILE")
        config, kind, path = model_config(spec.model)
        tokenizer, label = tokenizer_for(spec.model, kind, path)
        max_length = max_length_of(config, kind, spec.model)
        text_config = config.get_text_config() if hasattr(config, "get_text_config") else config
        vocab = int(getattr(text_config, "vocab_size", 0) or 0) if label != "own" else None
        target = get_profile(spec.profile)
        device = torch.device("cuda" if target.kind == "gpu" else "cpu")
        dtype = profile_dtype(spec.dtype, target)
        meta = build_on_meta(config, kind)  # the attention `bench run` would get (eager for Gemma 2)
        attention = attention_impl(meta)
        cost = model_cost(config, kind, meta)
    t0 = time.perf_counter()
    workload = build_workload(spec.tasks, "statement" if kind == "encoder" else "loglikelihood", tokenizer,
                              max_length=max_length, languages=spec.languages, limit=spec.limit, seed=spec.seed,
                              include_paths=spec.include_paths,
                              tokenizer_label=label, vocab_size=vocab)
    if tm is not None and tm.vocab_size is None:
        workload.tokenizer = label
    timing["workload_s"] = time.perf_counter() - t0
    if spec.seq_len is not None and spec.seq_len > max_length:
        raise UsageError(f"--seq-len {spec.seq_len} exceeds the input limit of {spec.model} ({max_length} tokens)")
    _, probe_len = probe_rows(workload, spec.seq_len)
    dtype_str = dtype_name(dtype)
    summary = workload.summary()
    record: dict[str, Any] = {
        "model": dict(tm.info) if tm else {"model": spec.model, "backend": "estimate-only", "dtype": dtype_str},
        "kind": kind, "weights": spec.weights if spec.measure else "none (estimate only)",
        "workload": {**summary, "probe_length": probe_len, "probe_row": "longest input"
                     if spec.seq_len is None else f"--seq-len {spec.seq_len}"},
        "cost": {**cost.as_dict(), "flops_per_token_at_probe": cost.flops_per_token(probe_len),
                 "flops_per_token_at_mean": cost.flops_per_token(round(summary["tokens"]["mean"]))},
        "settings": {k: v for k, v in asdict(spec).items() if k not in ("model",)},
        "max_batch": None, "throughput": [], "estimate": None, "mode": "measured" if spec.measure else "estimated",
    }
    profile: DeviceProfile | None = None
    measured_peaks: MeasuredPeaks | None = None
    if spec.measure and tm is not None:
        profile, mismatch = resolve_profile(spec, device, dtype_str)
        if mismatch:
            raise UsageError(f"{mismatch}; add --estimate for an analytic estimate of {profile.name}")
        measured_peaks = measured_peaks_for(profile, device, dtype_str, spec.cpu_profile_seconds)
        limit = spec.memory_limit_bytes
        if device.type == "cpu" and limit is None:
            available = available_memory_bytes()
            limit = int(CPU_DEFAULT_LIMIT_SHARE * available) if available else None
            record["settings"]["memory_limit_note"] = (f"no --memory-limit: {CPU_DEFAULT_LIMIT_SHARE:.0%} of the "
                                                       "memory available at start")
        tracker = MemoryTracker(device, limit)
        tm.forward(tm.inputs([workload.longest]))  # lazy runtime buffers (kernels, caches) belong to the baseline
        release_memory(device)
        loaded_rss = rss_bytes()
        record["memory_after_load"] = {"rss": loaded_rss, "torch_allocated": float(torch.cuda.memory_allocated(
            device)) if device.type == "cuda" else None}
        t0 = time.perf_counter()
        log(f"{spec.model}: max-batch search at {probe_len} tokens (cap {spec.max_batch}, limit "
            f"{'device' if limit is None else f'{limit / GB:.2f} GB'})")
        found, details = search(tm, workload, spec, tracker, log)
        timing["search_s"] = time.perf_counter() - t0
        probes = [asdict(p) for p in found.probes]
        by_batch = {d["batch_size"]: d for d in details}
        for p in probes:
            p.update({k: v for k, v in by_batch.get(p["batch_size"], {}).items() if k != "batch_size"})
        record["max_batch"] = {"max_batch": found.max_batch, "max_pow2": found.max_pow2,
                               "stop_reason": found.stop_reason, "cap": found.cap, "limit_bytes": limit,
                               "probe_length": probe_len, "probes": probes,
                               "forwards_per_probe": spec.warmup + spec.probe_forwards}
        log(f"{spec.model}: max batch {found.max_batch} (power of two {found.max_pow2}, {found.stop_reason})")
        release_memory(device)
        t0 = time.perf_counter()
        sizes = [(b, "matched") for b in spec.batch_sizes if b <= found.max_batch]
        if found.max_batch > 0 and found.max_batch not in spec.batch_sizes:
            sizes.append((found.max_batch, "max"))
        meter = open_energy_meter(device)
        try:
            for b, lab in sizes:
                oom: str | None = None
                try:
                    point = throughput(tm, workload, cost, spec, tracker, b, lab, profile, dtype_str, meter)
                except BaseException as err:
                    if not is_out_of_memory(err):
                        raise
                    oom = one_line(err, limit=100_000)
                if oom is not None:  # released past the except block, where the traceback no longer holds the tensors
                    release_memory(device)
                    point = {"batch_size": b, "label": lab, "error": f"out of memory: {oom}"}
                record["throughput"].append(point)
                if "examples_per_s" in point:
                    per_1k = point["energy"]["joules_per_1k_examples"]
                    energy_note = f"{per_1k:.1f} J / 1k examples" if per_1k is not None else point["energy"]["reason"]
                    log(f"{spec.model}: batch {b}: {point['examples_per_s']:.2f} examples/s, "
                        f"p50 {point['latency_s']['p50'] * 1000:.1f} ms, energy {energy_note}")
        finally:  # NVML is shut down whatever ends the loop (an OOM point is recorded and the loop goes on)
            meter.close()
        timing["throughput_s"] = time.perf_counter() - t0
        if spec.estimate:
            record["estimate"] = estimate_record(
                cost, profile, workload, dtype=dtype_str, weight_dtype="float32" if tm.autocast else dtype_str,
                attention=attention, probe_length=probe_len, cap=spec.max_batch, batch_sizes=spec.batch_sizes,
                limit_bytes=limit, measured_fixed_bytes=float(loaded_rss) if device.type == "cpu" and loaded_rss
                else None)
            record["mode"] = "measured+estimated"
    else:
        profile = target
        record["estimate"] = estimate_record(
            cost, profile, workload, dtype=dtype_str, weight_dtype=dtype_str, attention=attention,
            probe_length=probe_len, cap=spec.max_batch, batch_sizes=spec.batch_sizes,
            limit_bytes=spec.memory_limit_bytes)
    assert profile is not None
    record["device"] = {"profile": {**asdict(profile), "peak_flops": dict(profile.peak_flops)},
                        "measured_on": tm.info.get("device") if tm else None,
                        "measured_peaks": measured_peaks.as_dict() if measured_peaks else None}
    record["environment"] = environment_record(tm, record["estimate"])
    timing["total_s"] = time.perf_counter() - started
    record["timing"] = timing
    return record
