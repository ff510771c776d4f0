from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest

from harness.core import Example
from harness.errors import UsageError
from harness.statement.templates import parse_template_file, task_templates, template_path
from harness.statement.verbalizer import Verbalized, draw_template, fill, verbalize
from harness.tasks.registry import get_task
from harness.tasks.taskfile import parse_task_file

XCOPA_FIELDS = set(get_task("xcopa").fields)


def tset(task: str):
    return task_templates(get_task(task))


ET = Example("xcopa", "et", "test", 0, {"premise": "Ese oli mullikilesse mässitud.", "question": "cause"},
             ("See oli õrn.", "See oli väike."), 0)


def test_xcopa_template_2_exact_string():
    templates = tset("xcopa")
    cause = templates.eligible("cause")
    assert [t.id for t in cause] == ["cause-1", "cause-2", "cause-3"]
    assert fill(cause[1], ET, templates.candidate_slot) == (
        '"Ese oli mullikilesse mässitud." because "See oli õrn."',
        '"Ese oli mullikilesse mässitud." because "See oli väike."',
    )
    assert fill(cause[0], ET, "choice")[0] == 'The cause of "Ese oli mullikilesse mässitud." is that "See oli õrn."'


def test_xcopa_effect_family_selected_by_question():
    templates = tset("xcopa")
    effect = Example("xcopa", "et", "test", 1, {"premise": "P.", "question": "effect"}, ("A.", "B."), 1)
    texts = {fill(t, effect, "choice")[0] for t in templates.eligible("effect")}
    assert texts == {'The effect of "P." is that "A."', '"P." therefore "A."', '"P.", so "A."'}
    for seed in range(20):
        assert draw_template(templates, effect, seed).group == "effect"


def test_xnli_one_family_per_example_all_labels():
    templates = tset("xnli")
    ex = Example("xnli", "en", "test", 3, {"premise": "A man sleeps.", "hypothesis": "A person rests."},
                 ("entailment", "neutral", "contradiction"), 0)
    by_id = {t.id: fill(t, ex, None) for t in templates.templates}
    assert by_id["1"] == ('"A man sleeps." entails "A person rests."',
                          '"A man sleeps." is neutral with regards to "A person rests."',
                          '"A man sleeps." contradicts "A person rests."')
    assert by_id["2"] == ('"A man sleeps."? yes, "A person rests."', '"A man sleeps."? maybe, "A person rests."',
                          '"A man sleeps."? no, "A person rests."')
    assert by_id["3"][2] == 'Premise: "A man sleeps.", Hypothesis: "A person rests.", label: Contradiction'


def test_xstorycloze_and_xwinograd_strings():
    story = Example("xstorycloze", "en", "eval", 0, {"s1": "A.", "s2": "B.", "s3": "C.", "s4": "D."},
                    ("E1.", "E2."), 1)
    assert verbalize(story, tset("xstorycloze"), 0) == Verbalized("1", ('"A." "B." "C." "D." "E1."',
                                                                         '"A." "B." "C." "D." "E2."'))
    wino = Example("xwinograd", "en", "test", 0, {"sentence": "The trophy doesn't fit because _ is big."},
                   ("The trophy", "the suitcase"), 0)
    texts = {t.id: fill(t, wino, "option")[1] for t in tset("xwinograd").templates}
    assert texts == {
        "1": 'In "The trophy doesn\'t fit because _ is big.", _ is: "the suitcase"',
        "2": 'Q:"The trophy doesn\'t fit because _ is big.", A: "the suitcase"',
        "3": 'The missing word in "The trophy doesn\'t fit because _ is big." is "the suitcase"',
        "4": '_ in: "The trophy doesn\'t fit because _ is big." is "the suitcase"',
        "5": '"The trophy doesn\'t fit because _ is big.", _ is: "the suitcase"',
    }


def test_draw_is_seeded_per_example_and_shared_by_candidates():
    templates = tset("xwinograd")
    examples = [Example("xwinograd", "en", "test", i, {"sentence": f"S{i} _."}, ("a", "b"), 0) for i in range(400)]
    draws = [verbalize(e, templates, seed=7).template_id for e in examples]
    assert draws == [verbalize(e, templates, seed=7).template_id for e in examples]  # reproducible
    assert draws[:50] == [verbalize(e, templates, seed=7).template_id for e in examples[:50]]  # limit-independent
    assert draws != [verbalize(e, templates, seed=8).template_id for e in examples]  # seed matters
    counts = Counter(draws)
    assert set(counts) == {"1", "2", "3", "4", "5"} and min(counts.values()) > 50  # roughly uniform
    for e in examples[:40]:  # both candidates come from one template: only the option text differs
        first, second = verbalize(e, templates, seed=7).statements
        assert first.replace('"a"', '"<opt>"') == second.replace('"b"', '"<opt>"')


def test_user_template_dir_overrides_and_validates(tmp_path: Path):
    (tmp_path / "xcopa.yaml").write_text(
        "task: xcopa\nversion: 7\ncandidate_slot: choice\ngroup_field: question\ntemplates:\n"
        "  - {id: c, group: cause, text: '{premise} <- {choice}'}\n"
        "  - {id: e, group: effect, text: '{premise} -> {choice}'}\n", encoding="utf-8")
    custom = task_templates(get_task("xcopa"), tmp_path)
    assert custom.version == 7
    assert verbalize(ET, custom, 0).statements == ("Ese oli mullikilesse mässitud. <- See oli õrn.",
                                                   "Ese oli mullikilesse mässitud. <- See oli väike.")
    # a task without an override falls back to its task file's templates
    assert template_path("xnli", tmp_path) is None
    assert task_templates(get_task("xnli"), tmp_path).path.endswith("builtin/templates/xnli.yaml")
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "xcopa.yaml").write_text("task: xcopa\ncandidate_slot: choice\ntemplates:\n"
                                    "  - {id: x, text: '{premise} {hypothesis} {choice}'}\n", encoding="utf-8")
    with pytest.raises(UsageError, match=r"xcopa.yaml: template 'x' uses unknown slot\(s\) \['hypothesis'\]"):
        parse_template_file(bad / "xcopa.yaml", "xcopa", XCOPA_FIELDS, 2)
    with pytest.raises(UsageError, match="not a directory"):
        template_path("xcopa", tmp_path / "missing")


def test_inline_templates_in_a_task_file(tmp_path: Path):
    (tmp_path / "d.jsonl").write_text('{"q": "Sky?", "a": "blue", "b": "red", "g": 0}\n', encoding="utf-8")
    (tmp_path / "t.yaml").write_text(
        "task: t\nlanguages: [en]\nsplits: {test: {files: d.jsonl}}\n"
        "example: {fields: [q], candidates: [a, b], gold: g}\n"
        "statements:\n  candidate_slot: c\n  templates:\n    - {id: one, text: '{q} {c}.'}\n", encoding="utf-8")
    spec = parse_task_file(tmp_path / "t.yaml")
    ts = task_templates(spec)
    ex = Example("t", "en", "test", 0, {"q": "Sky?"}, ("blue", "red"), 0)
    assert verbalize(ex, ts, 0) == Verbalized("one", ("Sky? blue.", "Sky? red."))
    assert ts.path == str(spec.path) and len(ts.sha256) == 64
    # the checksum is of the block, not of the file: a comment elsewhere in the file does not change it
    (tmp_path / "t.yaml").write_text("# note\n" + (tmp_path / "t.yaml").read_text(), encoding="utf-8")
    assert task_templates(parse_task_file(tmp_path / "t.yaml")).sha256 == ts.sha256
    (tmp_path / "bad.yaml").write_text(
        "task: t2\nlanguages: [en]\nsplits: {test: {files: d.jsonl}}\n"
        "example: {fields: [q], candidates: [a, b], gold: g}\n"
        "statements:\n  candidate_slot: c\n  templates:\n    - {id: one, text: '{nope} {c}.'}\n", encoding="utf-8")
    with pytest.raises(UsageError, match=r"bad.yaml: statements: template 'one' uses unknown slot\(s\) \['nope'\]"):
        task_templates(parse_task_file(tmp_path / "bad.yaml"))
