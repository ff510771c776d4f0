"""One adapter per task: a packaged/hub row (HF schema) -> a typed Example with a 0-based gold index."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from harness.core import Example
from harness.errors import DataError, UsageError

XNLI_LABELS = ("entailment", "neutral", "contradiction")
XCOPA_QUESTION_SOURCES = ("upstream", "copa-en")


@dataclass(frozen=True)
class AdapterOptions:
    """Recorded in every result: options that change which text a model sees."""

    xcopa_question: str = "upstream"  # upstream field (comparable with published numbers) or English COPA's


@dataclass(frozen=True)
class RowContext:
    task: str
    language: str
    split: str
    index: int
    where: str  # for messages: "xcopa/et/test row 12 (<file>)"


def _text(row: Mapping[str, Any], name: str, ctx: RowContext) -> str:
    value = row.get(name)
    if not isinstance(value, str):
        raise DataError(f"{ctx.where}: field {name!r} is missing or not text ({value!r})")
    return value


def _candidates(row: Mapping[str, Any], names: tuple[str, ...], ctx: RowContext) -> tuple[str, ...]:
    present = [n for n in names if n in row]
    if not present:
        raise DataError(f"{ctx.where}: empty candidate list (no {'/'.join(names)} fields)")
    values = tuple(_text(row, n, ctx) for n in names)
    for name, value in zip(names, values, strict=True):
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


def _example(ctx: RowContext, fields: dict[str, str], candidates: tuple[str, ...], gold: int) -> Example:
    return Example(task=ctx.task, language=ctx.language, split=ctx.split, index=ctx.index,
                   fields=fields, candidates=candidates, gold=gold)


def xcopa_example(row: Mapping[str, Any], ctx: RowContext, question: str | None = None) -> Example:
    q = question if question is not None else _text(row, "question", ctx)
    if q not in ("cause", "effect"):
        raise DataError(f"{ctx.where}: field 'question' is {q!r}, expected 'cause' or 'effect'")
    candidates = _candidates(row, ("choice1", "choice2"), ctx)
    gold = gold_index(row.get("label"), 2, ctx, field="label")
    return _example(ctx, {"premise": _text(row, "premise", ctx), "question": q}, candidates, gold)


def xnli_example(row: Mapping[str, Any], ctx: RowContext) -> Example:
    gold = gold_index(row.get("label"), 3, ctx, field="label", names=XNLI_LABELS)
    fields = {"premise": _text(row, "premise", ctx), "hypothesis": _text(row, "hypothesis", ctx)}
    return _example(ctx, fields, XNLI_LABELS, gold)


def xstorycloze_example(row: Mapping[str, Any], ctx: RowContext) -> Example:
    fields = {f"s{i}": _text(row, f"input_sentence_{i}", ctx) for i in range(1, 5)}
    candidates = _candidates(row, ("sentence_quiz1", "sentence_quiz2"), ctx)
    gold = gold_index(row.get("answer_right_ending"), 2, ctx, field="answer_right_ending", one_based=True)
    return _example(ctx, fields, candidates, gold)


def xwinograd_example(row: Mapping[str, Any], ctx: RowContext) -> Example:
    candidates = _candidates(row, ("option1", "option2"), ctx)
    gold = gold_index(row.get("answer"), 2, ctx, field="answer", one_based=True)
    return _example(ctx, {"sentence": _text(row, "sentence", ctx)}, candidates, gold)


# Fields each adapter provides to templates (besides the candidate slot).
TASK_FIELDS: dict[str, set[str]] = {
    "xcopa": {"premise", "question"},
    "xnli": {"premise", "hypothesis"},
    "xstorycloze": {"s1", "s2", "s3", "s4"},
    "xwinograd": {"sentence"},
}

RowAdapter = Callable[[Mapping[str, Any], RowContext], Example]
ADAPTERS: dict[str, RowAdapter] = {
    "xcopa": xcopa_example,
    "xnli": xnli_example,
    "xstorycloze": xstorycloze_example,
    "xwinograd": xwinograd_example,
}


def check_options(options: AdapterOptions) -> None:
    if options.xcopa_question not in XCOPA_QUESTION_SOURCES:
        raise UsageError(f"--xcopa-question {options.xcopa_question!r}: choose one of "
                         f"{', '.join(XCOPA_QUESTION_SOURCES)}")
