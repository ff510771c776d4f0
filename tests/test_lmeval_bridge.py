"""harness.lmeval: task YAMLs from our packaged data load in lm-eval offline, the bridge converts lm-eval's
logged samples into Samples, and a missing lm-eval is a one-line error.

The end-to-end test runs lm-eval's simple_evaluate on smollm2-135m (slow: seconds; it still runs in CI).
"""

from __future__ import annotations

import functools
import importlib.util
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from harness.backends.base import BackendConfig
from harness.core import Example
from harness.errors import ScoreError, UsageError
from harness.tasks import loading
from harness.tasks.examples import load_examples
from harness.tasks.registry import load_registry

pytest.importorskip("lm_eval")

from harness.lmeval import task_yaml as ty
from harness.lmeval.bridge import LMEvalBackend, convert_sample

SPLITS = {"xcopa": "test", "xnli": "test", "xstorycloze": "eval", "xwinograd": "test"}
# task -> languages checked in the fast YAML test (every language is covered by the parity test)
LANGS = {"xcopa": ["et", "zh"], "xnli": ["en", "ar"], "xstorycloze": ["en", "my"], "xwinograd": ["en", "jp"]}
# keys our YAML replaces (data location) or changes (metric_list gains acc_norm)
CHANGED = {"task", "dataset_path", "dataset_name", "dataset_kwargs", "training_split", "validation_split",
           "test_split", "fewshot_split", "metric_list"}


@pytest.fixture(scope="module")
def task_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("lmeval_tasks")
    for task, langs in LANGS.items():
        ty.write_tasks(out, task, langs, SPLITS[task], limit=3)
    return out


@pytest.fixture(scope="module")
def manager(task_dir: Path) -> Any:
    from lm_eval.tasks import TaskManager

    return TaskManager(include_path=str(task_dir), include_defaults=False)


def test_task_names_and_files(task_dir: Path) -> None:
    for task, langs in LANGS.items():
        for lang in langs:
            assert (task_dir / task / f"sb_{task}_{lang}.yaml").is_file()
    assert ty.task_name("xcopa", "et") == "sb_xcopa_et"
    assert ty.parse_task_name("sb_xstorycloze_en") == ("xstorycloze", "en")
    with pytest.raises(ValueError):
        ty.parse_task_name("xcopa_et")
    with pytest.raises(UsageError):
        ty.write_tasks(task_dir, "xcopa", ["en"], "test", 3)  # xcopa has no English
    with pytest.raises(UsageError):
        ty.write_tasks(task_dir, "xcopa", ["et"], "train", 3)


def _same(a: Any, b: Any) -> bool:
    """Equal values; functions (and partials) are equal when they are the same code with the same arguments
    (lm-eval may load its task module twice, so the objects differ)."""
    if isinstance(a, functools.partial) and isinstance(b, functools.partial):
        return _same(a.func, b.func) and a.args == b.args and a.keywords == b.keywords
    if callable(a) and callable(b):
        return bool(a.__code__.co_filename == b.__code__.co_filename and a.__qualname__ == b.__qualname__)
    return bool(a == b)


def test_yaml_is_lm_evals_config_with_local_data(task_dir: Path) -> None:
    """Loaded by lm-eval's own YAML loader, every key but the data location equals lm-eval's config."""
    from lm_eval.tasks._yaml_loader import load_yaml

    for task, langs in LANGS.items():
        for lang in langs:
            ours = load_yaml(task_dir / task / f"sb_{task}_{lang}.yaml")
            upstream = load_yaml(ty.upstream_config_path(task, lang))
            for key in (set(ours) | set(upstream)) - CHANGED:
                assert _same(ours.get(key), upstream.get(key)), (task, lang, key)
            assert ours["task"] == f"sb_{task}_{lang}"
            assert ours["dataset_path"] == "json"
            split = SPLITS[task]
            assert ours["test_split"] == split
            assert ours["training_split"] is None and ours["validation_split"] is None
            data_file = Path(ours["dataset_kwargs"]["data_files"][split])
            assert data_file.is_absolute() and data_file.is_file()
            metrics = [m["metric"] for m in ours["metric_list"]]
            assert metrics[: len(upstream["metric_list"])] == [m["metric"] for m in upstream["metric_list"]]
            assert "acc_norm" in metrics


def test_task_manager_loads_offline(manager: Any) -> None:
    names = [ty.task_name(t, lang) for t, langs in LANGS.items() for lang in langs]
    assert set(names) <= set(manager.all_tasks)
    loaded = manager.load(names)["tasks"]
    assert set(loaded) == set(names)
    for name in names:
        task, lang = ty.parse_task_name(name)
        docs = list(loaded[name].test_docs())
        rows = loading.load_rows(task, lang, SPLITS[task]).rows[:3]
        assert len(docs) == 3
        # exactly the Hub schema lm-eval's config reads (no extra packaged fields, same types)
        assert docs == [{k: r[k] for k in loading.schema_of(task)} for r in rows]
    winograd = list(loaded["sb_xwinograd_en"].test_docs())
    assert all(isinstance(d["answer"], str) and d["answer"] in ("1", "2") for d in winograd)
    story = list(loaded["sb_xstorycloze_en"].test_docs())
    assert all(isinstance(d["answer_right_ending"], int) for d in story)


def test_prompts_come_from_lm_evals_functions(manager: Any) -> None:
    from lm_eval.tasks.xcopa import utils as xcopa_utils

    task = manager.load(["sb_xcopa_et"])["tasks"]["sb_xcopa_et"]
    doc = next(iter(task.test_docs()))
    assert task.doc_to_text(doc) == xcopa_utils.doc_to_text_et(doc)
    assert task.doc_to_choice(doc) == xcopa_utils.doc_to_choice(doc)


def test_to_lmeval_doc_types() -> None:
    row = {"sentence": "A _ b.", "option1": "x", "option2": "y", "answer": 2, "source": "wsc"}
    assert ty.to_lmeval_doc("xwinograd", row) == {"sentence": "A _ b.", "option1": "x", "option2": "y",
                                                  "answer": "2"}
    from harness.errors import DataError

    with pytest.raises(DataError):
        ty.to_lmeval_doc("xnli", {"premise": "p", "hypothesis": "h", "label": "0"})
    with pytest.raises(DataError):
        ty.to_lmeval_doc("xnli", {"premise": "p", "label": 0})


# ------------------------------------------------------------------------------------- conversion (no model)

class _FakeTask:
    """The three ConfigurableTask methods convert_sample uses, for a 2-choice task."""

    multiple_input = False

    class config:
        task = "sb_xcopa_et"

    def doc_to_choice(self, doc: dict[str, Any]) -> list[str]:
        return ["a", "bbbb"]

    def doc_to_target(self, doc: dict[str, Any]) -> int:
        return int(doc["label"])

    def doc_to_text(self, doc: dict[str, Any]) -> str:
        return "ctx"


def _example(gold: int) -> Example:
    return Example("xcopa", "et", "test", 4, {"premise": "p", "question": "cause"}, ("A", "Bbbb"), gold)


def _entry(label: int, lls: tuple[float, float], acc: float, acc_norm: float) -> dict[str, Any]:
    return {"doc_id": 0, "doc": {"label": label}, "arguments": [("ctx", " a"), ("ctx", " bbbb")],
            "filtered_resps": [[lls[0], False], [lls[1], True]], "acc": acc, "acc_norm": acc_norm}


def test_convert_sample_fields() -> None:
    # ll -2 vs -3: acc predicts 0; per character -2/1 vs -3/4: acc_norm predicts 1
    s = convert_sample(_FakeTask(), "sb_xcopa_et", _example(1), _entry(1, (-2.0, -3.0), 0.0, 1.0))
    assert s.example_id == "xcopa/et/test/4" and s.index == 4
    assert s.requests == (("ctx", " a"), ("ctx", " bbbb"))
    assert s.scores == (-2.0, -3.0)
    assert (s.prediction, s.prediction_norm, s.gold) == (0, 1, 1)
    assert s.extra["acc_norm_prediction"] == 1
    assert s.extra["greedy"] == [False, True]
    assert s.extra["lm_eval_task"] == "sb_xcopa_et"
    assert s.template_id == "lm-eval-0.4.13"


def test_convert_sample_checks() -> None:
    with pytest.raises(ScoreError, match="gold"):
        convert_sample(_FakeTask(), "sb_xcopa_et", _example(0), _entry(1, (-2.0, -3.0), 0.0, 1.0))
    with pytest.raises(ScoreError, match="acc="):
        convert_sample(_FakeTask(), "sb_xcopa_et", _example(1), _entry(1, (-2.0, -3.0), 1.0, 1.0))
    with pytest.raises(ScoreError, match="non-finite"):
        convert_sample(_FakeTask(), "sb_xcopa_et", _example(1), _entry(1, (float("nan"), -3.0), 0.0, 1.0))


# ------------------------------------------------------------------------------------------- lm-eval missing

def test_missing_lm_eval_is_one_line_usage_error(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    real = importlib.util.find_spec

    def fake_find_spec(name: str, *args: Any, **kwargs: Any) -> Any:
        if name == "lm_eval" or name.startswith("lm_eval."):
            return None
        return real(name, *args, **kwargs)

    monkeypatch.setattr(importlib.util, "find_spec", fake_find_spec)
    for call in (lambda: LMEvalBackend(BackendConfig(model="smollm2-135m")),
                 lambda: ty.write_tasks(tmp_path, "xcopa", ["et"], "test", 2)):
        with pytest.raises(UsageError) as info:
            call()
        message = str(info.value)
        assert "\n" not in message
        assert "pip install 'statement-bench[lmeval]'" in message


def test_importing_the_bridge_does_not_import_lm_eval() -> None:
    import subprocess
    import sys

    code = ("import sys, harness.lmeval.bridge, harness.lmeval.task_yaml; "
            "sys.exit(1 if any(m == 'lm_eval' or m.startswith('lm_eval.') for m in sys.modules) else 0)")
    assert subprocess.run([sys.executable, "-c", code], check=False).returncode == 0


# --------------------------------------------------------------------------------------- end to end (slow)

@pytest.fixture(scope="module")
def backend() -> Iterator[LMEvalBackend]:
    """smollm2-135m through lm-eval; torch threads = the cores shared fairly among pytest-xdist workers
    (oversubscribed threads slow torch down several-fold), restored afterwards."""
    import os

    import torch

    before = torch.get_num_threads()
    workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1") or 1)
    threads = max(1, min(before, (os.cpu_count() or 1) // max(workers, 1)))
    b = LMEvalBackend(BackendConfig(model="smollm2-135m", dtype="fp32", device="cpu", batch_size=8,
                                    threads=threads))
    yield b
    b.close()
    torch.set_num_threads(before)


@pytest.mark.slow
def test_bridge_end_to_end(backend: LMEvalBackend) -> None:
    sets = [load_examples("xcopa", "et", limit=2), load_examples("xnli", "en", limit=2),
            load_examples("xstorycloze", "en", limit=3), load_examples("xwinograd", "en", limit=3)]
    samples = backend.evaluate(sets)
    expected = [ex for es in sets for ex in es.examples]
    assert [s.example_id for s in samples] == [ex.example_id for ex in expected]
    assert [s.example_id for s in samples][:2] == ["xcopa/et/test/0", "xcopa/et/test/1"]
    for s, ex in zip(samples, expected, strict=True):
        assert s.gold == ex.gold and 0 <= s.gold < len(ex.candidates)
        assert len(s.scores) == len(s.requests) == load_registry().tasks[ex.task].n_candidates
        assert s.prediction == max(range(len(s.scores)), key=lambda i: (s.scores[i], -i))
        assert s.extra["lm_eval_acc"] == float(s.prediction == s.gold)
        assert s.extra["lm_eval_acc_norm"] == float(s.prediction_norm == s.gold)
        assert all(isinstance(r, tuple) and len(r) == 2 for r in s.requests)
        assert s.truncated == 0
    # the gold of 1-based tasks is 0-based here (xstorycloze answer_right_ending, xwinograd answer "1"/"2")
    rows = loading.load_rows("xstorycloze", "en", "eval").rows
    assert [s.gold for s in samples[4:7]] == [r["answer_right_ending"] - 1 for r in rows[:3]]
    rows = loading.load_rows("xwinograd", "en", "test").rows
    assert [s.gold for s in samples[7:10]] == [int(r["answer"]) - 1 for r in rows[:3]]
    # xnli: empty context, the whole statement is the continuation
    assert samples[2].requests[0][0] == ""
    info = backend.info()
    assert info.backend == "lm-eval" and info.dtype == "float32" and info.device.startswith("cpu")
    assert any("lm-eval 0.4.13 HFLM" in n for n in info.notes)
    with pytest.raises(UsageError):
        backend.score([])


@pytest.mark.slow
def test_bridge_subset_and_copa_en_question(backend: LMEvalBackend) -> None:
    """A resumed subset keeps row indices as example ids; --xcopa-question copa-en reaches lm-eval's doc."""
    from dataclasses import replace


    es = load_examples("xcopa", "th", limit=6, options={"xcopa-question": "copa-en"})
    subset = replace(es, examples=[es.examples[2], es.examples[5]])
    samples = backend.evaluate([subset])
    assert [s.example_id for s in samples] == ["xcopa/th/test/2", "xcopa/th/test/5"]
    upstream = load_examples("xcopa", "th", limit=6)
    for s, ex, up in zip(samples, subset.examples, [upstream.examples[2], upstream.examples[5]], strict=True):
        connector = {"cause": "เพราะ", "effect": "ดังนั้น"}[ex.fields["question"]]
        assert s.requests[0][0].endswith(connector)
        assert s.gold == ex.gold == up.gold
