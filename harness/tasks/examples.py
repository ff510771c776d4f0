"""Load a task/language/split as typed Examples (rows from packaged data or the Hub, through the adapters)."""

from __future__ import annotations

from dataclasses import dataclass

from harness.core import Example
from harness.errors import DataError
from harness.tasks import loading
from harness.tasks.adapters import ADAPTERS, AdapterOptions, RowContext, check_options, xcopa_example
from harness.tasks.specs import check_language, check_split, get_task


@dataclass(frozen=True)
class ExampleSet:
    task: str
    language: str
    split: str
    examples: list[Example]
    rowset: loading.RowSet
    n_rows: int  # rows in the split before --limit


def load_examples(task: str, language: str, split: str | None = None, *, limit: int | None = None,
                  source: str = "packaged", hub_dir: str | None = None,
                  options: AdapterOptions | None = None) -> ExampleSet:
    spec = get_task(task)
    check_language(spec, language)
    split = split or spec.default_split
    check_split(spec, split)
    options = options or AdapterOptions()
    check_options(options)
    rowset = loading.load_rows(task, language, split, source=source, hub_dir=hub_dir)
    rows = rowset.rows if limit is None else rowset.rows[:limit]
    questions: list[str] | None = None
    if task == "xcopa" and options.xcopa_question == "copa-en":
        questions = loading.copa_en_questions(split)
    examples: list[Example] = []
    for i, row in enumerate(rows):
        ctx = RowContext(task, language, split, i, f"{task}/{language}/{split} row {i} ({rowset.location})")
        if questions is not None:
            idx = row.get("idx")
            if not isinstance(idx, int) or not 0 <= idx < len(questions):
                raise DataError(f"{ctx.where}: field 'idx' {idx!r} cannot be joined with English COPA")
            examples.append(xcopa_example(row, ctx, question=questions[idx]))
        else:
            examples.append(ADAPTERS[task](row, ctx))
    return ExampleSet(task, language, split, examples, rowset, len(rowset.rows))
