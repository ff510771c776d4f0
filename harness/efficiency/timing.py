"""Timing one forward: CUDA events around the call (the GPU's own clock, synchronised), perf_counter on CPU."""

from __future__ import annotations

import math
import statistics
import time
from collections.abc import Callable, Sequence
from typing import TypeVar

import torch

T = TypeVar("T")


def timed(fn: Callable[[], T], device: torch.device) -> tuple[T, float]:
    """(result, seconds). On CUDA the interval is measured by events recorded on the measured device's current
    stream and read after the end event has completed, so queued kernels are counted and host overhead between
    calls is not. The stream is named: Event.record() alone uses the *current device's* stream (torch/cuda/
    streams.py), which for ``cuda:1`` while device 0 is current would time an idle device."""
    if device.type == "cuda":
        stream = torch.cuda.current_stream(device)
        start = torch.cuda.Event(enable_timing=True)
        end = torch.cuda.Event(enable_timing=True)
        torch.cuda.synchronize(device)
        start.record(stream)
        out = fn()
        end.record(stream)
        end.synchronize()
        return out, start.elapsed_time(end) / 1000.0
    begin = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - begin


def percentile(values: Sequence[float], q: float) -> float:
    """Linear-interpolated percentile (numpy's default method), q in [0, 100]."""
    if not values:
        return math.nan
    ordered = sorted(values)
    pos = (len(ordered) - 1) * q / 100.0
    low = math.floor(pos)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (pos - low)


def latency_stats(seconds: Sequence[float]) -> dict[str, float]:
    """p50 / p90 / p99 / mean / stdev / min / max of per-batch latencies (seconds)."""
    values = list(seconds)
    return {
        "p50": percentile(values, 50), "p90": percentile(values, 90), "p99": percentile(values, 99),
        "mean": statistics.fmean(values) if values else math.nan,
        "stdev": statistics.stdev(values) if len(values) > 1 else 0.0,
        "min": min(values) if values else math.nan, "max": max(values) if values else math.nan,
    }
