"""`bench efficiency`: max batch size, throughput, latency and memory per model."""

from __future__ import annotations

import click

from harness.commands.common import (
    failure,
    include_path_option,
    langs_option,
    one_line_errors,
    parse_csv,
    resumable,
    torch_options,
)


def _ints(value: str | None, option: str) -> tuple[int, ...]:
    from harness.errors import UsageError

    items = parse_csv(value) or ()
    try:
        return tuple(int(v) for v in items)
    except ValueError:
        raise UsageError(f"{option} {value!r}: give comma-separated integers") from None


@click.command("efficiency")
@click.option("--models", default=None, help="Comma-separated presets or local dirs (default: the seed's efficiency "
              "set, random weights).")
@click.option("--tasks", default=None, help="Task(s) whose real inputs are the work (default: the first "
              "built-in task).")
@langs_option
@click.option("--limit", type=int, default=None, help="First N examples per language (default: all).")
@click.option("--gpu", "gpu", default=None, help="Device profile (a100, h100, h100-nvl, h200, gh200, l40s, l4, t4, "
              "a10g, a6000, v100, b200, rtx4090, cpu; see `bench list devices`): refused unless this machine has "
              "it, or with --estimate. Without it a CUDA device with no profile is measured.")
@click.option("--estimate", is_flag=True, help="Add the analytic estimate (memory model + roofline), labelled "
              "estimated; alone when --gpu names a device this machine does not have.")
@click.option("--weights", type=click.Choice(["auto", "real", "random"]), default="auto", show_default=True,
              help="random: true architecture from the preset's config.json, seeded random weights; auto: real "
              "where the weights are on this machine.")
@torch_options(dtype_help="auto | fp32 | bf16 | fp16", device_help="auto | cpu | cuda | cuda:N",
               threads_help="CPU threads for torch.")
@click.option("--max-batch", type=int, default=65536, show_default=True, help="Cap of the max-batch search.")
@click.option("--memory-limit", type=float, default=None, help="GB (2**30 bytes) a model may use (CPU: peak RSS of "
              "its process; CUDA: torch's memory fraction). CPU default: 80%% of available memory.")
@click.option("--batch-sizes", default="1,16", show_default=True, help="Matched batch sizes for throughput (each "
              "model also runs at its own max batch).")
@click.option("--min-iters", type=int, default=10, show_default=True, help="Timed batches per throughput point.")
@click.option("--min-seconds", type=float, default=10.0, show_default=True, help="Timed seconds per point.")
@click.option("--warmup", type=int, default=1, show_default=True, help="Warm-up forwards (timed apart).")
@click.option("--probe-forwards", type=int, default=3, show_default=True, help="Forwards per max-batch probe.")
@click.option("--seq-len", type=int, default=None, help="Probe at this padded length instead of the longest input.")
@click.option("--seed", type=int, default=0, show_default=True, help="Template draws, random weights, batch order.")
@click.option("--output", default="results", show_default=True, help="Results directory (one folder per model).")
@include_path_option
@one_line_errors
def efficiency_cmd(models: str | None, tasks: str, langs: str, limit: int | None, gpu: str | None, estimate: bool,
                   weights: str, dtype: str, device: str, threads: int | None, max_batch: int,
                   memory_limit: float | None, batch_sizes: str, min_iters: int, min_seconds: float, warmup: int,
                   probe_forwards: int, seq_len: int | None, seed: int, output: str,
                   include_paths: tuple[str, ...]) -> None:
    """Max batch size, throughput, latency and memory per model, next to the device's ceilings."""
    from harness.efficiency.runner import execute_efficiency, plan_efficiency
    from harness.efficiency.spec import MeasureSpec
    from harness.errors import UsageError
    from harness.reports.efficiency import efficiency_section
    from harness.tasks.registry import default_task

    if limit is not None and limit < 1:
        raise UsageError(f"--limit {limit}: must be a positive number of examples per language")
    if warmup < 0:
        raise UsageError(f"--warmup must not be negative (got {warmup})")
    base = MeasureSpec(
        model="", weights=weights, tasks=parse_csv(tasks) or (default_task(),), languages=parse_csv(langs), limit=limit,
        include_paths=include_paths,
        dtype=dtype, device=device, threads=threads, seed=seed,
        memory_limit_bytes=None if memory_limit is None else int(memory_limit * 2**30), max_batch=max_batch,
        batch_sizes=_ints(batch_sizes, "--batch-sizes"), warmup=warmup, probe_forwards=probe_forwards,
        min_iters=min_iters, min_seconds=min_seconds, seq_len=seq_len, profile=gpu, estimate=estimate)
    plan = plan_efficiency(parse_csv(models), base, output)
    with resumable(f"finished models are kept under {output}/"):
        outcomes = execute_efficiency(plan, log=lambda line: click.echo(line, err=True))
    done = [o.result for o in outcomes if o.result is not None]
    if done:
        click.echo(efficiency_section(done))
    for o in outcomes:
        click.echo(f"{o.model}: {o.result_path}" + (" (resumed)" if o.resumed else "") if o.result_path
                   else f"{o.model}: FAILED: {o.error}")
    failed = [o for o in outcomes if o.error]
    if failed:
        raise failure(f"{len(failed)} of {len(outcomes)} model(s) failed: "
                      + "; ".join(f"{o.model}: {o.error}" for o in failed), 1)
