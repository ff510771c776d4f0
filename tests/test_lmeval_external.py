"""`bench run --lm-eval-task NAME`: lm-eval multiple_choice tasks as our Examples (`harness.lmeval.external`).

Offline: lm-eval's own configs over our packaged rows (`task_yaml.write_tasks`) and the tiny tasks under
``tests/fixtures/lmeval_tasks`` (their data_files are relative to the repository root, as lm-eval resolves them
against the working directory). Causal-LM requests are compared with the ones lm-eval itself builds
(``build_all_requests``), statements with the plain concatenation ``doc_to_text + target_delimiter + choice``.
"""

from __future__ import annotations

import json
import re
from collections import defaultdict
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from harness.cli import main
from harness.lmeval import task_yaml as ty
from harness.lmeval.external import TEMPLATE_ID, canonical_sha256, jsonable, load_lm_eval_tasks
from harness.results.schema import RunResult, read_result

pytest.importorskip("lm_eval")

ROOT = Path(__file__).resolve().parents[1]
FIXTURES = ROOT / "tests" / "fixtures" / "lmeval_tasks"
ARC, OPTIONS, WINO = "sb_test_arc_tiny", "sb_test_options_tiny", "sb_test_wino_tiny"
GENERATED_ROWS = 12  # rows per generated lm-eval task (its whole split)
LIMIT = 10
SLOW_LIMIT = 4  # examples per task with real models


@pytest.fixture(autouse=True)
def _at_root_with_private_cache(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """Run from the repository root; point the user's ``datasets`` cache at a folder that must stay empty."""
    import datasets.config

    monkeypatch.chdir(ROOT)
    home_cache = tmp_path / "home-datasets-cache"
    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", home_cache)
    return home_cache


@pytest.fixture(scope="module")
def generated(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """lm-eval's own xcopa_et and xnli_en configs over our first 12 packaged test rows."""
    out = tmp_path_factory.mktemp("lmeval-yaml")
    assert ty.write_tasks(out, "xcopa", ["et"], "test", GENERATED_ROWS) == ["sb_xcopa_et"]
    assert ty.write_tasks(out, "xnli", ["en"], "test", GENERATED_ROWS) == ["sb_xnli_en"]
    return out


def run(args: list[str]) -> Any:
    return CliRunner().invoke(main, args, catch_exceptions=False)


def bench(out: Path, *args: str) -> tuple[RunResult, dict[str, dict[str, Any]], str]:
    res = run(["run", "--quiet", "--output", str(out), *args])
    assert res.exit_code == 0, res.output
    (result_path,) = out.glob("*/result.json")
    samples = {}
    for line in (result_path.parent / "samples.jsonl").read_text(encoding="utf-8").splitlines():
        s = json.loads(line)
        samples[s["example_id"]] = s
    return read_result(result_path), samples, res.output


def by_index(samples: dict[str, dict[str, Any]], task: str) -> dict[int, dict[str, Any]]:
    return {s["index"]: s for s in samples.values() if s["task"] == task}


def one_line_error(res: Any, *needles: str) -> None:
    assert res.exit_code == 2, res.output
    lines = res.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), res.output
    for needle in needles:
        assert needle in lines[0], lines[0]


def lm_eval_tasks(include: Path, names: list[str]) -> dict[str, Any]:
    from lm_eval.tasks import TaskManager

    return TaskManager(include_path=str(include), include_defaults=False).load(names)["tasks"]


def lm_eval_requests(task: Any, limit: int | None) -> dict[int, list[list[str]]]:
    """What lm-eval itself sends for each doc: ``Instance.args`` of ``build_all_requests`` (zero-shot)."""
    task.build_all_requests(limit=limit)
    out: dict[int, list[list[str]]] = defaultdict(list)
    for inst in sorted(task.instances, key=lambda i: (i.doc_id, i.idx)):
        out[inst.doc_id].append(list(inst.args))
    return dict(out)


def lm_eval_statements(task: Any, doc: Any) -> list[str]:
    delim = task.config.target_delimiter
    if task.multiple_input:
        return [c + delim + str(task.doc_to_target(doc)) for c in task.doc_to_choice(doc)]
    return [task.doc_to_text(doc) + delim + c for c in task.doc_to_choice(doc)]


# ------------------------------------------------------------------ lm-eval's configs over our packaged data

def test_generated_tasks_causal_requests_equal_lm_eval_and_builtin(generated: Path, tmp_path: Path,
                                                                     _at_root_with_private_cache: Path) -> None:
    names = ["sb_xcopa_et", "sb_xnli_en"]
    result, samples, _ = bench(tmp_path / "ext", "--backend", "fake", "--prompt", "lm-eval", "--limit", str(LIMIT),
                               "--lm-eval-task", names[0], "--lm-eval-task", names[1], "--include-path",
                               str(generated))
    assert list(result.tasks) == names  # --lm-eval-task without --tasks: only the lm-eval tasks
    tasks = lm_eval_tasks(generated, names)
    for (name, builtin, lang), chance in zip([(names[0], "xcopa", "et"), (names[1], "xnli", "en")],
                                             (50.0, 100 / 3), strict=True):
        ours = by_index(samples, name)
        assert sorted(ours) == list(range(LIMIT))
        theirs = lm_eval_requests(tasks[name], LIMIT)
        assert {i: s["requests"] for i, s in ours.items()} == theirs  # lm-eval's exact Instance.args
        assert all(s["template_id"] == "lm-eval-0.4.13" and s["prediction_norm"] is not None for s in ours.values())
        # ... and our own built-in task's requests for the same rows
        _, own, _ = bench(tmp_path / builtin, "--backend", "fake", "--prompt", "lm-eval", "--tasks", builtin,
                          "--langs", lang, "--limit", str(LIMIT))
        own_by_index = by_index(own, builtin)
        assert {i: s["requests"] for i, s in ours.items()} == {i: s["requests"] for i, s in own_by_index.items()}
        assert {i: s["gold"] for i, s in ours.items()} == {i: s["gold"] for i, s in own_by_index.items()}
        # the run records the data: every doc of the split, as canonical JSON
        task = result.tasks[name]
        lr = task.languages["default"]
        docs = [jsonable(d) for d in tasks[name].eval_docs]
        assert (lr.n, lr.n_rows, lr.data_source) == (LIMIT, GENERATED_ROWS, "lm-eval")
        assert lr.data_location == f"lm-eval:{name}/test" and lr.data_sha256 == canonical_sha256(docs)
        assert task.chance == pytest.approx(chance) and task.title == name and task.split == "test"
        assert task.task_file is not None and task.task_file["path"].endswith(f"{name}.yaml")
    assert not _at_root_with_private_cache.exists()  # generated tasks carry their own cache_dir


def test_generated_tasks_statements_are_the_concatenation(generated: Path, tmp_path: Path) -> None:
    names = ["sb_xcopa_et", "sb_xnli_en"]
    args = ["--backend", "fake", "--limit", str(LIMIT), "--lm-eval-task", names[0], "--lm-eval-task", names[1],
            "--include-path", str(generated)]
    result, samples, _ = bench(tmp_path, *args)
    tasks = lm_eval_tasks(generated, names)
    for name in names:
        task = tasks[name]
        ours = by_index(samples, name)
        for i, doc in enumerate(list(task.eval_docs)[:LIMIT]):
            assert ours[i]["requests"] == lm_eval_statements(task, doc)
            assert ours[i]["template_id"] == TEMPLATE_ID
        assert result.tasks[name].templates["ids"] == [TEMPLATE_ID]
        assert result.tasks[name].templates["path"] == f"lm-eval:{name}"
    first = by_index(samples, "sb_xcopa_et")[0]["requests"]
    assert first == ["Ese oli mullikilesse mässitud sest see oli õrn.",
                     "Ese oli mullikilesse mässitud sest see oli väike."]
    # same command, same run: nothing is scored again
    res = run(["run", "--quiet", "--output", str(tmp_path), *args])
    assert res.exit_code == 0 and f"scored 0 examples now, {2 * LIMIT} resumed" in res.output, res.output
    assert len(list(tmp_path.glob("*/result.json"))) == 1


# ----------------------------------------------------------------------------------------- fixture tasks

def test_four_choice_fixture_end_to_end(tmp_path: Path, _at_root_with_private_cache: Path) -> None:
    rows = [json.loads(line) for line in (FIXTURES / "arc_tiny.jsonl").read_text(encoding="utf-8").splitlines()]
    gold = ["ABCD".index(r["answerKey"]) for r in rows]
    # statements, fake model `length` (score = len(statement)): the prediction is the longest statement
    result, samples, output = bench(tmp_path / "enc", "--backend", "fake", "--model", "length", "--lm-eval-task",
                                    ARC, "--include-path", str(FIXTURES))
    # log-likelihood requests: lm-eval's own, acc_norm on the doc_to_choice strings
    result_ll, samples_ll, _ = bench(tmp_path / "ll", "--backend", "fake", "--prompt", "lm-eval", "--lm-eval-task",
                                     ARC, "--include-path", str(FIXTURES))
    assert not _at_root_with_private_cache.exists()  # local data: the datasets cache is a temporary folder
    task = lm_eval_tasks(FIXTURES, [ARC])[ARC]
    ours = by_index(samples, ARC)
    assert sorted(ours) == list(range(len(rows)))
    correct = 0
    for i, doc in enumerate(task.eval_docs):
        statements = lm_eval_statements(task, doc)
        assert len(statements) == 4 and ours[i]["requests"] == statements
        assert statements[0] == f"Question: {rows[i]['question']}\nAnswer: {rows[i]['choices']['text'][0]}"
        assert ours[i]["gold"] == gold[i]
        lengths = [len(s) for s in statements]
        longest = lengths.index(max(lengths))  # the first maximum, as argmax
        assert ours[i]["prediction"] == longest
        correct += longest == gold[i]
    arc = result.tasks[ARC]
    assert arc.chance == 25.0 and arc.languages["default"].n == len(rows)
    assert arc.mean_accuracy == pytest.approx(correct / len(rows))
    assert re.search(rf"\| default +\| +{100 * correct / len(rows):.1f} \({len(rows)}\) \|", output), output
    ours = by_index(samples_ll, ARC)
    assert {i: s["requests"] for i, s in ours.items()} == lm_eval_requests(task, None)
    for i, s in ours.items():
        lengths = [len(c) for c in rows[i]["choices"]["text"]]
        norm = [v / n for v, n in zip(s["scores"], lengths, strict=True)]
        assert s["prediction_norm"] == norm.index(max(norm))
    assert result_ll.tasks[ARC].mean_acc_norm is not None


def test_field_choices_language_and_split(tmp_path: Path) -> None:
    result, samples, _ = bench(tmp_path / "test", "--backend", "fake", "--lm-eval-task", OPTIONS, "--include-path",
                               str(FIXTURES))
    rows = [json.loads(line) for line in (FIXTURES / "options_tiny.jsonl").read_text(encoding="utf-8").splitlines()]
    ours = by_index(samples, OPTIONS)
    for i, row in enumerate(rows):
        assert ours[i]["requests"] == [f"{row['stem']}: {o}" for o in row["options"]]  # target_delimiter ": "
        assert ours[i]["gold"] == row["label"] and ours[i]["language"] == "en"  # metadata.language
    task = result.tasks[OPTIONS]
    assert list(task.languages) == ["en"]
    assert task.chance == pytest.approx(sum(100 / len(r["options"]) for r in rows) / len(rows))  # varies per doc
    result, samples, _ = bench(tmp_path / "val", "--backend", "fake", "--lm-eval-task", OPTIONS, "--split",
                               "validation", "--include-path", str(FIXTURES))
    assert result.tasks[OPTIONS].split == "validation" and len(samples) == 2
    assert all(s["split"] == "validation" for s in samples.values())
    one_line_error(run(["run", "--backend", "fake", "--lm-eval-task", OPTIONS, "--split", "train", "--include-path",
                        str(FIXTURES), "--output", str(tmp_path / "x")]), "--split train", OPTIONS,
                   "test, validation")


def test_multiple_input_fixture(tmp_path: Path) -> None:
    task = lm_eval_tasks(FIXTURES, [WINO])[WINO]
    assert task.multiple_input == 2
    _, statements, _ = bench(tmp_path / "enc", "--backend", "fake", "--lm-eval-task", WINO, "--include-path",
                             str(FIXTURES))
    _, requests, _ = bench(tmp_path / "ll", "--backend", "fake", "--prompt", "lm-eval", "--lm-eval-task", WINO,
                           "--include-path", str(FIXTURES))
    expected = lm_eval_requests(task, None)
    for i, doc in enumerate(task.eval_docs):
        s = by_index(statements, WINO)[i]
        assert s["requests"] == lm_eval_statements(task, doc)  # choice (a context) + delimiter + shared target
        assert s["gold"] == int(doc["answer"]) - 1
        assert by_index(requests, WINO)[i]["requests"] == expected[i]
    assert by_index(statements, WINO)[0]["requests"][1] == ("The trophy doesn't fit into the brown suitcase "
                                                            "because the suitcase is too large.")


def test_examples_carry_json_docs_and_stable_templates() -> None:
    first = load_lm_eval_tasks([ARC, WINO], [str(FIXTURES)], limit=3)
    again = load_lm_eval_tasks([ARC], [str(FIXTURES / "arc_tiny.yaml")], limit=3)  # a YAML file as include path
    arc = first[0]
    assert [e.name for e in first] == [ARC, WINO] and arc.example_set.n_rows == 8
    assert len(arc.example_set.examples) == 3 and arc.spec.chance is None  # chance from the candidates
    ex = arc.example_set.examples[0]
    assert json.loads(json.dumps(ex.doc)) == ex.doc and ex.doc["answerKey"] == "B" and ex.gold == 1
    assert ex.candidates == ("oxygen", "carbon dioxide", "nitrogen", "helium")
    assert arc.templates.sha256 == again[0].templates.sha256  # the run identity does not depend on where it lives
    assert arc.example_set.rowset.sha256 == again[0].example_set.rowset.sha256
    assert arc.templates.templates[0].text == "{context} {choice}"
    assert first[1].templates.templates[0].text == "{choice} {target}"


# --------------------------------------------------------------------------------------------- refusals

def test_generate_until_task_refused_in_one_line(tmp_path: Path) -> None:
    res = run(["run", "--backend", "fake", "--lm-eval-task", "sb_test_gen_tiny", "--include-path", str(FIXTURES),
               "--output", str(tmp_path)])
    one_line_error(res, "sb_test_gen_tiny", "generate_until", "multiple_choice")
    assert not list(tmp_path.iterdir())


@pytest.mark.parametrize(("name", "kind"), [("sb_test_tiny_group", "group"), ("sb_test_tiny_tag", "tag")])
def test_groups_and_tags_refused(tmp_path: Path, name: str, kind: str) -> None:
    res = run(["run", "--backend", "fake", "--lm-eval-task", name, "--include-path", str(FIXTURES), "--output",
               str(tmp_path)])
    one_line_error(res, name, f"lm-eval {kind}", "one by one")


def test_mixed_with_builtin_tasks_and_langs(tmp_path: Path) -> None:
    result, samples, _ = bench(tmp_path / "mix", "--backend", "fake", "--tasks", "xcopa", "--langs", "et,default",
                               "--limit", "3", "--lm-eval-task", ARC, "--include-path", str(FIXTURES))
    assert list(result.tasks) == ["xcopa", ARC] and len(samples) == 6
    base = ["run", "--backend", "fake", "--include-path", str(FIXTURES), "--output", str(tmp_path / "x")]
    one_line_error(run([*base, "--tasks", "xcopa", "--langs", "et", "--lm-eval-task", ARC]), ARC,
                   "'default' is not in --langs")
    one_line_error(run([*base, "--backend", "lm-eval", "--lm-eval-task", ARC]), "--backend lm-eval")


# ------------------------------------------------------------------------------------------ real models




@pytest.mark.slow
def test_shipped_encoder_and_causal_lm_on_lm_eval_tasks(generated: Path, tmp_path: Path, threads: int) -> None:
    """The shipped encoder and SmolLM2-135M on lm-eval's xnli_en (our rows) and the 4-choice fixture."""
    names = ["sb_xnli_en", ARC]
    common = ["--lm-eval-task", names[0], "--lm-eval-task", names[1], "--include-path", str(generated),
              "--include-path", str(FIXTURES), "--limit", str(SLOW_LIMIT), "--device", "cpu", "--dtype", "fp32",
              "--threads", str(threads)]
    enc, enc_samples, enc_out = bench(tmp_path / "enc", "--backend", "encoder", *common)
    assert enc.model["model"] == "me5-small-st"
    hf, hf_samples, hf_out = bench(tmp_path / "hf", "--backend", "hf", "--model", "smollm2-135m", *common)
    print(enc_out, hf_out)
    tasks = lm_eval_tasks(generated, [names[0]]) | lm_eval_tasks(FIXTURES, [names[1]])
    for name in names:
        expected = lm_eval_requests(tasks[name], SLOW_LIMIT)
        assert {i: s["requests"] for i, s in by_index(hf_samples, name).items()} == expected
        for i, doc in enumerate(list(tasks[name].eval_docs)[:SLOW_LIMIT]):
            assert by_index(enc_samples, name)[i]["requests"] == lm_eval_statements(tasks[name], doc)
        for r in (enc, hf):
            assert r.tasks[name].languages["default"].n == SLOW_LIMIT
            assert 0.0 <= r.tasks[name].mean_accuracy <= 1.0


@pytest.mark.slow
def test_real_registry_refusals(tmp_path: Path) -> None:
    """lm-eval's own registry (~15k YAMLs indexed): a generate_until task and an unknown name, before any data."""
    one_line_error(run(["run", "--backend", "fake", "--lm-eval-task", "gsm8k", "--output", str(tmp_path)]),
                   "gsm8k", "generate_until")
    one_line_error(run(["run", "--backend", "fake", "--lm-eval-task", "no_such_task_xyz", "--output",
                        str(tmp_path)]), "no_such_task_xyz", "has no task")
