"""`bench reproduce`: the paper's study (harness/reproduce/paper.yaml) as one resumable command."""

from __future__ import annotations

import os
from pathlib import Path

import click

from harness.commands.common import one_line_errors


@click.command("reproduce")
@click.option("--plan", "plan_only", is_flag=True, help="Print every step, its command, what needs hub access and "
              "estimated GPU-hours and memory (no GPU, no hub, nothing written).")
@click.option("--stand-in", "stand_in", is_flag=True, help="The same pipeline at a reduced size with the bundled "
              "small models, on this machine's CPU (what CI runs; the size is printed and put in the report).")
@click.option("--output", default=None, help="Study directory (default: results/reproduce, or "
              "results/reproduce-stand-in with --stand-in); steps/<id>.json marks finished steps.")
@click.option("--gpu", default="h100", show_default=True, help="Device profile of the --plan estimates (see "
              "`bench list devices`).")
@one_line_errors
def reproduce_cmd(plan_only: bool, stand_in: bool, output: str | None, gpu: str) -> None:
    """Train, evaluate, baseline, measure and report the paper's study; resumable (finished steps are skipped)."""
    from harness.errors import UsageError
    from harness.reproduce.plan import plan_study, render_plan
    from harness.reproduce.study import load_study

    study = load_study()
    mode = "stand-in" if stand_in else "full"
    out = output or study.default_output(mode)
    if plan_only:
        click.echo(render_plan(plan_study(study, mode, out, gpu), study))
        return
    if mode == "full":
        import torch

        if not torch.cuda.is_available():
            raise UsageError("the full study needs CUDA GPUs (see `bench reproduce --plan` for GPU-hours and hub "
                             "needs); on this machine run `bench reproduce --stand-in`")
    else:
        # the stand-in uses bundled models only: make sure nothing reaches for the hub
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
    _execute(study, mode, Path(out))


def _execute(study: object, mode: str, out: Path) -> None:
    from harness.commands import efficiency, report, run, train
    from harness.reproduce.execute import execute_study
    from harness.reproduce.report import append_study_section
    from harness.reproduce.study import Step, Study

    assert isinstance(study, Study)
    if mode == "stand-in":
        click.echo(f"stand-in: {study.stand_in_size}")
    commands = {"train": train.train_cmd, "run": run.run_cmd, "efficiency": efficiency.efficiency_cmd,
                "report": report.report_cmd}

    def after_report(step: Step, where: Path) -> None:
        click.echo(f"report: {append_study_section(study, mode, where, step)} (with the study section)")

    outcome = execute_study(study, mode, out, commands, click.echo, after={"report": after_report})
    click.echo(f"{study.name} ({mode}): {len(outcome.ran)} step(s) ran, {len(outcome.skipped)} skipped (done); "
               f"{outcome.seconds:.1f}s; steps: {out}/steps")
