"""Look up a task (built-in or from ``--include-path``) and check a language or split against it."""

from __future__ import annotations

from harness.errors import UsageError
from harness.tasks.registry import IncludePaths, find_task, get_task, load_registry
from harness.tasks.taskfile import TaskSpec

__all__ = ["TaskSpec", "check_language", "check_split", "find_task", "get_task", "load_registry", "task_names"]


def task_names(include_paths: IncludePaths = ()) -> tuple[str, ...]:
    return tuple(load_registry(include_paths).tasks)


def check_language(spec: TaskSpec, language: str) -> None:
    if language not in spec.languages:
        raise UsageError(f"task {spec.name!r} has no language {language!r}; it has: {' '.join(spec.languages)}")


def check_split(spec: TaskSpec, split: str) -> None:
    if split not in spec.splits:
        raise UsageError(f"task {spec.name!r} has no split {split!r}; it has: {', '.join(spec.splits)}")
