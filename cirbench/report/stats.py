"""Paired statistics over images: bootstrap confidence interval of a mean difference and a sign test.

Both take the per-image differences ``d_i = model_i - reference_i`` over the same images. Pure numpy
and ``math``: scipy is not needed (and not a core dependency).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

__all__ = ["PairedComparison", "bootstrap_ci", "sign_test", "binom_two_sided_p", "compare_paired"]

N_RESAMPLES = 2000
SEED = 0


def bootstrap_ci(
    diff, *, n_resamples: int = N_RESAMPLES, confidence: float = 0.95, seed: int = SEED
) -> tuple[float, float]:
    """Percentile bootstrap interval of the mean of ``diff`` (resampling images with replacement).

    Seeded, so a report renders the same numbers every time.
    """
    d = np.asarray(diff, dtype=np.float64)
    if d.size == 0:
        return (math.nan, math.nan)
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, d.size, size=(n_resamples, d.size))
    means = d[idx].mean(axis=1)
    tail = (1.0 - confidence) / 2.0 * 100.0
    lo, hi = np.percentile(means, [tail, 100.0 - tail])
    return float(lo), float(hi)


def binom_two_sided_p(k: int, n: int) -> float:
    """Exact two-sided p-value of ``k`` successes in ``n`` fair coin flips (p = 1/2).

    With p = 1/2 the distribution is symmetric, so the two-sided p-value is twice the smaller tail.
    """
    if n == 0:
        return 1.0
    k = min(k, n - k)
    tail = sum(math.comb(n, i) for i in range(k + 1))
    return min(1.0, 2.0 * tail / 2**n)


def sign_test(diff) -> float:
    """Two-sided sign test of median difference 0; exact ties (d == 0) are dropped, as usual."""
    d = np.asarray(diff, dtype=np.float64)
    d = d[d != 0]
    return binom_two_sided_p(int((d > 0).sum()), int(d.size))


@dataclass(frozen=True)
class PairedComparison:
    """Summary of a model's per-image differences to a reference model."""

    n: int
    mean: float
    lo: float
    hi: float
    p_sign: float

    def significant(self, alpha: float = 0.05) -> bool:
        return self.p_sign < alpha


def compare_paired(diff, *, n_resamples: int = N_RESAMPLES, seed: int = SEED) -> PairedComparison:
    """Mean difference, its bootstrap 95 % interval and the sign-test p-value."""
    d = np.asarray(diff, dtype=np.float64)
    d = d[np.isfinite(d)]  # an infinite PSNR (identical images) has no meaningful difference
    lo, hi = bootstrap_ci(d, n_resamples=n_resamples, seed=seed)
    mean = float(d.mean()) if d.size else math.nan
    return PairedComparison(n=int(d.size), mean=mean, lo=lo, hi=hi, p_sign=sign_test(d))
