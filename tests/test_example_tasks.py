"""The example task files in examples/tasks (COPA, StoryCloze 2016): a task added without touching harness/.

- both files pass `bench task check` (the first COPA example's statements and requests, exactly);
- their causal-LM requests equal lm-eval 0.4.13's own `copa` / `storycloze_2016` tasks PER REQUEST: lm-eval's
  ConfigurableTask is built from its packaged YAML over the same rows, read here from the data files
  independently of the harness (and renamed to the Hugging Face field names for StoryCloze);
- the sha256 in each task file matches its data file;
- a broken copy (wrong sha256, a missing key or field, gold out of range) is a one-line error naming the file
  and the key or row, exit code 2 or 3, and nothing is written;
- `bench run --backend fake` on copa_en writes a result whose task has its title and chance 50.

Offline and fast (no model is loaded).
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import shutil
from pathlib import Path
from typing import Any

import pytest
import yaml
from click.testing import CliRunner
from lmeval_rows import configurable_task

from harness.cli import main
from harness.prompts.lm_eval_prompts import LMEvalRequestBuilder
from harness.tasks.examples import load_examples
from harness.tasks.registry import load_registry

ROOT = Path(__file__).resolve().parents[1]
TASKS_DIR = ROOT / "examples" / "tasks"
COPA = TASKS_DIR / "copa_en.yaml"
STORYCLOZE = TASKS_DIR / "storycloze_en.yaml"
N_PARITY = 50

# The StoryCloze TSV header -> the Hugging Face `story_cloze` (2016) field names lm-eval's prompt reads.
HF_STORYCLOZE = {"InputStoryid": "story_id", "InputSentence1": "input_sentence_1",
                 "InputSentence2": "input_sentence_2", "InputSentence3": "input_sentence_3",
                 "InputSentence4": "input_sentence_4", "RandomFifthSentenceQuiz1": "sentence_quiz1",
                 "RandomFifthSentenceQuiz2": "sentence_quiz2", "AnswerRightEnding": "answer_right_ending"}


def bench(*args: str) -> Any:
    return CliRunner().invoke(main, list(args), catch_exceptions=False)


def task_doc(path: Path) -> dict[str, Any]:
    return yaml.safe_load(path.read_text(encoding="utf-8"))  # type: ignore[no-any-return]


def data_files(path: Path) -> dict[str, tuple[Path, str]]:
    """split -> (data file, sha256 the task file gives)."""
    return {split: (path.parent / spec["files"]["path"], spec["files"]["sha256"])
            for split, spec in task_doc(path)["splits"].items()}


def copa_rows(split: str = "test") -> list[dict[str, Any]]:
    path, _ = data_files(COPA)[split]
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def storycloze_rows(split: str = "test") -> list[dict[str, Any]]:
    path, _ = data_files(STORYCLOZE)[split]
    reader = csv.DictReader(io.StringIO(path.read_text(encoding="utf-8"), newline=""), delimiter="\t",
                            quoting=csv.QUOTE_NONE)
    rows = [{HF_STORYCLOZE[k]: v for k, v in r.items()} for r in reader]
    for r in rows:
        r["answer_right_ending"] = int(r["answer_right_ending"])  # an int on the Hub, as lm-eval expects
    return rows


# ------------------------------------------------------------------------------------------------ bench task check

COPA_FIRST = [
    "first example copa_en/en/test/0 (gold 0: 'It was fragile.')",
    "    [cause-1] 0: The cause of \"The item was packaged in bubble wrap.\" is that \"It was fragile.\"",
    "    [cause-1] 1: The cause of \"The item was packaged in bubble wrap.\" is that \"It was small.\"",
    "    [cause-2] 0: \"The item was packaged in bubble wrap.\" because \"It was fragile.\"",
    "    [cause-2] 1: \"The item was packaged in bubble wrap.\" because \"It was small.\"",
    "    [cause-3] 0: \"The item was packaged in bubble wrap.\" due to \"It was fragile.\"",
    "    [cause-3] 1: \"The item was packaged in bubble wrap.\" due to \"It was small.\"",
    "  causal-LM requests (lm-eval 0.4.13 log-likelihood: context | continuation):",
    # lm-eval's copa: doc_to_choice already starts with a space, and the default target_delimiter adds another
    "    0: 'The item was packaged in bubble wrap because' | '  it was fragile.'",
    "    1: 'The item was packaged in bubble wrap because' | '  it was small.'",
]


def test_copa_en_task_check() -> None:
    res = bench("task", "check", str(COPA))
    assert res.exit_code == 0, res.output
    lines = res.output.splitlines()
    assert lines[0] == f"{COPA.resolve()}: task 'copa_en' (COPA (English)) is valid"
    assert "  candidates: 2; chance 50.0%" in lines
    assert "  split test: en:500" in lines and "  split validation: en:100" in lines
    start = lines.index(COPA_FIRST[0])
    assert lines[start + 1].startswith("  statements (6 template(s), ")  # 3 cause templates apply to item 0
    assert lines[start + 2:] == COPA_FIRST[1:]


def test_storycloze_en_task_check() -> None:
    res = bench("task", "check", str(STORYCLOZE))
    assert res.exit_code == 0, res.output
    lines = res.output.splitlines()
    assert lines[0] == f"{STORYCLOZE.resolve()}: task 'storycloze_en' (StoryCloze 2016 (English)) is valid"
    assert "  candidates: 2; chance 50.0%" in lines
    assert "  split test: en:1871" in lines and "  split validation: en:1871" in lines
    assert "first example storycloze_en/en/test/0 (gold 1: 'The next weekend, I was asked to please stay home.')" \
        in lines
    story = ('"My friends all love to go to the club to dance." "They think it\'s a lot of fun and always invite." '
             '"I finally decided to tag along last Saturday." "I danced terribly and broke a friend\'s toe." ')
    assert f'    [1] 1: {story}"The next weekend, I was asked to please stay home."' in lines


def test_list_tasks_with_include_path() -> None:
    res = bench("list", "tasks", "--include-path", str(TASKS_DIR))
    assert res.exit_code == 0, res.output
    assert "| copa_en       | test (default) |     1 |   500 | en:500" in res.output
    assert "| storycloze_en | test (default) |     1 |  1871 | en:1871" in res.output
    assert "copa_en (COPA (English); " in res.output and "chance 50.0%; licence BSD-2-Clause" in res.output
    assert "KEEP INTERNAL" in res.output


def test_sha256_in_task_files_matches_data() -> None:
    for task_file in (COPA, STORYCLOZE):
        files = data_files(task_file)
        assert set(files) == {"test", "validation"}
        for split, (path, sha) in files.items():
            assert hashlib.sha256(path.read_bytes()).hexdigest() == sha, f"{task_file.name} {split}"


def test_licence_notices_beside_the_data() -> None:
    copa = (TASKS_DIR / "data" / "copa_en")
    assert "BSD 2-Clause" in (copa / "LICENSE").read_text(encoding="utf-8")
    notice = (copa / "NOTICE.md").read_text(encoding="utf-8")
    assert "ef92deb6bbe55d5d4e49e64fed17f35f133f6030" in notice and "68f82e29e71a4e425069ff398a61387c24c0f30d" in notice
    story = (TASKS_DIR / "data" / "storycloze_en" / "NOTICE.md").read_text(encoding="utf-8")
    assert "INTERNAL USE ONLY" in story and "323e87d2a3abc49afda212bea4e49dacaa4e6e33" in story
    assert "internal" in task_doc(STORYCLOZE)["license"]


# -------------------------------------------------------------------------------- parity with lm-eval, per request




def lm_eval_task(config: str, rows: list[dict[str, Any]]) -> Any:
    """lm-eval's own task from its packaged YAML (lm_eval/tasks/<config>) over ``rows``."""
    import lm_eval

    return configurable_task(Path(lm_eval.__file__).parent / "tasks" / config, rows)


@pytest.mark.parametrize(("task_file", "config", "read_rows", "n"), [
    (COPA, "super_glue/copa/default.yaml", copa_rows, 500),  # the whole COPA test set
    (STORYCLOZE, "storycloze/storycloze_2016.yaml", storycloze_rows, N_PARITY),
], ids=["copa_en=copa", "storycloze_en=storycloze_2016"])
def test_requests_equal_lm_eval_per_request(quiet_lm_eval: None, task_file: Path, config: str,
                                            read_rows: Any, n: int) -> None:
    spec = next(s for s in load_registry([TASKS_DIR]).tasks.values() if s.path == task_file.resolve())
    ours = load_examples(spec, "en", "test", limit=n).examples
    rows = read_rows()[:n]
    lm_task = lm_eval_task(config, rows)
    docs = list(lm_task.eval_docs)
    assert len(docs) == len(ours) == n
    builder = LMEvalRequestBuilder({spec.name: spec})
    for example, doc in zip(ours, docs, strict=True):
        instances = lm_task.construct_requests(doc, lm_task.fewshot_context(doc, 0))
        _, requests = builder.build(example)
        assert [(r.context, r.continuation) for r in requests] == [tuple(i.arguments) for i in instances], \
            example.example_id
        choices = list(lm_task.doc_to_choice(doc))
        assert [r.choice for r in requests] == choices, example.example_id
        target = lm_task.doc_to_target(doc)  # copa: the gold choice's text; storycloze_2016: its index
        gold = choices.index(target) if isinstance(target, str) else int(target)  # as process_results reads it
        assert example.gold == gold, example.example_id


# ----------------------------------------------------------------------------------------------- broken copies

def broken_copy(tmp_path: Path) -> Path:
    """A writable copy of examples/tasks (task files, templates, data) under tmp_path."""
    dst = tmp_path / "tasks"
    shutil.copytree(TASKS_DIR, dst)
    for p in dst.rglob("*"):
        p.chmod(0o755 if p.is_dir() else 0o644)
    return dst


def rewrite_copa_rows(tasks: Path, change: Any, *, fix_sha: bool = True) -> Path:
    data = tasks / "data" / "copa_en" / "test.jsonl"
    rows = [json.loads(line) for line in data.read_text(encoding="utf-8").splitlines()]
    change(rows)
    data.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    task_file = tasks / "copa_en.yaml"
    if fix_sha:
        old = data_files(COPA)["test"][1]
        new = hashlib.sha256(data.read_bytes()).hexdigest()
        task_file.write_text(task_file.read_text(encoding="utf-8").replace(old, new), encoding="utf-8")
    return task_file


def _drop_premise(rows: list[dict[str, Any]]) -> None:
    del rows[3]["premise"]


def _gold_2(rows: list[dict[str, Any]]) -> None:
    rows[5]["label"] = 2


def _wrong_sha(tasks: Path) -> Path:
    return rewrite_copa_rows(tasks, lambda rows: rows[0].update(premise="Changed."), fix_sha=False)


def _missing_key(tasks: Path) -> Path:
    task_file = tasks / "copa_en.yaml"
    text = task_file.read_text(encoding="utf-8")
    assert "  gold: {field: label, as: index}" in text
    task_file.write_text(text.replace("  gold: {field: label, as: index}", ""), encoding="utf-8")
    return task_file


BROKEN = {  # case -> (make the copy broken, exit code, what the one line must name)
    "wrong-sha256": (_wrong_sha, 3, ["test.jsonl", "checksum mismatch", "copa_en.yaml"]),
    "missing-key": (_missing_key, 2, ["copa_en.yaml", "example.gold"]),
    "missing-field": (lambda t: rewrite_copa_rows(t, _drop_premise), 3, ["test.jsonl row 3", "'premise'"]),
    "gold-out-of-range": (lambda t: rewrite_copa_rows(t, _gold_2), 3, ["row 5", "test.jsonl", "'label'",
                                                                        "out of range"]),
}


@pytest.mark.parametrize("case", list(BROKEN))
def test_broken_copy_is_one_line_error_and_writes_nothing(tmp_path: Path, case: str) -> None:
    make, code, named = BROKEN[case]
    tasks = broken_copy(tmp_path)
    task_file = make(tasks)
    before = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*"))
    out = tmp_path / "results"
    for args in (["task", "check", str(task_file)],
                 ["run", "--include-path", str(tasks), "--tasks", "copa_en", "--backend", "fake", "--output",
                  str(out), "--quiet"]):
        res = bench(*args)
        assert res.exit_code == code, (args, res.output)
        lines = res.output.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: "), res.output
        for text in named:
            assert text in lines[0], (text, lines[0])
    assert not out.exists()
    assert sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*")) == before


# -------------------------------------------------------------------------------------------------- bench run

def test_run_fake_writes_title_and_chance(tmp_path: Path) -> None:
    res = bench("run", "--include-path", str(TASKS_DIR), "--tasks", "copa_en", "--backend", "fake", "--limit", "20",
                "--output", str(tmp_path), "--quiet")
    assert res.exit_code == 0, res.output
    (result_file,) = tmp_path.glob("*/result.json")
    task = json.loads(result_file.read_text(encoding="utf-8"))["tasks"]["copa_en"]
    assert task["title"] == "COPA (English)"
    assert task["chance"] == 50.0
    assert task["split"] == "test" and task["n_examples"] == 20
    en = task["languages"]["en"]
    assert en["data_source"] == "files"
    assert en["data_sha256"] == data_files(COPA)["test"][1]
    assert task["task_file"]["path"] == str(COPA.resolve())
