from __future__ import annotations

import math

from harness.results.metrics import accuracy, mean_over_languages, wilson_interval


def test_accuracy_and_intervals():
    a = accuracy([True] * 30 + [False] * 70)
    assert (a.n, a.correct, a.accuracy) == (100, 30, 0.3)
    assert math.isclose(a.stderr, math.sqrt(0.3 * 0.7 / 99))
    # Wilson 95% for 30/100 (textbook value)
    assert math.isclose(a.ci95_low, 0.2189, abs_tol=1e-4) and math.isclose(a.ci95_high, 0.3958, abs_tol=1e-4)
    low, high = wilson_interval(16, 16)
    assert high == 1.0 and 0.79 < low < 0.81
    assert math.isnan(accuracy([]).accuracy)


def test_unweighted_mean_over_languages():
    small = accuracy([True] * 8 + [False] * 8)  # 16 rows, like XWinograd zh
    big = accuracy([True] * 900 + [False] * 100)
    m = mean_over_languages([small, big])
    assert m.accuracy == (0.5 + 0.9) / 2  # unweighted, not pooled (908/1016)
    assert (m.n_languages, m.n_examples) == (2, 1016)
    assert math.isclose(m.stderr, math.sqrt(0.25 / 16 + 0.09 / 1000) / 2)
    assert m.ci95_low < m.accuracy < m.ci95_high
