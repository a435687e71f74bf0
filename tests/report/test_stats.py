"""Paired statistics: exact binomial p-values against known values, bootstrap coverage on synthetic data."""

from __future__ import annotations

import math

import numpy as np
import pytest

from cirbench.report.stats import binom_two_sided_p, bootstrap_ci, compare_paired, sign_test


@pytest.mark.parametrize(
    ("k", "n", "p"),
    [
        (0, 10, 2 / 1024),  # all ten positive
        (2, 10, 2 * (1 + 10 + 45) / 1024),  # 0.109375
        (5, 20, 0.04138946533203125),  # R: binom.test(5, 20)$p.value
        (3, 6, 1.0),
        (6, 6, 0.03125),
        (0, 0, 1.0),
    ],
)
def test_binomial_p_values(k, n, p):
    assert binom_two_sided_p(k, n) == pytest.approx(p, rel=1e-12)
    assert binom_two_sided_p(n - k, n) == pytest.approx(p, rel=1e-12)  # two-sided: symmetric


def test_sign_test_drops_ties():
    # 6 positive, 0 negative, 3 exact zeros: the zeros do not count
    assert sign_test([1, 2, 3, 0.5, 0.1, 4, 0, 0, 0]) == pytest.approx(0.03125)
    assert sign_test([1, -1, 2, -2]) == 1.0


def test_bootstrap_is_seeded_and_brackets_mean():
    d = np.array([0.1, 0.4, -0.2, 0.3, 0.5, 0.2, 0.0, 0.35])
    lo, hi = bootstrap_ci(d)
    assert (lo, hi) == bootstrap_ci(d)
    assert lo < d.mean() < hi
    assert bootstrap_ci(d, seed=1) != (lo, hi)


def test_bootstrap_covers_true_mean_about_95_percent():
    true_mean, trials = 0.5, 200
    rng = np.random.default_rng(123)
    hits = 0
    for t in range(trials):
        d = rng.normal(true_mean, 1.0, size=40)
        lo, hi = bootstrap_ci(d, n_resamples=1000, seed=t)
        hits += lo <= true_mean <= hi
    # percentile bootstrap undercovers slightly at n = 40; binomial sd of the rate is ~1.5 %
    assert 0.88 <= hits / trials <= 0.99


def test_compare_paired_summary():
    c = compare_paired([1.0, 1.0, 1.0, 1.0, 1.0, 1.0, float("inf")])
    assert c.n == 6 and c.mean == 1.0 and c.lo == c.hi == 1.0
    assert c.p_sign == pytest.approx(0.03125) and c.significant()
    empty = compare_paired([])
    assert empty.n == 0 and math.isnan(empty.mean) and empty.p_sign == 1.0
