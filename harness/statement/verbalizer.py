"""Turn an Example into one statement per candidate, with one seeded template draw per example."""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass

from harness.core import Example, Request, RequestKind, Sample, Score, StatementRequest, argmax, request_record
from harness.errors import DataError
from harness.statement.templates import Template, TemplateSet


@dataclass(frozen=True)
class Verbalized:
    template_id: str
    statements: tuple[str, ...]


def eligible_templates(templates: TemplateSet, example: Example) -> tuple[Template, ...]:
    """The templates an example may use (its group's, for grouped sets such as XCOPA cause/effect), in file order."""
    group = example.fields.get(templates.group_field) if templates.group_field else None
    eligible = templates.eligible(group)
    if not eligible:
        raise DataError(f"{example.example_id}: field {templates.group_field!r} is {group!r}, "
                        f"which no template in {templates.path} covers")
    return eligible


def draw_template(templates: TemplateSet, example: Example, seed: int) -> Template:
    """Seeded per example id, so a draw never depends on --limit, order, or resuming."""
    eligible = eligible_templates(templates, example)
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


#: ``template_id`` of a sample that scored every eligible template (``bench run --templates all``)
ALL_TEMPLATES = "all"
#: how an all-templates sample's own scores and prediction come from its per-template scores
ENSEMBLE_RULE = ("per candidate, the mean of the backend's score (P(True) for encoders) over the example's "
                 "eligible templates; prediction = argmax of those means (first on ties)")


def verbalize_all(example: Example, templates: TemplateSet) -> list[Verbalized]:
    """One statement per candidate for every template eligible for the example, in template-file order."""
    return [Verbalized(t.id, fill(t, example, templates.candidate_slot))
            for t in eligible_templates(templates, example)]


class AllTemplatesRequestBuilder:
    """``--templates all``: every eligible template's statements for each example, flattened template by template.

    ``assemble`` turns the scores back into one sample per example (so resuming stays per example): the
    per-template requests, scores, predictions and truncation counts sit in ``extra["templates"]`` (keyed by
    template id, file order), and the sample's own ``scores``/``prediction`` follow :data:`ENSEMBLE_RULE`.
    The sample's ``requests`` is empty (the statements are per template) and its ``template_id`` is ``"all"``.
    """

    kind: RequestKind = "statement"
    version = "statements"  # the same statements as draw mode; the mode is in the run identity

    def __init__(self, templates: dict[str, TemplateSet]) -> None:
        self.templates = templates

    def build(self, example: Example) -> tuple[str | None, list[Request]]:
        requests: list[Request] = []
        for verbalized in verbalize_all(example, self.templates[example.task]):
            requests.extend(StatementRequest(example.example_id, i, text)
                            for i, text in enumerate(verbalized.statements))
        return ALL_TEMPLATES, requests

    def assemble(self, example: Example, requests: Sequence[Request], scores: Sequence[Score]) -> Sample:
        """The example's sample from its requests (as ``build`` made them) and their scores, in order."""
        per_template: dict[str, dict[str, object]] = {}
        n = len(example.candidates)
        columns: list[list[float]] = [[] for _ in range(n)]
        pos = 0
        for verbalized in verbalize_all(example, self.templates[example.task]):
            k = len(verbalized.statements)
            these, reqs = scores[pos:pos + k], requests[pos:pos + k]
            pos += k
            values = [s.value for s in these]
            for i, v in enumerate(values):
                columns[i].append(v)
            per_template[verbalized.template_id] = {
                "requests": [request_record(r) for r in reqs], "scores": values, "prediction": argmax(values),
                "truncated": sum(1 for s in these if s.truncated)}
        if pos != len(scores) or len(requests) != len(scores):
            raise DataError(f"{example.example_id}: {len(scores)} scores for {pos} statements")
        ensemble = tuple(sum(c) / len(c) for c in columns)
        return Sample(example_id=example.example_id, task=example.task, language=example.language,
                      split=example.split, index=example.index, template_id=ALL_TEMPLATES, requests=(),
                      scores=ensemble, prediction=argmax(ensemble), gold=example.gold,
                      truncated=sum(1 for s in scores if s.truncated), prediction_norm=None,
                      extra={"ensemble": "mean", "templates": per_template})
