"""Run the study's steps in order, in this process, through the `bench` commands themselves; skip finished steps.

A step is finished when ``<output>/steps/<id>.json`` exists for the same mode and command and its outputs are still
there. The marker is written atomically, and only after the step's command returned successfully, so a step that
was interrupted part-way runs again and resumes through its command's own resume (`bench train` keeps its last
checkpoint, `bench run` its finished samples, `bench efficiency` its finished models). The first failing step stops
the study with a one-line error naming it; the markers of the finished steps are kept.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import click

from harness.errors import BenchError, UsageError, one_line
from harness.reproduce.study import Step, Study
from harness.results.schema import write_json_atomic

MARKER_SCHEMA = 1
STEPS_DIR = "steps"
OUTPUT_OPTIONS = ("--output", "--out")


class StepFailed(BenchError):
    """A step's command failed: the message names the step; the exit code is the command's."""

    def __init__(self, message: str, exit_code: int = 1) -> None:
        super().__init__(message)
        self.exit_code = exit_code


@dataclass
class StudyOutcome:
    ran: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    seconds: float = 0.0


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def marker_path(out: Path, step_id: str) -> Path:
    return out / STEPS_DIR / f"{step_id}.json"


def read_marker(path: Path) -> dict[str, Any] | None:
    """The marker, or None when there is none or it is unreadable (then the step simply runs again)."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return None
    return data if isinstance(data, dict) and data.get("schema") == MARKER_SCHEMA else None


def step_output(argv: Sequence[str]) -> Path | None:
    """The file or directory prefix the step writes (its --output / --out)."""
    for i, word in enumerate(argv):
        if word in OUTPUT_OPTIONS and i + 1 < len(argv):
            return Path(argv[i + 1])
    return None


def output_files(target: Path | None) -> list[str]:
    """Files a step wrote: everything under its --output directory, or, for a report prefix, NAME.* and
    NAME-files/ (paths as strings, sorted)."""
    if target is None:
        return []
    if target.is_dir():
        found = [p for p in target.rglob("*") if p.is_file()]
    else:
        found = [p for p in target.parent.glob(f"{target.name}.*") if p.is_file()]
        extra = target.parent / f"{target.name}-files"
        if extra.is_dir():
            found += [p for p in extra.rglob("*") if p.is_file()]
    return sorted(str(p) for p in found)


def _versions() -> dict[str, str | None]:
    from harness.models.cache import installed_version

    return {name: installed_version(name) for name in ("statement-bench", "torch", "transformers", "vllm")}


def check_mode(study: Study, out: Path, mode: str) -> None:
    """Refuse an output directory that holds the other mode's study: stand-in and full results never mix."""
    for step in study.steps:
        marker = read_marker(marker_path(out, step.id))
        if marker is not None and marker.get("mode") != mode:
            raise UsageError(f"--output {out} holds the {marker.get('mode')} study ({marker_path(out, step.id)}); "
                             f"give another --output for the {mode} study")


def done_marker(out: Path, step: Step, mode: str, command: str) -> tuple[dict[str, Any] | None, str]:
    """(marker, why not done): the marker when the step is finished for this command, else the reason."""
    marker = read_marker(marker_path(out, step.id))
    if marker is None:
        return None, "not run"
    if marker.get("command") != command:
        return None, "command changed"
    missing = [p for p in marker.get("outputs") or [] if not Path(p).exists()]
    if missing:
        return None, f"{len(missing)} output file(s) missing"
    return marker, ""


def _first_line(text: str) -> str:
    return next((ln.strip() for ln in text.splitlines() if ln.strip()), "error")


CommandRunner = Callable[[click.Command, list[str]], None]


def run_click(command: click.Command, args: list[str]) -> None:
    """A `bench` subcommand in this process, as the console script would run it (errors raise)."""
    command.main(args=args, prog_name=f"bench {command.name}", standalone_mode=False)


def execute_study(study: Study, mode: str, out: Path, commands: Mapping[str, click.Command],
                  echo: Callable[[str], None], *, after: Mapping[str, Callable[[Step, Path], None]] | None = None,
                  runner: CommandRunner = run_click) -> StudyOutcome:
    """Run every step of `mode` not yet done; `commands` maps a step kind to its `bench` command; `after[kind]`
    runs after a step's command succeeded (before its marker is written)."""
    check_mode(study, out, mode)
    outcome = StudyOutcome()
    start = time.monotonic()
    steps = study.steps_for(mode)
    for n, step in enumerate(steps, 1):
        command = step.command(mode, str(out))
        marker, why = done_marker(out, step, mode, command)
        rerun = [d for d in step.depends_on if d in outcome.ran]
        if marker is not None and rerun:
            marker, why = None, f"{rerun[0]} ran again"
        if marker is not None:
            echo(f"skip {step.id} (done {marker.get('finished')})")
            outcome.skipped.append(step.id)
            continue
        argv = step.argv(mode, str(out))
        echo(f"[{n}/{len(steps)}] {step.id} ({why}): {command}")
        started, t0 = _now(), time.monotonic()
        try:
            runner(commands[step.kind], argv[1:])
            hook = (after or {}).get(step.kind)
            if hook is not None:
                hook(step, out)
        except click.exceptions.Exit as err:
            if err.exit_code:
                raise StepFailed(f"step {step.id} failed (exit {err.exit_code}); finished steps are kept in "
                                 f"{out}/{STEPS_DIR}", err.exit_code) from err
        except click.ClickException as err:
            raise StepFailed(f"step {step.id} failed: {_first_line(err.format_message())}; finished steps "
                             f"are kept in {out}/{STEPS_DIR}", err.exit_code) from err
        except BenchError as err:
            raise StepFailed(f"step {step.id} failed: {one_line(err, limit=400)}; finished steps are kept in "
                             f"{out}/{STEPS_DIR}", err.exit_code) from err
        except click.exceptions.Abort as err:
            raise StepFailed(f"step {step.id} interrupted; re-run the same command to resume it", 130) from err
        except Exception as err:  # a bug in a step: still one line, naming the step
            raise StepFailed(f"step {step.id} failed: {type(err).__name__}: {one_line(err, limit=400)}; finished "
                             f"steps are kept in {out}/{STEPS_DIR}", 1) from err
        seconds = time.monotonic() - t0
        write_json_atomic(marker_path(out, step.id), {
            "schema": MARKER_SCHEMA, "step": step.id, "kind": step.kind, "mode": mode, "study": study.name,
            "command": command, "started": started, "finished": _now(), "seconds": round(seconds, 2),
            "outputs": output_files(step_output(argv)), "versions": _versions()})
        echo(f"done {step.id} ({seconds:.1f}s)")
        outcome.ran.append(step.id)
    outcome.seconds = time.monotonic() - start
    return outcome
