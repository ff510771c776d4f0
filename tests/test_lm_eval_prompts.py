"""LMEvalRequestBuilder: exact strings, and parity with lm-evaluation-harness 0.4.13 itself.

The parity half builds lm-eval's own ConfigurableTask for every task/language from its packaged yaml (found
through lm_eval.tasks.TaskManager), feeds it our packaged rows as its dataset (``custom_dataset``), and checks
that ``fewshot_context(doc, 0)`` + ``construct_requests`` give exactly our (context, continuation) pairs, that
``doc_to_choice`` gives our acc_norm ``choice`` strings, and that lm-eval's gold index is ours.
"""

from __future__ import annotations

from typing import Any

import pytest
from lmeval_rows import configurable_task

from harness.core import Example, LoglikelihoodRequest
from harness.errors import DataError, UsageError
from harness.prompts import PROMPT_VERSION, LMEvalRequestBuilder
from harness.prompts.judge import judge_context, p_true
from harness.tasks.examples import load_examples
from harness.tasks.registry import get_task, load_registry

TASKS = load_registry().tasks
XNLI_LABELS = TASKS["xnli"].candidate_labels

BUILDER = LMEvalRequestBuilder()
N_PARITY = 20


def _ex(task: str, language: str, fields: dict[str, str], candidates: tuple[str, ...], gold: int = 0) -> Example:
    """An example with its doc (the row in the task's schema), built back through the task file's mapping."""
    spec = get_task(task)
    doc: dict[str, object] = {spec.fields[k]: v for k, v in fields.items()}
    doc.update(zip(spec.candidate_fields, candidates, strict=False))  # labels (XNLI) have no fields
    doc[spec.gold_field] = gold + 1 if spec.gold_kind == "index1" else gold
    return Example(task=task, language=language, split="test", index=3, fields=fields, candidates=candidates,
                   gold=gold, doc=doc)


def _pairs(example: Example) -> list[tuple[str, str, str]]:
    template_id, requests = BUILDER.build(example)
    assert template_id == PROMPT_VERSION == "lm-eval-0.4.13"
    assert [r.candidate for r in requests] == list(range(len(example.candidates)))
    assert all(isinstance(r, LoglikelihoodRequest) and r.kind == "loglikelihood" for r in requests)
    assert all(r.example_id == example.example_id for r in requests)
    return [(r.context, r.continuation, r.choice) for r in requests]


# -- exact strings -------------------------------------------------------------------------------------------


def test_builder_identity() -> None:
    assert BUILDER.kind == "loglikelihood"
    assert BUILDER.version == LMEvalRequestBuilder.PROMPT_VERSION == "lm-eval-0.4.13"


def test_xcopa_et_cause_and_effect() -> None:
    cause = _ex("xcopa", "et", {"premise": "Ese oli mullikilesse mässitud.", "question": "cause"},
                ("See oli õrn.", "See oli väike."))
    assert _pairs(cause) == [
        ("Ese oli mullikilesse mässitud sest", " see oli õrn.", "see oli õrn."),
        ("Ese oli mullikilesse mässitud sest", " see oli väike.", "see oli väike."),
    ]
    effect = _ex("xcopa", "et", {"premise": "  Tüdruk leidis putuka. ", "question": "effect"},
                 ("Ta karjus.", "Ta jooksis."))
    assert _pairs(effect)[0] == ("Tüdruk leidis putuka seetõttu", " ta karjus.", "ta karjus.")


def test_xcopa_zh_and_multiword_connectors() -> None:
    zh = _ex("xcopa", "zh", {"premise": "这个物品被气泡膜包着。", "question": "cause"}, ("它很易碎。", "它很小。"))
    assert _pairs(zh)[0] == ("这个物品被气泡膜包着 因为", " 它很易碎。", "它很易碎。")
    sw = _ex("xcopa", "sw", {"premise": "Kitu kilifungwa.", "question": "effect"}, ("Kilikuwa.", "Ndio."))
    assert _pairs(sw)[1] == ("Kitu kilifungwa kwa hiyo", " ndio.", "ndio.")
    ht = _ex("xcopa", "ht", {"premise": "Atik la te vlope.", "question": "effect"}, ("A", "B"))
    assert _pairs(ht)[0][0] == "Atik la te vlope donk sa"


@pytest.mark.parametrize(("language", "words"), [
    ("en", ("right", "Yes", "Also", "No")),
    ("de", ("richtig", "Ja", "Auch", "Nein")),
    ("zh", ("正确", "是的", "所以", "不是的")),
    ("th", ("ถูกต้อง", "ใช่", "ดังนั้น", "ไม่")),
])
def test_xnli_words(language: str, words: tuple[str, str, str, str]) -> None:
    ex = _ex("xnli", language, {"premise": "P.", "hypothesis": "H"}, XNLI_LABELS, gold=2)
    q, yes, also, no = words
    expected = [f"P., {q}? {yes}, H", f"P., {q}? {also}, H", f"P., {q}? {no}, H"]
    assert _pairs(ex) == [("", " " + e, e) for e in expected]


def test_xnli_en_full_sentence() -> None:
    ex = _ex("xnli", "en", {"premise": "The man is sleeping.", "hypothesis": "A man sleeps."}, XNLI_LABELS)
    assert _pairs(ex)[0] == ("", " The man is sleeping., right? Yes, A man sleeps.",
                             "The man is sleeping., right? Yes, A man sleeps.")


def test_xstorycloze() -> None:
    ex = _ex("xstorycloze", "en", {"s1": "A b.", "s2": "C d.", "s3": "E f.", "s4": "G h."}, ("End one.", "End two."))
    assert _pairs(ex) == [("A b. C d. E f. G h.", " End one.", "End one."),
                          ("A b. C d. E f. G h.", " End two.", "End two.")]


def test_xwinograd_en_partial_scoring() -> None:
    ex = _ex("xwinograd", "en",
             {"sentence": "The city councilmen refused the demonstrators a permit because _ feared violence."},
             ("The city councilmen", "the demonstrators"))
    ctx1 = "The city councilmen refused the demonstrators a permit because The city councilmen"
    ctx2 = "The city councilmen refused the demonstrators a permit because the demonstrators"
    # same continuation for both candidates; acc_norm normalises by the *context* (lm-eval's doc_to_choice)
    assert _pairs(ex) == [(ctx1, " feared violence.", ctx1), (ctx2, " feared violence.", ctx2)]


def test_xwinograd_jp_keeps_delimiter() -> None:
    ex = _ex("xwinograd", "jp", {"sentence": "狙撃兵はテロリストを撃った。_は悪漢だったからだ。"},
             ("狙撃兵", "テロリスト"))
    ctx = "狙撃兵はテロリストを撃った。テロリスト"
    assert _pairs(ex)[1] == (ctx, " は悪漢だったからだ。", ctx)


def test_errors_are_one_line() -> None:
    with pytest.raises(UsageError, match="unknown task 'copa'"):
        BUILDER.build(Example("copa", "en", "test", 0, {}, ("a", "b"), 0))
    with pytest.raises(UsageError, match="no xcopa prompt for language 'en'"):
        BUILDER.build(_ex("xcopa", "en", {"premise": "P.", "question": "cause"}, ("a", "b")))
    with pytest.raises(DataError, match=r"xwinograd/en/test/3: lm_eval.doc_to_choice .* failed: substring not found"):
        BUILDER.build(_ex("xwinograd", "en", {"sentence": "no blank here"}, ("a", "b")))
    with pytest.raises(DataError, match="gave 3 choices for 2 candidates"):
        BUILDER.build(Example("xnli", "en", "test", 0, {}, ("yes", "no"), 0,
                              doc={"premise": "P", "hypothesis": "H", "label": 0}))


def test_literals_cover_every_packaged_language() -> None:
    for task in ("xcopa", "xnli"):
        prompt = TASKS[task].lm_eval
        assert prompt is not None and set(prompt.literals) == set(TASKS[task].languages)


def test_judge_prompt() -> None:
    assert judge_context("Paris is in France.") == "Paris is in France.\nTrue or False? Answer:"
    assert p_true(-1.0, -1.0) == pytest.approx(0.5)
    assert p_true(-0.1, -3.0) == pytest.approx(1 / (1 + 2.718281828459045 ** -2.9))
    assert 0.0 < p_true(-800.0, -1.0) < 1e-300 or p_true(-800.0, -1.0) == 0.0


# -- parity with lm-eval itself ---------------------------------------------------------------------------------

# every built-in task file names lm-eval's own task of the same prompt (`lm_eval.upstream`)
CASES = [(task, lang) for task, spec in TASKS.items() if spec.lm_eval and spec.lm_eval.upstream
         for lang in spec.languages]


@pytest.fixture(scope="module")
def lm_eval_index(quiet_lm_eval: None) -> Any:
    from lm_eval.tasks import TaskManager

    return TaskManager().task_index


def lm_eval_task(index: Any, name: str, rows: list[dict[str, Any]]) -> Any:
    """lm-eval's ConfigurableTask for `name`, from its packaged yaml, over `rows` (every split it names)."""
    return configurable_task(index[name].yaml_path, rows)


def lm_eval_requests(task: Any, doc: dict[str, Any]) -> tuple[list[tuple[str, str]], list[str], int]:
    """(lm-eval's (context, continuation) arguments, doc_to_choice, gold index) for one doc, zero-shot."""
    ctx = task.fewshot_context(doc, 0)
    instances = task.construct_requests(doc, ctx)
    gold = task.doc_to_text(doc) if task.multiple_input else task.doc_to_target(doc)
    return [tuple(inst.arguments) for inst in instances], list(task.doc_to_choice(doc)), int(gold)


@pytest.mark.parametrize(("task", "language"), CASES)
def test_parity_with_lm_eval(lm_eval_index: Any, task: str, language: str) -> None:
    examples = load_examples(task, language, limit=N_PARITY)
    rows = [dict(r) for r in examples.rowset.rows[:N_PARITY]]
    upstream = TASKS[task].lm_eval.upstream  # type: ignore[union-attr]
    lm_task = lm_eval_task(lm_eval_index, upstream.format(language=language), rows)
    docs = list(lm_task.eval_docs)
    assert len(docs) == len(examples.examples) == min(N_PARITY, examples.n_rows)
    for example, doc in zip(examples.examples, docs, strict=True):
        arguments, choices, gold = lm_eval_requests(lm_task, doc)
        _, requests = BUILDER.build(example)
        assert [(r.context, r.continuation) for r in requests] == arguments, example.example_id
        assert [r.choice for r in requests] == choices, example.example_id
        assert example.gold == gold, example.example_id
