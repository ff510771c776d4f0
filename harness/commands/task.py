"""`bench task check`: validate a task file."""

from __future__ import annotations

from pathlib import Path

import click

from harness.commands.common import one_line_errors


@click.group("task")
def task_group() -> None:
    """Work with task files (see docs/task-files.md)."""


@task_group.command("check")
@click.argument("task_file", type=click.Path(path_type=Path))
@click.option("--lang", default=None, help="Language of the example shown (default: the task's first).")
@click.option("--split", default=None, help="Split of the example shown (default: the task's default split).")
@click.option("--seed", default=0, show_default=True, help="Seed of the template draw shown.")
@one_line_errors
def task_check(task_file: Path, lang: str | None, split: str | None, seed: int) -> None:
    """Validate a task file: load every split and language, then print the first example's statements and
    causal-LM requests. Any error is one line naming the file, key or row; nothing is written."""
    from harness.tasks.check import check_task_file

    click.echo(check_task_file(task_file, language=lang, split=split, seed=seed))
