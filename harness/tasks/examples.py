"""Load a task/language/split as typed Examples (rows from its data, through the task file's mapping)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from harness.core import Example
from harness.errors import DataError, UsageError
from harness.tasks import loading
from harness.tasks.adapters import RowContext, example_from_row
from harness.tasks.specs import check_language, check_split, get_task
from harness.tasks.taskfile import TaskSpec


@dataclass(frozen=True)
class ExampleSet:
    task: str
    language: str
    split: str
    examples: list[Example]
    rowset: loading.RowSet
    n_rows: int  # rows in the split before --limit


def check_task_options(specs: list[TaskSpec], options: Mapping[str, str]) -> None:
    """Every ``--task-option NAME=VALUE`` names a variant of one of the tasks and one of its values."""
    declared = {name: v for spec in specs for name, v in spec.variants.items()}
    for name, value in options.items():
        if name not in declared:
            known = ", ".join(sorted(declared)) or "none"
            raise UsageError(f"--task-option {name}={value}: no selected task declares {name!r} (options: {known})")
        if value not in declared[name].choices:
            raise UsageError(f"--task-option {name}={value}: choose one of {', '.join(declared[name].choices)}")


def load_examples(task: str | TaskSpec, language: str, split: str | None = None, *, limit: int | None = None,
                  source: str = "packaged", hub_dir: str | None = None,
                  options: Mapping[str, str] | None = None, data_dir: Path | None = None) -> ExampleSet:
    spec = get_task(task)
    check_language(spec, language)
    split = split or spec.default_split
    check_split(spec, split)
    options = dict(options or {})
    check_task_options([spec], {k: v for k, v in options.items() if k in spec.variants})
    rowset = loading.load_rows(spec, language, split, source=source, hub_dir=hub_dir, data_dir=data_dir)
    rows = rowset.rows if limit is None else rowset.rows[:limit]
    joins = []
    for name, variant in spec.variants.items():
        choice = options.get(name, variant.default)
        values = loading.variant_values(spec, name, choice, split, data_dir)
        join = variant.choices[choice]
        if values is not None and join is not None:
            joins.append((variant, choice, str(join["by"]), values))
    examples: list[Example] = []
    shown = spec.base_dir / rowset.location if rowset.source == "files" else rowset.location
    for i, row in enumerate(rows):
        ctx = RowContext(spec.name, language, split, i, f"{spec.name}/{language}/{split} row {i} ({shown})")
        for variant, choice, by, values in joins:
            idx = row.get(by)
            if not isinstance(idx, int) or isinstance(idx, bool) or not 0 <= idx < len(values):
                raise DataError(f"{ctx.where}: field {by!r} {idx!r} cannot be joined with --task-option "
                                f"{variant.name}={choice}")
            row = {**row, variant.field: values[idx]}
        examples.append(example_from_row(spec, row, ctx))
    return ExampleSet(spec.name, language, split, examples, rowset, len(rowset.rows))
