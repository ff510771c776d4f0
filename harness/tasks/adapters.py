"""A row (in its task's schema) -> a typed Example, as the task file's ``example:`` mapping says.

The gold label is normalised to a 0-based index (from a 0-based or 1-based index, a label name or the
candidate text); candidates come from row fields, a fixed label list, or one list-valued field.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from harness.core import Example
from harness.errors import DataError
from harness.tasks.taskfile import TaskSpec


@dataclass(frozen=True)
class RowContext:
    task: str
    language: str
    split: str
    index: int
    where: str  # for messages: "<task>/<language>/<split> row 12 (<file>)"


def _text(row: Mapping[str, Any], name: str, ctx: RowContext) -> str:
    value = row.get(name)
    if not isinstance(value, str):
        raise DataError(f"{ctx.where}: field {name!r} is missing or not text ({value!r})")
    return value


def _candidates(spec: TaskSpec, row: Mapping[str, Any], ctx: RowContext) -> tuple[str, ...]:
    if spec.candidate_labels:
        return spec.candidate_labels
    if spec.candidate_list is not None:
        value = row.get(spec.candidate_list)
        if not isinstance(value, list) or not value:
            raise DataError(f"{ctx.where}: field {spec.candidate_list!r} is not a non-empty list of candidates")
        names = tuple(f"{spec.candidate_list}[{i}]" for i in range(len(value)))
        values = tuple(value)
    else:
        names = spec.candidate_fields
        if not any(n in row for n in names):
            raise DataError(f"{ctx.where}: empty candidate list (no {'/'.join(names)} fields)")
        values = tuple(_text(row, n, ctx) for n in names)
    for name, value in zip(names, values, strict=True):
        if not isinstance(value, str):
            raise DataError(f"{ctx.where}: candidate {name!r} is not text ({value!r})")
        if not value.strip():
            raise DataError(f"{ctx.where}: candidate {name!r} is empty")
    return values


def gold_index(value: Any, n: int, ctx: RowContext, *, field: str, one_based: bool = False,
               names: tuple[str, ...] = ()) -> int:
    """Normalise a gold label (int, digit string, 1-based, or label name) to a 0-based index in range."""
    if isinstance(value, bool):
        raise DataError(f"{ctx.where}: field {field!r} has a boolean label {value!r}")
    idx: int | None = None
    if isinstance(value, int):
        idx = value
    elif isinstance(value, str):
        stripped = value.strip()
        if stripped.lstrip("-").isdigit():
            idx = int(stripped)
        elif stripped.lower() in names:
            return names.index(stripped.lower())
    if idx is None:
        raise DataError(f"{ctx.where}: field {field!r} has an unreadable label {value!r}")
    if one_based:
        idx -= 1
    if not 0 <= idx < n:
        shown = f"{value!r} ({'1' if one_based else '0'}-based)"
        raise DataError(f"{ctx.where}: field {field!r} label {shown} is out of range for {n} candidates")
    return idx


def _gold(spec: TaskSpec, row: Mapping[str, Any], candidates: tuple[str, ...], ctx: RowContext) -> int:
    field = spec.gold_field
    value = row.get(field)
    if spec.gold_kind == "text":
        if value not in candidates:
            raise DataError(f"{ctx.where}: field {field!r} {value!r} is none of the candidates")
        return candidates.index(value)
    if spec.gold_kind == "label":
        names = tuple(c.lower() for c in candidates)
        if not isinstance(value, str) or value.strip().lower() not in names:
            raise DataError(f"{ctx.where}: field {field!r} {value!r} is none of the labels {list(candidates)}")
        return names.index(value.strip().lower())
    names = tuple(c.lower() for c in spec.candidate_labels)
    return gold_index(value, len(candidates), ctx, field=field, one_based=spec.gold_kind == "index1", names=names)


def example_from_row(spec: TaskSpec, row: Mapping[str, Any], ctx: RowContext) -> Example:
    for name, allowed in spec.allowed.items():
        value = row.get(name)
        if value not in allowed:
            wanted = " or ".join(repr(a) for a in allowed)
            raise DataError(f"{ctx.where}: field {name!r} is {value!r}, expected {wanted}")
    fields = {name: _text(row, source, ctx) for name, source in spec.fields.items()}
    candidates = _candidates(spec, row, ctx)
    gold = _gold(spec, row, candidates, ctx)
    return Example(task=ctx.task, language=ctx.language, split=ctx.split, index=ctx.index, fields=fields,
                   candidates=candidates, gold=gold, doc=dict(row))
