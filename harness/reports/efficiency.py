"""Efficiency tables and plot from `bench efficiency` result files (typed ``EfficiencyRecord``s).

Every measured figure sits next to its ceiling (the device profile's peak), and every analytic figure is in a
table or column whose header says "estimated"; the two are never mixed in one cell. Memory is in GB of 2**30
bytes (as GPU capacities are labelled), bandwidth in decimal GB/s (as datasheets give it). Energy (J per 1,000
examples, NVML's board counter) sits beside examples/s; where it was not measured the cell says why.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from harness.efficiency.memory import GB
from harness.reports.document import Block, Figure, Table
from harness.results.schema import (
    EfficiencyRecord,
    EstimatedPoint,
    ResultRecord,
    RunResult,
    ThroughputPoint,
    as_record,
)


def efficiency_results(results: Sequence[ResultRecord | RunResult]) -> list[EfficiencyRecord]:
    """The efficiency records among `results` (a `RunResult` is read as its record)."""
    return [r for r in map(as_record, results) if isinstance(r, EfficiencyRecord)]


def _num(value: Any, fmt: str = "{:.2f}") -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "–"
    return fmt.format(value)


def _gb(value: Any) -> str:
    return _num(None if value is None else value / GB, "{:.2f}")


def _ms(value: Any) -> str:
    return _num(None if value is None else 1000 * value, "{:.1f}")


def _scaled(value: float | None, scale: float, fmt: str) -> str:
    return _num(None if value is None else value / scale, fmt)


def _label(r: EfficiencyRecord) -> str:
    return str(r.efficiency.model.model or r.model.model or r.run_id)


def _device(r: EfficiencyRecord) -> str:
    return str(r.efficiency.device.profile.name or "?")


def _energy(point: ThroughputPoint) -> str:
    """J per 1,000 examples, or the recorded reason there is none ("not measured (CPU)"); "–" for records made
    before energy was read."""
    energy = point.energy
    if energy is None:
        return "–"
    if energy.joules_per_1k_examples is not None:
        return _num(energy.joules_per_1k_examples, "{:.1f}")
    return str(energy.reason or "not measured")


def _str(value: Any) -> str:
    """A recorded value as text; "" where it was not recorded."""
    return "" if value is None else str(value)


def max_batch_table(results: Sequence[ResultRecord | RunResult]) -> Table:
    rows = []
    for r in efficiency_results(results):
        e = r.efficiency
        mb = e.max_batch
        est = e.estimate.max_batch if e.estimate else None
        probes = mb.probes if mb else []
        fitted = [p for p in probes if p.fits and p.batch_size == (mb.max_batch if mb else None)]
        peak = fitted[0].peak_bytes if fitted else None
        rows.append([
            _label(r), _str(e.weights), _str(e.model.dtype), _device(r), _str(e.workload.probe_length),
            str(mb.max_pow2) if mb else "–", str(mb.max_batch) if mb else "–",
            str(mb.stop_reason) if mb else "–", _gb(peak), _gb(mb.limit_bytes if mb else None),
            f"{est.max_pow2} / {est.max_batch}" if est else "–",
        ])
    return Table(["model", "weights", "dtype", "device (profile)", "probe tokens", "max batch (2^k)",
                  "max batch (exact)", "stop", "peak GB at max", "limit GB", "estimated max (2^k / exact)"], rows,
                 align="lllllrrlrrr")


def throughput_table(results: Sequence[ResultRecord | RunResult], gpu_price_per_hour: float | None = None) -> Table:
    """Measured points; with a device price, examples per US$ (examples/s x 3600 / price) sits between
    examples/s and energy, so speed, cost and joules read side by side."""
    priced = gpu_price_per_hour is not None
    price = float(gpu_price_per_hour or 0.0)

    def per_dollar(p: ThroughputPoint) -> list[str]:
        if not priced:
            return []
        value = p.examples_per_s
        return [_num(None if value is None else float(value) * 3600.0 / price, "{:,.0f}")]

    rows = []
    for r in efficiency_results(results):
        for p in r.efficiency.throughput:
            if p.error is not None:
                rows.append([_label(r), f"{p.batch_size} ({p.label})", p.error, *[""] * (11 + priced)])
                continue
            lat = p.latency_s
            rows.append([
                _label(r), f"{p.batch_size} ({p.label})", _num(p.examples_per_s), *per_dollar(p), _energy(p),
                _num(p.rows_per_s),
                _num(p.tokens_per_s, "{:.0f}"), _num(p.padded_tokens_per_s, "{:.0f}"),
                f"{_ms(lat.p50)} / {_ms(lat.p90)} / {_ms(lat.p99)}", _ms(lat.stdev),
                _ms(p.first_call_s), _str(p.iterations),
                _scaled(p.flops_per_s, 1e12, "{:.3g}"), _scaled(p.peak_flops, 1e12, "{:.3g}"),
                _num(p.pct_of_peak, "{:.1f}%"),
            ])
    cost = [f"examples / US$ at {price:g} $/h"] if priced else []
    return Table(["model", "batch", "examples/s", *cost, "J / 1k examples", "rows/s", "tokens/s", "padded tokens/s",
                  "latency p50 / p90 / p99 ms", "stdev ms", "first call ms", "iters", "achieved TFLOP/s",
                  "peak TFLOP/s", "% of peak"], rows, align="ll" + "r" * (12 + priced))


def estimate_table(results: Sequence[ResultRecord | RunResult]) -> Table:
    """Roofline ceilings per batch size; where the same run measured that batch size, the measurement beside it."""
    rows = []
    for r in efficiency_results(results):
        e = r.efficiency
        est = e.estimate
        if not est:
            continue
        mm = est.memory_model
        measured = {p.batch_size: p for p in e.throughput if p.examples_per_s is not None}
        for p in est.throughput:
            m = measured.get(p.batch_size)
            rows.append([
                _label(r), _device(r), f"{p.batch_size} ({p.label})", _num(p.examples_per_s, "{:.1f}"),
                _num(m.examples_per_s) if m else "–",
                _ratio(m.examples_per_s, p.examples_per_s) if m else "–",
                _num(p.padded_tokens_per_s, "{:.0f}"), _ms(p.seconds_per_batch), _str(p.bound),
                _gb(mm.weights_bytes), _scaled(mm.per_row_bytes, 1e6, "{:.2f}"),
            ])
    return Table(["model", "device (profile)", "batch", "estimated examples/s (ceiling)", "measured examples/s",
                  "measured / ceiling", "estimated padded tokens/s", "estimated ms / batch", "bound", "weights GB",
                  "estimated MB / row"], rows, align="lllrrrrrlrr")


def _ratio(measured: float | None, ceiling: float | None) -> str:
    """measured / ceiling in percent."""
    if measured is None or not ceiling:
        return "–"
    return _num(100 * measured / ceiling, "{:.0f}%")


def ceilings_table(results: Sequence[ResultRecord | RunResult]) -> Table:
    rows = []
    for r in efficiency_results(results):
        e = r.efficiency
        profile = e.device.profile
        measured = e.device.measured_peaks
        cost = e.cost

        peaks = profile.peak_flops or {}
        ran = (measured.peak_flops if measured else None) or {}

        def tflops(values: dict[str, float | None], dtype: str) -> str:
            return _scaled(values.get(dtype), 1e12, "{:.4g}")

        rows.append([
            _label(r), str(profile.name if profile.name is not None else "?")
            + (" (measured)" if profile.measured else ""),
            tflops(peaks, "bfloat16"), tflops(ran, "bfloat16"), tflops(peaks, "float32"), tflops(ran, "float32"),
            _num((profile.bandwidth_bytes_per_s or 0) / 1e9, "{:.0f}"),
            _scaled(measured.bandwidth_bytes_per_s if measured else None, 1e9, "{:.0f}"), _gb(profile.memory_bytes),
            _num((cost.parameters or 0) / 1e6, "{:.0f}"), _num((cost.flops_per_token_at_mean or 0) / 1e9, "{:.3f}"),
        ])
    return Table(["model", "device", "peak bf16 TFLOP/s (profile)", "measured bf16 TFLOP/s",
                  "peak fp32 TFLOP/s (profile)", "measured fp32 TFLOP/s", "bandwidth GB/s (profile)",
                  "measured GB/s", "memory GB", "params (M)", "GFLOPs / token (mean row)"], rows,
                 align="llrrrrrrrrr")


def environment_lines(results: Sequence[ResultRecord | RunResult]) -> list[str]:
    lines = []
    for r in efficiency_results(results):
        env = r.environment
        pkgs = env.packages or {}
        lines.append(f"- {_label(r)}: {env.device or env.cpu}; dtype {env.dtype}; attention "
                     f"{env.attention_implementation}; threads {env.torch_threads}; torch "
                     f"{pkgs.get('torch')}, transformers {pkgs.get('transformers')}; CUDA "
                     f"{env.cuda_version}, driver {env.cuda_driver}; workload "
                     f"{r.efficiency.workload.tokenizer}")
    return lines


INTRO = ("Max batch: doubling until out of memory, then the exact boundary, at each task's longest input (warm-up + "
         "forwards per probe as recorded). Estimates come from the analytic memory model and a roofline; they are "
         "labelled estimated and never mixed with measurements.")


ENERGY_NOTE = ("J / 1k examples: the GPU board's NVML energy counter over the timed batches (idle time between "
               "batches and anything else on the GPU included), per 1,000 examples; a CPU run says it was not "
               "measured. Peaks marked (profile) are the device profile's: the datasheet's, or for a device "
               "marked (measured) this run's own; the measured columns are this run's matmul and copy "
               "micro-benchmarks on the device.")


def efficiency_blocks(results: Sequence[ResultRecord | RunResult], plot: Path | None = None,
                      gpu_price_per_hour: float | None = None) -> list[Block]:
    """The efficiency part of a report (empty when no result has an efficiency record)."""
    eff = efficiency_results(results)
    if not eff:
        return []
    blocks: list[Block] = [INTRO, max_batch_table(eff)]
    if any(r.efficiency.throughput for r in eff):
        blocks += ["**Throughput and latency (measured).**", throughput_table(eff, gpu_price_per_hour), ENERGY_NOTE]
    if any(r.efficiency.estimate for r in eff):
        blocks += ["**Estimated ceilings** (analytic: roofline over the same batches).", estimate_table(eff)]
    blocks += ["**Devices and models.**", ceilings_table(eff), "Environment:", *environment_lines(eff)]
    if plot is not None:
        blocks.append(Figure(plot, "max batch and examples/s per model (log scale; estimated bars hatched)"))
    return blocks


def efficiency_section(results: Sequence[ResultRecord | RunResult]) -> str:
    """The efficiency part as Markdown (what `bench efficiency` prints)."""
    from harness.reports.document import ReportDoc, Section
    from harness.reports.markdown import render_markdown

    blocks = efficiency_blocks(results)
    if not blocks:
        return ""
    return render_markdown(ReportDoc("", sections=[Section("Efficiency", blocks)]), with_title=False)


def _at_max(points: Sequence[ThroughputPoint] | Sequence[EstimatedPoint]) -> float:
    """examples/s at the largest batch size that has it; 0 without."""
    ok = [(p.batch_size or 0, p.examples_per_s) for p in points if p.examples_per_s is not None]
    return max(ok, key=lambda bp: bp[0])[1] if ok else 0.0


def efficiency_plot(results: Sequence[ResultRecord | RunResult], path: Path) -> Path | None:
    """Two log-scale bar panels: max batch and examples/s per model (measured solid, estimated hatched)."""
    eff = efficiency_results(results)
    if not eff:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    labels = [f"{_label(r)}\n{_device(r)}" for r in eff]
    fig, axes = plt.subplots(1, 2, figsize=(max(8, 1.8 * len(eff) + 4), 4.8))
    panels = (("max batch (exact)", "max_batch"), ("examples/s at max batch", "throughput"))
    for ax, (title, key) in zip(axes, panels, strict=True):
        measured: list[float] = []
        estimated: list[float] = []
        for r in eff:
            e = r.efficiency
            est = e.estimate
            if key == "max_batch":
                measured.append((e.max_batch.max_batch if e.max_batch else None) or 0)
                estimated.append((est.max_batch.max_batch if est and est.max_batch else None) or 0)
            else:
                measured.append(_at_max(e.throughput))
                estimated.append(_at_max(est.throughput if est else []))
        xs = range(len(eff))
        width = 0.4
        ax.bar([x - width / 2 for x in xs], [v or math.nan for v in measured], width,
               label="measured", color="#3b6ea8")
        ax.bar([x + width / 2 for x in xs], [v or math.nan for v in estimated], width,
               label="estimated", color="#e0a040", hatch="//", edgecolor="#8a5a10")
        ax.set_yscale("log")
        ax.set_xticks(list(xs))
        ax.set_xticklabels(labels, rotation=30, ha="right", fontsize=8)
        ax.set_title(title)
        ax.grid(axis="y", which="both", alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path
