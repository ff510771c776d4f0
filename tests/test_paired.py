"""Paired run comparison (harness.reports.paired): McNemar, stratified bootstrap, matching by example id."""

from __future__ import annotations

import json
import time
from math import comb
from pathlib import Path

import numpy as np
import pytest

from harness.errors import DataError
from harness.reports.paired import (
    PairedComparison,
    compare_runs,
    correct_by_example,
    mcnemar_exact,
    paired_bootstrap,
    pairwise,
)


def _record(task: str, language: str, index: int, correct: bool, split: str = "test") -> dict[str, object]:
    gold = 0
    prediction = gold if correct else 1
    return {"example_id": f"{task}/{language}/{split}/{index}", "task": task, "language": language, "split": split,
            "index": index, "template_id": "t0", "requests": ["a", "b"], "scores": [0.0, -1.0],
            "prediction": prediction, "gold": gold, "correct": correct, "prediction_norm": None, "truncated": 0,
            "extra": {}}


def _write(path: Path, records: list[dict[str, object]]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    return path


def _run(task: str, outcomes: dict[str, list[bool]], start: int = 0) -> dict[str, tuple[str, str, bool]]:
    return {f"{task}/{lang}/test/{start + i}": (task, lang, c)
            for lang, cs in outcomes.items() for i, c in enumerate(cs)}


# --- McNemar -----------------------------------------------------------------------------------------------------

def test_mcnemar_exact_values() -> None:
    assert mcnemar_exact(0, 0) == 1.0
    assert mcnemar_exact(10, 0) == 2 * 0.5**10
    assert mcnemar_exact(5, 5) == 1.0
    assert mcnemar_exact(8, 2) == 0.109375
    assert mcnemar_exact(8, 2) == 2 * sum(comb(10, k) for k in range(3)) / 2**10
    assert mcnemar_exact(1, 0) == 1.0  # 2 * 0.5 = 1
    assert mcnemar_exact(3, 4) == 1.0


def test_mcnemar_exact_symmetric_and_matches_comb() -> None:
    for b in range(15):
        for c in range(15):
            assert mcnemar_exact(b, c) == mcnemar_exact(c, b)
            if b + c:
                expected = min(1.0, 2 * sum(comb(b + c, k) for k in range(min(b, c) + 1)) / 2 ** (b + c))
                assert mcnemar_exact(b, c) == expected


def test_mcnemar_exact_large_counts_are_fast_and_finite() -> None:
    start = time.perf_counter()
    p = mcnemar_exact(8000, 8000)
    assert p == 1.0
    assert 0.0 < mcnemar_exact(6000, 4000) < 1e-80  # 2**10000 is beyond float range: no OverflowError
    assert mcnemar_exact(16000, 0) == 0.0  # 2 * 0.5**16000 underflows to zero
    assert time.perf_counter() - start < 1.0


def test_mcnemar_exact_rejects_negative() -> None:
    with pytest.raises(ValueError):
        mcnemar_exact(-1, 3)


# --- compare_runs ------------------------------------------------------------------------------------------------

def test_compare_runs_unweighted_language_means() -> None:
    # et: 4 shared examples, A 4/4 right, B 2/4.  sw: 6 shared examples, A 1/6, B 3/6.
    a_et, b_et = [True, True, True, True], [True, False, True, False]
    a_sw, b_sw = [True, False, False, False, False, False], [False, True, True, False, True, False]
    a = _run("xcopa", {"et": a_et, "sw": a_sw})
    b = _run("xcopa", {"et": b_et, "sw": b_sw})
    # examples only one run has, and a task only one run has: ignored
    a.update(_run("xcopa", {"et": [False, False]}, start=100))
    b.update(_run("xcopa", {"sw": [True]}, start=200))
    b.update(_run("xcopa", {"qu": [True, True]}))  # a language only B has
    a.update(_run("only_in_a", {"et": [True]}))
    b.update(_run("only_in_b", {"et": [False]}))

    [cmp] = compare_runs(a, b, "run-a", "run-b", resamples=500, seed=3)
    acc_a = (4 / 4 + 1 / 6) / 2
    acc_b = (2 / 4 + 3 / 6) / 2
    assert cmp.task == "xcopa" and cmp.run_a == "run-a" and cmp.run_b == "run-b"
    assert cmp.n == 10
    assert cmp.n_languages == 2
    assert cmp.acc_a == acc_a
    assert cmp.acc_b == acc_b
    assert cmp.acc_a != 5 / 10 and cmp.acc_b == 5 / 10  # pooled A would be 0.5: the weighting matters
    assert cmp.diff == acc_a - acc_b
    # et: A-only at 1, 3; sw: A-only at 0, B-only at 1, 2, 4
    assert cmp.only_a == 3
    assert cmp.only_b == 3
    assert cmp.p_mcnemar == 1.0
    assert cmp.bootstrap == 500 and cmp.seed == 3
    assert cmp.ci_low <= cmp.diff <= cmp.ci_high
    observed, low, high = paired_bootstrap({"et": list(zip(a_et, b_et, strict=True)),
                                            "sw": list(zip(a_sw, b_sw, strict=True))}, resamples=500, seed=3)
    assert observed == pytest.approx(cmp.diff, abs=1e-15)
    assert (low, high) == (cmp.ci_low, cmp.ci_high)


def test_compare_runs_tasks_sorted_and_disjoint_runs() -> None:
    a = {**_run("xstory", {"en": [True, False]}), **_run("copa", {"en": [True, True, False]})}
    b = {**_run("xstory", {"en": [False, False]}), **_run("copa", {"en": [False, True, False]})}
    result = compare_runs(a, b, "a", "b", resamples=100)
    assert [c.task for c in result] == ["copa", "xstory"]
    assert [(c.only_a, c.only_b, c.n) for c in result] == [(1, 0, 3), (1, 0, 2)]
    assert result[0].p_mcnemar == 1.0
    assert compare_runs(_run("copa", {"en": [True]}), _run("copa", {"fr": [True]}), "a", "b") == []


def test_compare_runs_mismatched_task_for_same_id() -> None:
    a = {"x/et/test/0": ("x", "et", True)}
    b = {"x/et/test/0": ("y", "et", True)}
    with pytest.raises(DataError, match="x/et/test/0"):
        compare_runs(a, b, "a", "b")


# --- paired_bootstrap --------------------------------------------------------------------------------------------

def test_bootstrap_identical_runs_is_zero() -> None:
    pairs = {"et": [(True, True), (False, False), (True, True)], "sw": [(False, False)] * 5}
    assert paired_bootstrap(pairs, resamples=300, seed=1) == (0.0, 0.0, 0.0)


def test_bootstrap_a_always_right_is_one() -> None:
    pairs = {"et": [(True, False)] * 3, "sw": [(True, False)] * 7, "qu": [(True, False)]}
    assert paired_bootstrap(pairs, resamples=300, seed=1) == (1.0, 1.0, 1.0)


def _random_pairs(seed: int, sizes: dict[str, int]) -> dict[str, list[tuple[bool, bool]]]:
    rng = np.random.default_rng(seed)
    out = {}
    for lang, n in sizes.items():
        a = rng.random(n) < 0.7
        b = rng.random(n) < 0.6
        out[lang] = [(bool(x), bool(y)) for x, y in zip(a, b, strict=True)]
    return out


def test_bootstrap_deterministic_and_contains_observed() -> None:
    pairs = _random_pairs(7, {"et": 40, "sw": 90, "ht": 25})
    first = paired_bootstrap(pairs, resamples=2000, seed=11)
    assert paired_bootstrap(pairs, resamples=2000, seed=11) == first
    assert paired_bootstrap(dict(reversed(list(pairs.items()))), resamples=2000, seed=11) == first
    assert paired_bootstrap(pairs, resamples=2000, seed=12) != first
    observed, low, high = first
    expected = sum(sum(a for a, _ in p) / len(p) - sum(b for _, b in p) / len(p) for p in pairs.values()) / 3
    assert observed == pytest.approx(expected, abs=1e-12)
    assert low < observed < high


def test_bootstrap_narrows_with_more_data() -> None:
    pairs = _random_pairs(3, {"et": 50, "sw": 80})
    observed, low, high = paired_bootstrap(pairs, resamples=2000, seed=0)
    observed4, low4, high4 = paired_bootstrap({k: list(v) * 4 for k, v in pairs.items()}, resamples=2000, seed=0)
    assert observed4 == pytest.approx(observed, abs=1e-12)
    assert high4 - low4 < 0.7 * (high - low)  # about half: the standard error goes as 1/sqrt(n)


def test_bootstrap_fast_on_full_size() -> None:
    pairs = _random_pairs(5, {f"l{i}": 1000 for i in range(16)})
    start = time.perf_counter()
    paired_bootstrap(pairs, resamples=2000, seed=0)
    paired_bootstrap({"one": [p for v in pairs.values() for p in v]}, resamples=2000, seed=0)
    assert time.perf_counter() - start < 1.0


def test_bootstrap_rejects_bad_input() -> None:
    with pytest.raises(ValueError):
        paired_bootstrap({}, resamples=10)
    with pytest.raises(ValueError):
        paired_bootstrap({"et": []}, resamples=10)
    with pytest.raises(ValueError):
        paired_bootstrap({"et": [(True, False)]}, resamples=0)


# --- reading samples files and pairwise --------------------------------------------------------------------------

def test_correct_by_example_reads_file(tmp_path: Path) -> None:
    path = _write(tmp_path / "samples.jsonl", [_record("xcopa", "et", 0, True), _record("xcopa", "sw", 1, False)])
    path.write_text(path.read_text() + "\n\n", encoding="utf-8")  # blank lines are skipped
    assert correct_by_example(path) == {"xcopa/et/test/0": ("xcopa", "et", True),
                                        "xcopa/sw/test/1": ("xcopa", "sw", False)}


def test_correct_by_example_last_duplicate_wins_and_torn_tail_skipped(tmp_path: Path) -> None:
    path = _write(tmp_path / "samples.jsonl", [_record("xcopa", "et", 0, True), _record("xcopa", "et", 0, False)])
    before = path.read_text() + '{"example_id": "xcopa/et/te'  # a write cut off mid-line
    path.write_text(before, encoding="utf-8")
    assert correct_by_example(path) == {"xcopa/et/test/0": ("xcopa", "et", False)}
    assert path.read_text(encoding="utf-8") == before  # read-only: the file is left as it was


def test_correct_by_example_malformed_line(tmp_path: Path) -> None:
    path = tmp_path / "run1" / "samples.jsonl"
    _write(path, [_record("xcopa", "et", 0, True)])
    path.write_text(path.read_text() + "{not json\n" + json.dumps(_record("xcopa", "et", 1, True)) + "\n")
    with pytest.raises(DataError) as err:
        correct_by_example(path)
    assert str(path) in str(err.value) and "line 2" in str(err.value)


def test_correct_by_example_bad_fields_and_missing_file(tmp_path: Path) -> None:
    record = _record("xcopa", "et", 0, True)
    del record["correct"]
    path = _write(tmp_path / "samples.jsonl", [_record("xcopa", "et", 1, True), record])
    with pytest.raises(DataError, match=r"samples\.jsonl: line 2: no 'correct' field"):
        correct_by_example(path)
    path.write_text(json.dumps({**_record("xcopa", "et", 0, True), "correct": 1}) + "\n")
    with pytest.raises(DataError, match="line 1"):
        correct_by_example(path)
    path.write_text("[1, 2]\n")
    with pytest.raises(DataError, match="line 1 is not a JSON object"):
        correct_by_example(path)
    with pytest.raises(DataError, match="cannot read"):
        correct_by_example(tmp_path / "missing.jsonl")


def test_pairwise_all_pairs_in_input_order(tmp_path: Path) -> None:
    p1 = _write(tmp_path / "r1" / "samples.jsonl",
                [_record("xcopa", "et", i, c) for i, c in enumerate([True, True, False, True])])
    p2 = _write(tmp_path / "r2" / "samples.jsonl",
                [_record("xcopa", "et", i, c) for i, c in enumerate([False, True, False, False])])
    p3 = _write(tmp_path / "r3" / "samples.jsonl",
                [_record("xcopa", "et", i, c) for i, c in enumerate([True, True, True, True])]
                + [_record("copa", "en", 0, True)])
    p4 = _write(tmp_path / "r4" / "samples.jsonl", [_record("copa", "en", 0, False)])
    result = pairwise([("r1", p1), ("r2", p2), ("r3", p3), ("r4", p4)], resamples=200, seed=5)
    assert all(isinstance(c, PairedComparison) for c in result)
    assert [(c.run_a, c.run_b, c.task) for c in result] == [
        ("r1", "r2", "xcopa"), ("r1", "r3", "xcopa"), ("r2", "r3", "xcopa"), ("r3", "r4", "copa")]
    r1r2 = result[0]
    assert (r1r2.acc_a, r1r2.acc_b, r1r2.diff, r1r2.only_a, r1r2.only_b) == (0.75, 0.25, 0.5, 2, 0)
    assert r1r2.p_mcnemar == 0.5
    assert result[3].diff == 1.0 and result[3].n == 1
    expected = compare_runs(correct_by_example(p1), correct_by_example(p2), "r1", "r2", resamples=200, seed=5)
    assert result[0] == expected[0]
