"""Log-likelihood requests identical to lm-evaluation-harness 0.4.13 (zero-shot, no chat template).

For every task the strings are what lm-eval's ``ConfigurableTask`` builds for a ``multiple_choice`` task:
``fewshot_context(doc, 0)`` gives the context (``doc_to_text``; for multiple-input tasks one context per
choice) and ``construct_requests`` gives ``(context, target_delimiter + continuation)`` with
``target_delimiter = " "``. The per-language words below are copied verbatim from lm-eval's task files
(``lm_eval/tasks/xcopa/utils.py`` and ``lm_eval/tasks/xnli/utils.py`` / ``xnli_*.yaml``).

``LoglikelihoodRequest.choice`` is lm-eval's ``doc_to_choice`` string for that candidate: ``process_results``
computes ``acc_norm = argmax(loglik / len(choice))`` over those strings (characters, without the delimiter).
Note what that means per task:

- xcopa: the lower-cased-first-letter choice (``convert_choice``);
- xnli: the whole ``premise, QUESTION? LABEL, hypothesis`` string (it is the continuation, with an empty context);
- xstorycloze: the ending;
- xwinograd: the *partial context* (sentence up to ``_`` plus the option), not the scored continuation,
  because xwinograd's ``doc_to_choice`` returns the contexts ("multiple input" mode).

Chat templates are not applied here: a causal-LM backend wraps the context itself (``--chat-template``) and
drops the target delimiter, as lm-eval does with ``--apply_chat_template``.
"""

from __future__ import annotations

from typing import ClassVar

from harness.core import Example, LoglikelihoodRequest, Request, RequestKind
from harness.errors import DataError, UsageError

PROMPT_VERSION = "lm-eval-0.4.13"
#: ConfigurableTask's default ``target_delimiter`` (none of the four tasks overrides it).
TARGET_DELIMITER = " "

#: lm_eval/tasks/xcopa/utils.py: ``doc_to_text_<lang> = partial(doc_to_text, connector={...})``.
XCOPA_CONNECTORS: dict[str, dict[str, str]] = {
    "et": {"cause": "sest", "effect": "seetõttu"},
    "ht": {"cause": "poukisa", "effect": "donk sa"},
    "it": {"cause": "perché", "effect": "quindi"},
    "id": {"cause": "karena", "effect": "maka"},
    "qu": {"cause": "imataq", "effect": "chaymi"},
    "sw": {"cause": "kwa sababu", "effect": "kwa hiyo"},
    "zh": {"cause": "因为", "effect": "所以"},
    "ta": {"cause": "காரணமாக", "effect": "எனவே"},
    "th": {"cause": "เพราะ", "effect": "ดังนั้น"},
    "tr": {"cause": "çünkü", "effect": "bu yüzden"},
    "vi": {"cause": "bởi vì", "effect": "vì vậy"},
}

#: lm_eval/tasks/xnli/utils.py ``LANGUAGES`` (the generated xnli_<lang>.yaml ``doc_to_choice`` uses them):
#: (QUESTION_WORD, ENTAILMENT_LABEL, NEUTRAL_LABEL, CONTRADICTION_LABEL).
XNLI_WORDS: dict[str, tuple[str, str, str, str]] = {
    "ar": ("صحيح", "نعم", "لذا", "رقم"),
    "bg": ("правилно", "да", "така", "не"),
    "de": ("richtig", "Ja", "Auch", "Nein"),
    "el": ("σωστός", "Ναί", "Έτσι", "όχι"),
    "en": ("right", "Yes", "Also", "No"),
    "es": ("correcto", "Sí", "Asi que", "No"),
    "fr": ("correct", "Oui", "Aussi", "Non"),
    "hi": ("सही", "हाँ", "इसलिए", "नहीं"),
    "ru": ("правильно", "Да", "Так", "Нет"),
    "sw": ("sahihi", "Ndiyo", "Hivyo", "Hapana"),
    "th": ("ถูกต้อง", "ใช่", "ดังนั้น", "ไม่"),
    "tr": ("doğru", "Evet", "Böylece", "Hayır"),
    "ur": ("صحیح", "جی ہاں", "اس لئے", "نہیں"),
    "vi": ("đúng", "Vâng", "Vì vậy", "Không"),
    "zh": ("正确", "是的", "所以", "不是的"),
}
#: The order of lm-eval's xnli choices (label ids 0, 1, 2), which is also harness.tasks.adapters.XNLI_LABELS.
XNLI_LABEL_ORDER = ("entailment", "neutral", "contradiction")


def xcopa_convert_choice(choice: str) -> str:
    """lm-eval's ``convert_choice``: first character lower-cased."""
    return choice[0].lower() + choice[1:]


def xcopa_context(premise: str, question: str, language: str) -> str:
    """lm-eval's xcopa ``doc_to_text``: the stripped premise without its last character, then the connector."""
    return premise.strip()[:-1] + f" {XCOPA_CONNECTORS[language][question]}"


def xnli_choice(premise: str, hypothesis: str, language: str, label: int) -> str:
    """One of lm-eval's xnli ``doc_to_choice`` strings: ``premise + ", Q? WORD, " + hypothesis``."""
    question, *words = XNLI_WORDS[language]
    return premise + f", {question}? {words[label]}, " + hypothesis


def xwinograd_split(sentence: str, where: str = "sentence") -> tuple[str, str]:
    """(text before ``_``, lm-eval's ``doc_to_target``: the text after ``_``, stripped)."""
    idx = sentence.find("_")
    if idx < 0:
        raise DataError(f"{where}: xwinograd sentence has no '_' blank: {sentence[:80]!r}")
    return sentence[:idx], sentence[idx + 1:].strip()


class LMEvalRequestBuilder:
    """task -> example -> lm-eval 0.4.13's zero-shot loglikelihood requests (one per candidate)."""

    kind: RequestKind = "loglikelihood"
    version: str = PROMPT_VERSION
    PROMPT_VERSION: ClassVar[str] = PROMPT_VERSION

    def build(self, example: Example) -> tuple[str | None, list[Request]]:
        """(template id = PROMPT_VERSION, one LoglikelihoodRequest per candidate, in candidate order)."""
        builder = _BUILDERS.get(example.task)
        if builder is None:
            raise UsageError(f"no lm-eval prompt for task {example.task!r}; lm-eval prompts exist for "
                             f"{', '.join(sorted(_BUILDERS))}")
        triples = builder(example)
        requests: list[Request] = [
            LoglikelihoodRequest(example.example_id, i, context, TARGET_DELIMITER + continuation, choice)
            for i, (context, continuation, choice) in enumerate(triples)
        ]
        return PROMPT_VERSION, requests


def _field(example: Example, name: str) -> str:
    value = example.fields.get(name)
    if not isinstance(value, str):
        raise DataError(f"{example.example_id}: field {name!r} is missing")
    return value


def _language(example: Example, table: dict[str, object]) -> None:
    if example.language not in table:
        raise UsageError(f"lm-eval {PROMPT_VERSION} has no {example.task} prompt for language "
                         f"{example.language!r}; it has: {' '.join(sorted(table))}")


Triple = tuple[str, str, str]  # (context, continuation without the delimiter, acc_norm choice)


def _xcopa(example: Example) -> list[Triple]:
    _language(example, dict(XCOPA_CONNECTORS))
    question = _field(example, "question")
    if question not in ("cause", "effect"):
        raise DataError(f"{example.example_id}: xcopa question is {question!r}, expected cause or effect")
    context = xcopa_context(_field(example, "premise"), question, example.language)
    choices = [xcopa_convert_choice(c) for c in example.candidates]
    return [(context, c, c) for c in choices]


def _xnli(example: Example) -> list[Triple]:
    _language(example, dict(XNLI_WORDS))
    if tuple(example.candidates) != XNLI_LABEL_ORDER:
        raise DataError(f"{example.example_id}: xnli candidates {example.candidates} are not lm-eval's "
                        f"label order {XNLI_LABEL_ORDER}")
    premise, hypothesis = _field(example, "premise"), _field(example, "hypothesis")
    choices = [xnli_choice(premise, hypothesis, example.language, i) for i in range(len(XNLI_LABEL_ORDER))]
    # doc_to_text is "": the context is empty and the whole sentence is the continuation
    return [("", c, c) for c in choices]


def _xstorycloze(example: Example) -> list[Triple]:
    context = " ".join(_field(example, f"s{i}") for i in range(1, 5))
    return [(context, ending, ending) for ending in example.candidates]


def _xwinograd(example: Example) -> list[Triple]:
    before, target = xwinograd_split(_field(example, "sentence"), example.example_id)
    contexts = [before + option for option in example.candidates]
    return [(ctx, target, ctx) for ctx in contexts]


_BUILDERS = {
    "xcopa": _xcopa,
    "xnli": _xnli,
    "xstorycloze": _xstorycloze,
    "xwinograd": _xwinograd,
}
