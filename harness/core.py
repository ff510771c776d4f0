"""Typed records that flow one way: Example -> Request -> Score -> Sample."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

RequestKind = Literal["statement", "loglikelihood"]


@dataclass(frozen=True)
class Example:
    """One evaluation item, already normalised: 0-based gold index into `candidates`."""

    task: str
    language: str
    split: str
    index: int  # 0-based row position in the split file
    fields: Mapping[str, str]  # textual slots (premise, question, sentence, ...)
    candidates: tuple[str, ...]  # candidate texts (choices / endings / options / label names)
    gold: int
    # the row as the task's data has it (lm-eval's "doc"): causal-LM prompts are built from it
    doc: Mapping[str, Any] = field(default_factory=dict, compare=False, repr=False)

    @property
    def example_id(self) -> str:
        return f"{self.task}/{self.language}/{self.split}/{self.index}"


@dataclass(frozen=True)
class StatementRequest:
    """Score one natural-language statement: the backend returns P(True)."""

    example_id: str
    candidate: int
    text: str
    kind: RequestKind = "statement"


@dataclass(frozen=True)
class LoglikelihoodRequest:
    """Score log P(continuation | context) (lm-evaluation-harness `loglikelihood`).

    `choice` is the text lm-eval normalises by for `acc_norm` (its doc_to_choice string for this candidate).
    """

    example_id: str
    candidate: int
    context: str
    continuation: str
    choice: str = ""
    kind: RequestKind = "loglikelihood"


Request = StatementRequest | LoglikelihoodRequest

# How a request is kept in a sample: the statement text, or (context, continuation).
RequestRecord = str | tuple[str, str]


def request_record(request: Request) -> RequestRecord:
    if isinstance(request, StatementRequest):
        return request.text
    return (request.context, request.continuation)


def argmax(values: Sequence[float]) -> int:
    """First index of the maximum (``np.argmax``'s tie rule, which lm-eval's predictions follow)."""
    best = 0
    for i, v in enumerate(values):
        if v > values[best]:
            best = i
    return best


class RequestBuilder(Protocol):
    """task -> example -> requests. `version` names the prompt format and is part of the run identity."""

    kind: RequestKind
    version: str

    def build(self, example: Example) -> tuple[str | None, list[Request]]: ...


@dataclass(frozen=True)
class Score:
    """A backend's answer to one request. `value` is compared across candidates (higher wins)."""

    value: float
    truncated: bool = False  # input was longer than the model's limit and was cut
    n_tokens: int | None = None  # statement tokens (encoder) or continuation tokens (causal LM)
    greedy: bool | None = None  # causal LM: the continuation is the greedy decode (lm-eval's is_greedy)


@dataclass(frozen=True)
class Sample:
    """One scored example, as written (one JSON line) to the per-sample file."""

    example_id: str
    task: str
    language: str
    split: str
    index: int
    template_id: str | None
    requests: tuple[RequestRecord, ...]  # per candidate: statement text, or (context, continuation)
    scores: tuple[float, ...]
    prediction: int
    gold: int
    truncated: int = 0
    prediction_norm: int | None = None  # lm-eval acc_norm: argmax of loglik / len(choice); causal LMs only
    extra: Mapping[str, object] = field(default_factory=dict)

    @property
    def correct(self) -> bool:
        return self.prediction == self.gold

    @property
    def correct_norm(self) -> bool | None:
        return None if self.prediction_norm is None else self.prediction_norm == self.gold
