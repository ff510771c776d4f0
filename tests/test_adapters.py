from __future__ import annotations

import pytest

from harness.errors import DataError
from harness.tasks.adapters import RowContext, example_from_row, gold_index
from harness.tasks.registry import get_task
from harness.tasks.taskfile import parse_task_file


def xcopa_example(row, c):
    return example_from_row(get_task("xcopa"), row, c)


def xnli_example(row, c):
    return example_from_row(get_task("xnli"), row, c)


def xstorycloze_example(row, c):
    return example_from_row(get_task("xstorycloze"), row, c)


def xwinograd_example(row, c):
    return example_from_row(get_task("xwinograd"), row, c)


def ctx(task: str = "t") -> RowContext:
    return RowContext(task, "xx", "test", 5, f"{task}/xx/test row 5 (file.jsonl.gz)")


def test_gold_conversions():
    assert gold_index(0, 2, ctx(), field="label") == 0
    assert gold_index("1", 2, ctx(), field="answer", one_based=True) == 0
    assert gold_index("2", 2, ctx(), field="answer", one_based=True) == 1
    assert gold_index(2, 2, ctx(), field="answer_right_ending", one_based=True) == 1
    assert gold_index("contradiction", 3, ctx(), field="label",
                      names=("entailment", "neutral", "contradiction")) == 2
    assert gold_index("Neutral", 3, ctx(), field="label", names=("entailment", "neutral", "contradiction")) == 1


@pytest.mark.parametrize("value, one_based", [(2, False), (-1, False), ("3", True), (0, True), ("x", False),
                                              (None, False), (True, False)])
def test_gold_out_of_range_or_unreadable(value, one_based):
    with pytest.raises(DataError, match=r"t/xx/test row 5 \(file.jsonl.gz\): field 'label'"):
        gold_index(value, 2, ctx(), field="label", one_based=one_based)


def test_task_rows_to_examples():
    ex = xcopa_example({"premise": "P", "choice1": "A", "choice2": "B", "question": "effect", "label": 1,
                        "idx": 0, "changed": False}, ctx("xcopa"))
    assert (ex.fields["question"], ex.candidates, ex.gold) == ("effect", ("A", "B"), 1)
    assert ex.example_id == "xcopa/xx/test/5"
    assert ex.doc["idx"] == 0  # the row travels with the example (lm-eval's doc)
    nli = xnli_example({"premise": "P", "hypothesis": "H", "label": 2}, ctx("xnli"))
    assert (nli.candidates, nli.gold) == (("entailment", "neutral", "contradiction"), 2)
    story = xstorycloze_example({"story_id": "s", **{f"input_sentence_{i}": f"S{i}" for i in range(1, 5)},
                                 "sentence_quiz1": "E1", "sentence_quiz2": "E2", "answer_right_ending": 1},
                                ctx("xstorycloze"))
    assert (story.fields["s4"], story.candidates, story.gold) == ("S4", ("E1", "E2"), 0)
    wino = xwinograd_example({"sentence": "X _ Y", "option1": "a", "option2": "b", "answer": "2"},
                             ctx("xwinograd"))
    assert (wino.candidates, wino.gold) == (("a", "b"), 1)


def test_bad_rows():
    with pytest.raises(DataError, match="empty candidate list"):
        xwinograd_example({"sentence": "X _ Y", "answer": "1"}, ctx("xwinograd"))
    with pytest.raises(DataError, match="candidate 'option2' is empty"):
        xwinograd_example({"sentence": "X _ Y", "option1": "a", "option2": " ", "answer": "1"}, ctx("xwinograd"))
    with pytest.raises(DataError, match="field 'question' is 'why'"):
        xcopa_example({"premise": "P", "choice1": "A", "choice2": "B", "question": "why", "label": 0}, ctx())
    with pytest.raises(DataError, match="field 'premise' is missing"):
        xnli_example({"hypothesis": "H", "label": 0}, ctx())
    with pytest.raises(DataError, match="field 'label' label 3"):
        xnli_example({"premise": "P", "hypothesis": "H", "label": 3}, ctx())


def _task(tmp_path, example_block: str):
    (tmp_path / "d.jsonl").write_text("", encoding="utf-8")
    path = tmp_path / "t.yaml"
    path.write_text(f"""task: t
languages: [xx]
splits: {{test: {{files: d.jsonl}}}}
{example_block}
statements: {{candidate_slot: c, templates: [{{id: "1", text: "{{q}} {{c}}"}}]}}
""", encoding="utf-8")
    return parse_task_file(path)


def test_gold_as_label_text_and_list_candidates(tmp_path):
    labels = _task(tmp_path, "example: {fields: {q: q}, candidates: {labels: [\"Yes\", \"No\"]}, "
                             "gold: {field: a, as: label}}")
    assert example_from_row(labels, {"q": "Q", "a": "no"}, ctx()).gold == 1
    with pytest.raises(DataError, match="field 'a' 'maybe' is none of the labels"):
        example_from_row(labels, {"q": "Q", "a": "maybe"}, ctx())
    text = _task(tmp_path, "example: {fields: {q: q}, candidates: {field: opts}, gold: {field: ans, as: text}}")
    ex = example_from_row(text, {"q": "Q", "opts": ["a", "b", "c", "d"], "ans": "c"}, ctx())
    assert (ex.candidates, ex.gold) == (("a", "b", "c", "d"), 2)
    assert text.n_candidates is None and text.chance is None  # varies per row: the runner averages it
    with pytest.raises(DataError, match="field 'ans' 'z' is none of the candidates"):
        example_from_row(text, {"q": "Q", "opts": ["a", "b"], "ans": "z"}, ctx())
    one_based = _task(tmp_path, "example: {fields: [q], candidates: [x, y, z], gold: {field: g, as: index1}}")
    assert example_from_row(one_based, {"q": "Q", "x": "1", "y": "2", "z": "3", "g": "3"}, ctx()).gold == 2
    assert one_based.chance == pytest.approx(100 / 3)


def test_unquoted_yes_no_label_is_named(tmp_path):
    from harness.errors import UsageError

    with pytest.raises(UsageError, match=r"t.yaml: example.candidates.labels\[0\]: .*quote yes/no"):
        _task(tmp_path, "example: {fields: {q: q}, candidates: {labels: [Yes, No]}, gold: {field: a, as: label}}")
