"""Task files: one YAML file per task, loaded from --include-path, with one-line errors naming file and key."""

from __future__ import annotations

import gzip
import hashlib
import json
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from harness.cli import main
from harness.errors import DataError, UsageError
from harness.prompts.lm_eval_prompts import LMEvalRequestBuilder
from harness.statement.templates import task_templates
from harness.statement.verbalizer import StatementRequestBuilder
from harness.tasks.examples import load_examples
from harness.tasks.registry import BUILTIN_DIR, load_registry
from harness.tasks.taskfile import parse_task_file

ROWS = [
    {"q": "The sky is", "a": "blue", "b": "green", "c": "red", "gold": "1"},
    {"q": "Grass is", "a": "blue", "b": "green", "c": "red", "gold": "2"},
    {"q": "Blood is", "a": "blue", "b": "green", "c": "red", "gold": "3"},
]

TASK = """\
task: colours
title: Colours (toy)
languages: [en]
splits:
  test:
    rows: 3
    files: {{path: {file}, sha256: {sha}}}
schema: {{q: str, a: str, b: str, c: str, gold: int}}
example:
  fields: {{question: q}}
  candidates: [a, b, c]
  gold: {{field: gold, as: index1}}
statements:
  candidate_slot: colour
  templates:
    - {{id: plain, text: "{{question}} {{colour}}."}}
    - {{id: quoted, text: '"{{question}}" -> "{{colour}}"'}}
lm_eval:
  doc_to_text: "Q: {{{{q}}}}"
  doc_to_choice: "{{{{[a, b, c]}}}}"
  target_delimiter: " A: "
license: CC0
"""


def _write_task(tmp_path: Path, data: bytes, name: str = "colours.jsonl", **subs: str) -> Path:
    (tmp_path / name).write_bytes(data)
    text = TASK.format(file=name, sha=subs.pop("sha", hashlib.sha256(data).hexdigest()))
    for old, new in subs.items():
        text = text.replace(old, new)
    path = tmp_path / "colours.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def _jsonl(rows: list[dict[str, Any]]) -> bytes:
    return "".join(json.dumps(r) + "\n" for r in rows).encode()


def test_builtin_task_files_define_the_four_tasks() -> None:
    registry = load_registry()
    assert registry.builtin == ("xcopa", "xnli", "xstorycloze", "xwinograd")
    xnli = registry.get("xnli")
    assert (xnli.title, xnli.n_candidates, round(xnli.chance or 0, 3)) == ("XNLI", 3, 33.333)
    assert registry.get("xwinograd").rows("test", "zh") == 16
    assert all(spec.path is not None and spec.path.parent == BUILTIN_DIR for spec in registry.tasks.values())


def test_user_task_end_to_end(tmp_path: Path) -> None:
    spec = parse_task_file(_write_task(tmp_path, _jsonl(ROWS)))
    assert (spec.name, spec.n_candidates, spec.chance) == ("colours", 3, pytest.approx(100 / 3))
    es = load_examples(spec, "en")
    assert [ex.gold for ex in es.examples] == [0, 1, 2]
    assert es.rowset.source == "files" and es.rowset.sha256 == hashlib.sha256(_jsonl(ROWS)).hexdigest()
    ex = es.examples[0]
    _, statements = StatementRequestBuilder({"colours": task_templates(spec)}, seed=0).build(ex)
    assert [r.text for r in statements] in (["The sky is blue.", "The sky is green.", "The sky is red."],
                                            ['"The sky is" -> "blue"', '"The sky is" -> "green"',
                                             '"The sky is" -> "red"'])
    _, requests = LMEvalRequestBuilder({"colours": spec}).build(ex)
    assert [(r.context, r.continuation, r.choice) for r in requests] == [  # type: ignore[union-attr]
        ("Q: The sky is", " A: blue", "blue"), ("Q: The sky is", " A: green", "green"),
        ("Q: The sky is", " A: red", "red")]


@pytest.mark.parametrize("fmt", ["csv", "tsv", "json", "jsonl.gz", "parquet"])
def test_local_file_formats(tmp_path: Path, fmt: str) -> None:
    if fmt == "csv":
        data = ("q,a,b,c,gold\n" + "".join(f"{r['q']},{r['a']},{r['b']},{r['c']},{r['gold']}\n"
                                          for r in ROWS)).encode()
    elif fmt == "tsv":
        data = ("q\ta\tb\tc\tgold\n" + "".join("\t".join(r.values()) + "\n" for r in ROWS)).encode()
    elif fmt == "json":
        data = json.dumps(ROWS).encode()
    elif fmt == "jsonl.gz":
        data = gzip.compress(_jsonl(ROWS), mtime=0)
    else:
        import io

        import pandas as pd

        buf = io.BytesIO()
        pd.DataFrame(ROWS).to_parquet(buf)
        data = buf.getvalue()
    spec = parse_task_file(_write_task(tmp_path, data, name=f"colours.{fmt}"))
    es = load_examples(spec, "en")
    assert [(ex.fields["question"], ex.candidates, ex.gold) for ex in es.examples] == [
        (r["q"], ("blue", "green", "red"), i) for i, r in enumerate(ROWS)]
    assert es.examples[0].doc["gold"] == 1  # typed by the schema (CSV/TSV give text)


def test_hub_task_offline_from_a_local_mirror(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import datasets

    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", tmp_path / "hf-cache")
    mirror = tmp_path / "mirror" / "someone" / "colours"  # no config: the split files sit at the top
    mirror.mkdir(parents=True)
    (mirror / "test.jsonl").write_bytes(_jsonl(ROWS))
    path = _write_task(tmp_path, _jsonl(ROWS), **{"    files: {path: colours.jsonl, sha256: "
                                                  + hashlib.sha256(_jsonl(ROWS)).hexdigest() + "}\n": "",
                                                  "license: CC0": "license: CC0\ndata: hub\n"
                                                  "hub: {path: someone/colours, split: '{split}'}"})
    spec = parse_task_file(path)
    es = load_examples(spec, "en", hub_dir=str(tmp_path / "mirror"))
    assert es.rowset.source == "hub" and [ex.gold for ex in es.examples] == [0, 1, 2]


@pytest.mark.parametrize(("change", "message"), [
    ({"sha": "0" * 64}, r"colours.jsonl: checksum mismatch \(task file .*colours.yaml says 000000000000"),
    ({'"q": "Grass is", ': ""}, r"colours.jsonl row 1: missing field 'q'"),
    ({'"gold": "3"': '"gold": "4"'}, r"colours/en/test row 2 .*: field 'gold' label 4 \(1-based\) is out of range"),
])
def test_bad_data_is_one_line_naming_file_and_row(tmp_path: Path, change: dict[str, str], message: str) -> None:
    sha = change.pop("sha", None)
    data = _jsonl(ROWS).decode()
    for old, new in change.items():
        data = data.replace(old, new)
    path = _write_task(tmp_path, data.encode(), **({"sha": sha} if sha else {}))
    with pytest.raises(DataError, match=message) as err:
        load_examples(parse_task_file(path), "en")
    assert "\n" not in str(err.value)


@pytest.mark.parametrize(("old", "new", "message"), [
    ("languages: [en]", "languages: en", r"colours.yaml: languages: needs a non-empty list"),
    ("as: index1", "as: ordinal", r"colours.yaml: example.gold.as: 'ordinal': choose one of"),
    ("candidates: [a, b, c]", "candidates: [a, b, x]", r"colours.yaml: example.candidates: 'x' is not a schema field"),
    ("license: CC0", "license: CC0\nlicence: typo", r"colours.yaml: licence: unknown key"),
    ("{question} {colour}.", "{question} {colour} {nope}.",
     r"colours.yaml: statements: template 'plain' uses unknown slot\(s\) \['nope'\]"),
    ("task: colours", "task: colours\nformat: 9", r"colours.yaml: format: 9 is not 1"),
    ("sha256: ", "sha256: abc", r"colours.yaml: splits.test.files.sha256: needs 64 lower-case hex digits"),
])
def test_bad_task_file_is_one_line_naming_file_and_key(tmp_path: Path, old: str, new: str, message: str) -> None:
    path = _write_task(tmp_path, _jsonl(ROWS))
    text = path.read_text(encoding="utf-8")
    assert old in text
    if old == "sha256: ":
        text = text.replace(hashlib.sha256(_jsonl(ROWS)).hexdigest(), "")
    path.write_text(text.replace(old, new, 1), encoding="utf-8")
    with pytest.raises(UsageError, match=message) as err:
        task_templates(parse_task_file(path))
    assert "\n" not in str(err.value)


def test_cli_include_path_list_check_and_run(tmp_path: Path) -> None:
    tasks = tmp_path / "tasks"
    tasks.mkdir()
    _write_task(tasks, _jsonl(ROWS))
    runner = CliRunner()
    listed = runner.invoke(main, ["list", "tasks", "--include-path", str(tasks)])
    assert listed.exit_code == 0, listed.output
    assert "| colours     | test (default) |     1 |     3 | en:3" in listed.output
    assert "colours (Colours (toy);" in listed.output and "chance 33.3%" in listed.output
    checked = runner.invoke(main, ["task", "check", str(tasks / "colours.yaml")])
    assert checked.exit_code == 0, checked.output
    assert "task 'colours' (Colours (toy)) is valid" in checked.output
    assert "[plain] 0: The sky is blue." in checked.output
    assert "0: 'Q: The sky is' | ' A: blue'" in checked.output
    out = tmp_path / "results"
    ran = runner.invoke(main, ["run", "--backend", "fake", "--include-path", str(tasks), "--tasks", "colours",
                               "--output", str(out), "--quiet"])
    assert ran.exit_code == 0, ran.output
    result = json.loads(next(out.glob("*/result.json")).read_text(encoding="utf-8"))
    task = result["tasks"]["colours"]
    assert (task["title"], round(task["chance"], 2), task["languages"]["en"]["n"]) == ("Colours (toy)", 33.33, 3)
    assert task["task_file"]["sha256"] == hashlib.sha256((tasks / "colours.yaml").read_bytes()).hexdigest()
    unknown = runner.invoke(main, ["run", "--backend", "fake", "--tasks", "colours", "--output", str(out)])
    assert unknown.exit_code == 2 and "unknown task 'colours'" in unknown.output and "--include-path" in unknown.output


def test_cli_bad_task_file_writes_nothing(tmp_path: Path) -> None:
    tasks = tmp_path / "tasks"
    tasks.mkdir()
    path = _write_task(tasks, _jsonl(ROWS), sha="1" * 64)
    out = tmp_path / "results"
    runner = CliRunner()
    ran = runner.invoke(main, ["run", "--backend", "fake", "--include-path", str(tasks), "--tasks", "colours",
                               "--output", str(out)])
    assert ran.exit_code == 3 and "checksum mismatch" in ran.output
    assert len(ran.output.strip().splitlines()) == 1 and not out.exists()
    path.write_text(path.read_text(encoding="utf-8").replace("languages: [en]", "languages: []"), encoding="utf-8")
    checked = runner.invoke(main, ["task", "check", str(path)])
    assert checked.exit_code == 2 and "colours.yaml: languages: needs a non-empty list" in checked.output
    clash = tmp_path / "clash"
    clash.mkdir()
    (clash / "xnli.yaml").write_text((BUILTIN_DIR / "xnli.yaml").read_text(encoding="utf-8"), encoding="utf-8")
    listed = runner.invoke(main, ["list", "tasks", "--include-path", str(clash)])
    assert listed.exit_code == 2 and "task 'xnli' is already defined by" in listed.output


def test_function_escape_hatch_and_variant_file(tmp_path: Path) -> None:
    (tmp_path / "prompts.py").write_text(
        "def text(doc):\n    return doc['q'].upper()\n\n"
        "def choices(doc):\n    return [doc['a'], doc['b'], doc['c']]\n", encoding="utf-8")
    fixes = json.dumps({"test": ["The SKY is", "GRASS is", "BLOOD is"]}).encode()
    (tmp_path / "fixes.json").write_bytes(fixes)
    path = _write_task(tmp_path, _jsonl([{**r, "i": i} for i, r in enumerate(ROWS)]), **{
        'doc_to_text: "Q: {{q}}"': "doc_to_text: !function prompts.text",
        'doc_to_choice: "{{[a, b, c]}}"': "doc_to_choice: !function prompts.choices",
        "gold: int}": "gold: int, i: int}",
        "license: CC0": "license: CC0\nvariants:\n  q-source:\n    field: q\n    default: own\n    choices:\n"
                        "      own: null\n"
                        f"      fixed: {{file: fixes.json, sha256: {hashlib.sha256(fixes).hexdigest()}, by: i}}"})
    spec = parse_task_file(path)
    fixed = load_examples(spec, "en", options={"q-source": "fixed"}).examples[1]
    assert fixed.fields["question"] == "GRASS is"
    _, requests = LMEvalRequestBuilder({"colours": spec}).build(load_examples(spec, "en").examples[1])
    assert [r.context for r in requests] == ["GRASS IS"] * 3  # type: ignore[union-attr]
    with pytest.raises(UsageError, match="--task-option q-source=bad: choose one of own, fixed"):
        load_examples(spec, "en", options={"q-source": "bad"})


def test_efficiency_reads_a_user_task(tmp_path: Path) -> None:
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has a CUDA device")
    from harness.results.schema import read_result

    tasks = tmp_path / "tasks"
    tasks.mkdir()
    _write_task(tasks, _jsonl(ROWS))
    out = tmp_path / "eff"
    args = ["efficiency", "--gpu", "a100", "--estimate", "--weights", "random", "--models", "mdeberta-v3-base",
            "--tasks", "colours", "--include-path", str(tasks), "--output", str(out)]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    record = read_result(next(out.rglob("result.json"))).efficiency
    assert record is not None
    workload = record["workload"]
    assert (workload["tasks"], workload["n_examples"], workload["n_rows"]) == (["colours"], 3, 9)


def test_editing_a_user_task_file_starts_a_new_run(tmp_path: Path) -> None:
    tasks = tmp_path / "tasks"
    tasks.mkdir()
    path = _write_task(tasks, _jsonl(ROWS))
    out = tmp_path / "results"
    args = ["run", "--backend", "fake", "--include-path", str(tasks), "--tasks", "colours", "--output", str(out),
            "--quiet"]
    first = CliRunner().invoke(main, args)
    path.write_text(path.read_text(encoding="utf-8").replace("candidates: [a, b, c]", "candidates: [c, b, a]"),
                    encoding="utf-8")
    second = CliRunner().invoke(main, args)
    assert first.exit_code == second.exit_code == 0, second.output
    assert "scored 3 examples now, 0 resumed" in second.output
    assert len(list(out.glob("*/result.json"))) == 2
