"""Paired comparison of two runs on the examples both scored: McNemar's exact test and a paired bootstrap.

Two runs of the bench score the *same* examples, so their errors are correlated; comparing their two
independent confidence intervals overstates the uncertainty of the difference. Pairing by example id uses
that correlation: McNemar looks only at the examples the runs disagree on, and the bootstrap resamples
examples (both runs' outcomes together) so the interval is for the difference itself.
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from harness.errors import DataError


@dataclass(frozen=True)
class PairedComparison:
    """One task, runs A and B, on the examples both scored (fractions in 0-1, not percent)."""

    task: str
    run_a: str
    run_b: str
    n: int  # examples scored by both (matched by example_id)
    n_languages: int
    acc_a: float  # unweighted mean over languages of A's accuracy on the shared examples
    acc_b: float
    diff: float  # acc_a - acc_b
    ci_low: float  # 95% paired-bootstrap interval of diff
    ci_high: float
    only_a: int  # A right, B wrong (McNemar's b)
    only_b: int  # B right, A wrong (McNemar's c)
    p_mcnemar: float  # exact two-sided McNemar p-value
    bootstrap: int  # resamples used
    seed: int


def _field(record: dict[str, object], key: str, kind: type, where: str) -> object:
    if key not in record:
        raise DataError(f"{where}: no {key!r} field")
    value = record[key]
    if not isinstance(value, kind):
        raise DataError(f"{where}: {key!r} is {value!r}, not a {kind.__name__}")
    return value


def correct_by_example(samples_path: Path) -> dict[str, tuple[str, str, bool]]:
    """example_id -> (task, language, correct) from a run's samples.jsonl.

    Read-only on purpose (unlike `SampleStore`, which truncates a torn last line and rewrites duplicates):
    a report must not modify the file of a run that may still be writing it. Same reading rules otherwise:
    an unterminated last line that is not valid JSON is an unfinished write and is skipped, and when an
    example appears twice the last line wins.
    """
    try:
        text = samples_path.read_text(encoding="utf-8")
    except OSError as err:
        raise DataError(f"{samples_path}: cannot read samples ({err.strerror})") from err
    except UnicodeDecodeError as err:
        raise DataError(f"{samples_path}: not UTF-8 text ({err.reason})") from err
    lines = text.split("\n")
    out: dict[str, tuple[str, str, bool]] = {}
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        where = f"{samples_path}: line {number}"
        try:
            record = json.loads(line)
        except ValueError as err:
            if number == len(lines):  # no newline after it: a write cut off mid-line
                break
            raise DataError(f"{where} is not valid JSON ({err})") from err
        if not isinstance(record, dict):
            raise DataError(f"{where} is not a JSON object")
        example_id = str(_field(record, "example_id", str, where))
        task = str(_field(record, "task", str, where))
        language = str(_field(record, "language", str, where))
        out[example_id] = (task, language, bool(_field(record, "correct", bool, where)))
    return out


def mcnemar_exact(b: int, c: int) -> float:
    """Exact two-sided McNemar p-value: under "no difference" each discordant example is a fair coin.

    min(1, 2 * P(X <= min(b, c))) for X ~ Binomial(b + c, 0.5); 1.0 when there are no discordant pairs.
    Exact integer arithmetic (binomial coefficients by recurrence: summing math.comb term by term is
    quadratic and takes seconds at ten thousand disagreements).
    """
    if b < 0 or c < 0:
        raise ValueError(f"counts must be non-negative, got b={b}, c={c}")
    n = b + c
    if n == 0:
        return 1.0
    term, tail = 1, 0  # term = comb(n, i)
    for i in range(min(b, c) + 1):
        tail += term
        term = term * (n - i) // (i + 1)
    return min(1.0, 2 * tail / 2**n)


def paired_bootstrap(pairs_by_language: Mapping[str, Sequence[tuple[bool, bool]]], *, resamples: int = 2000,
                     seed: int = 0) -> tuple[float, float, float]:
    """(observed diff, 2.5th, 97.5th percentile) of the task score difference A - B.

    Stratified: examples are resampled with replacement *within* each language, because the task score is an
    unweighted mean over languages, so each language's size must stay fixed. Resampling n paired outcomes from
    a language is a multinomial draw over its three per-example differences (+1, 0, -1), so it is drawn as
    such: the same distribution as an index matrix [resamples, n], in O(resamples) time and memory per language.
    """
    if resamples < 1:
        raise ValueError(f"resamples must be at least 1, got {resamples}")
    if not pairs_by_language:
        raise ValueError("no languages to resample")
    rng = np.random.default_rng(seed)
    observed = 0.0
    total = np.zeros(resamples)
    for language in sorted(pairs_by_language):  # sorted: the draws do not depend on the mapping's order
        pairs = pairs_by_language[language]
        n = len(pairs)
        if n == 0:
            raise ValueError(f"language {language!r} has no paired examples")
        a_only = sum(1 for a, b in pairs if a and not b)
        b_only = sum(1 for a, b in pairs if b and not a)
        observed += (a_only - b_only) / n
        counts = rng.multinomial(n, [a_only / n, b_only / n, (n - a_only - b_only) / n], size=resamples)
        total += (counts[:, 0] - counts[:, 1]) / n
    k = len(pairs_by_language)
    low, high = np.percentile(total / k, [2.5, 97.5])
    return observed / k, float(low), float(high)


def compare_runs(a: Mapping[str, tuple[str, str, bool]], b: Mapping[str, tuple[str, str, bool]], run_a: str,
                 run_b: str, *, resamples: int = 2000, seed: int = 0) -> list[PairedComparison]:
    """One comparison per task (sorted) on the examples both runs scored; the rest are ignored, since an
    example only one run scored says nothing about the difference. Each task's bootstrap starts from `seed`,
    so a comparison does not depend on which other tasks or runs are compared."""
    by_task: dict[str, dict[str, list[tuple[bool, bool]]]] = defaultdict(lambda: defaultdict(list))
    for example_id in sorted(a.keys() & b.keys()):
        task, language, correct_a = a[example_id]
        task_b, language_b, correct_b = b[example_id]
        if (task, language) != (task_b, language_b):
            raise DataError(f"{example_id}: {run_a} has it as {task}/{language}, {run_b} as {task_b}/{language_b}")
        by_task[task][language].append((correct_a, correct_b))
    out = []
    for task in sorted(by_task):
        languages = by_task[task]
        acc_a = sum(sum(x for x, _ in p) / len(p) for p in languages.values()) / len(languages)
        acc_b = sum(sum(y for _, y in p) / len(p) for p in languages.values()) / len(languages)
        only_a = sum(1 for p in languages.values() for x, y in p if x and not y)
        only_b = sum(1 for p in languages.values() for x, y in p if y and not x)
        _, low, high = paired_bootstrap(languages, resamples=resamples, seed=seed)
        out.append(PairedComparison(task=task, run_a=run_a, run_b=run_b, n=sum(len(p) for p in languages.values()),
                                    n_languages=len(languages), acc_a=acc_a, acc_b=acc_b, diff=acc_a - acc_b,
                                    ci_low=low, ci_high=high, only_a=only_a, only_b=only_b,
                                    p_mcnemar=mcnemar_exact(only_a, only_b), bootstrap=resamples, seed=seed))
    return out


def pairwise(runs: Sequence[tuple[str, Path]], *, resamples: int = 2000, seed: int = 0) -> list[PairedComparison]:
    """Every unordered pair of runs in input order ((0, 1), (0, 2), ..., (1, 2), ...); pairs sharing no
    examples contribute nothing. Each samples file is read once."""
    loaded: dict[Path, dict[str, tuple[str, str, bool]]] = {}
    for _, path in runs:
        if path not in loaded:
            loaded[path] = correct_by_example(path)
    out: list[PairedComparison] = []
    for i, (id_a, path_a) in enumerate(runs):
        for id_b, path_b in runs[i + 1:]:
            out.extend(compare_runs(loaded[path_a], loaded[path_b], id_a, id_b, resamples=resamples, seed=seed))
    return out
