"""Accuracy with its uncertainty, per language and as the unweighted mean over languages."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

Z95 = 1.959963984540054


@dataclass(frozen=True)
class Accuracy:
    n: int
    correct: int
    accuracy: float
    stderr: float  # sample standard error, as lm-evaluation-harness reports it: sqrt(p(1-p)/(n-1))
    ci95_low: float  # Wilson score interval: stays inside [0, 1] and is sane for small n (XWinograd zh: 16)
    ci95_high: float


def accuracy(correct_flags: Sequence[bool]) -> Accuracy:
    n = len(correct_flags)
    k = sum(1 for c in correct_flags if c)
    if n == 0:
        return Accuracy(0, 0, math.nan, math.nan, math.nan, math.nan)
    p = k / n
    stderr = math.sqrt(p * (1 - p) / (n - 1)) if n > 1 else math.nan
    low, high = wilson_interval(k, n)
    return Accuracy(n, k, p, stderr, low, high)


def wilson_interval(k: int, n: int, z: float = Z95) -> tuple[float, float]:
    p = k / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return max(0.0, centre - half), min(1.0, centre + half)


@dataclass(frozen=True)
class MeanAccuracy:
    n_languages: int
    n_examples: int
    accuracy: float  # unweighted mean over languages
    stderr: float  # sqrt(sum se_i^2) / k: languages are independent samples
    ci95_low: float
    ci95_high: float


def mean_over_languages(per_language: Sequence[Accuracy]) -> MeanAccuracy:
    scored = [a for a in per_language if a.n > 0]
    k = len(scored)
    if k == 0:
        return MeanAccuracy(0, 0, math.nan, math.nan, math.nan, math.nan)
    mean = sum(a.accuracy for a in scored) / k
    variances = [a.accuracy * (1 - a.accuracy) / a.n for a in scored]
    se = math.sqrt(sum(variances)) / k
    return MeanAccuracy(k, sum(a.n for a in scored), mean, se,
                        max(0.0, mean - Z95 * se), min(1.0, mean + Z95 * se))
