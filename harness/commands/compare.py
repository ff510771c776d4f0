"""`bench compare`: two runs sample by sample."""

from __future__ import annotations

from pathlib import Path

import click

from harness.commands.common import one_line_errors


@click.command("compare")
@click.argument("reference", type=click.Path(path_type=Path, exists=True))
@click.argument("candidate", type=click.Path(path_type=Path, exists=True))
@click.option("--tolerance", type=click.Choice(["loglik-fp32", "loglik-bf16", "p_true-fp32", "p_true-bf16"]),
              default=None, help="Default: p_true-fp32 for encoder runs, loglik-fp32 otherwise.")
@click.option("--subset", is_flag=True, help="The candidate may have scored more examples than the reference.")
@one_line_errors
def compare_cmd(reference: Path, candidate: Path, tolerance: str | None, subset: bool) -> None:
    """Two runs sample by sample: per-sample max |Δ score|, prediction agreement, PASS/FAIL (exit 1 on FAIL)."""
    from harness.results import compare as cmp

    presets = {t.name: t for t in (cmp.LOGLIK_FP32, cmp.LOGLIK_BF16, cmp.PTRUE_FP32, cmp.PTRUE_BF16)}
    if tolerance is None:
        backend = cmp.run_label(reference).get("backend")
        tolerance = "p_true-fp32" if backend == "encoder" else "loglik-fp32"
    result = cmp.compare_runs(reference, candidate, presets[tolerance], ids="subset" if subset else "same")
    click.echo(f"{result.summary()} ({tolerance}: {presets[tolerance].describe()})")
    for d in result.worst(5):
        click.echo(f"  {d.example_id}: max |Δ| {d.max_abs_diff:.4g}, predictions {d.prediction_reference} / "
                   f"{d.prediction_candidate}")
    click.echo(str(result.verdict))
    if not result.verdict.passed:
        raise SystemExit(1)
