"""Turn an Example into one statement per candidate, with one seeded template draw per example."""

from __future__ import annotations

import random
from dataclasses import dataclass

from harness.core import Example, Request, RequestKind, StatementRequest
from harness.errors import DataError
from harness.statement.templates import Template, TemplateSet


@dataclass(frozen=True)
class Verbalized:
    template_id: str
    statements: tuple[str, ...]


def draw_template(templates: TemplateSet, example: Example, seed: int) -> Template:
    """Seeded per example id, so a draw never depends on --limit, order, or resuming."""
    group = example.fields.get(templates.group_field) if templates.group_field else None
    eligible = templates.eligible(group)
    if not eligible:
        raise DataError(f"{example.example_id}: field {templates.group_field!r} is {group!r}, "
                        f"which no template in {templates.path} covers")
    rng = random.Random(f"{seed}/{example.example_id}")
    return eligible[rng.randrange(len(eligible))]


def fill(template: Template, example: Example, slot: str | None) -> tuple[str, ...]:
    fields = dict(example.fields)
    if template.per_candidate is not None:
        return tuple(t.format_map(fields) for t in template.per_candidate)
    assert template.text is not None and slot is not None
    return tuple(template.text.format_map({**fields, slot: c}) for c in example.candidates)


def verbalize(example: Example, templates: TemplateSet, seed: int) -> Verbalized:
    template = draw_template(templates, example, seed)
    return Verbalized(template.id, fill(template, example, templates.candidate_slot))


class StatementRequestBuilder:
    """task -> example -> requests for statement scorers (the encoder backend, or an LLM judge later)."""

    kind: RequestKind = "statement"
    version = "statements"  # the templates' sha256 is recorded separately, per task

    def __init__(self, templates: dict[str, TemplateSet], seed: int) -> None:
        self.templates = templates
        self.seed = seed

    def build(self, example: Example) -> tuple[str | None, list[Request]]:
        verbalized = verbalize(example, self.templates[example.task], self.seed)
        requests: list[Request] = [StatementRequest(example.example_id, i, text)
                                   for i, text in enumerate(verbalized.statements)]
        return verbalized.template_id, requests
