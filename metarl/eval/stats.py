"""Summary statistics shared by every evaluation: one mean and 95% confidence interval."""

from __future__ import annotations

import numpy as np
from scipy import stats


def mean_ci95(values: np.ndarray) -> tuple[float, float]:
    """Mean and 95% confidence half-width of a sample, from Student's t with n-1 degrees
    of freedom (exact for normal data, and the right width for a handful of seeds, where the
    normal 1.96 is too narrow: 12.7 / 1.96 = 6.5 times at n = 2).

    A single value carries no estimate of its spread, so its half-width is ``nan`` rather
    than a 0 that would claim certainty; printed it reads ``± nan``, and plots draw no band.
    An empty sample is refused.
    """
    values = np.asarray(values, dtype=np.float64).ravel()
    n = len(values)
    if n == 0:
        raise ValueError("mean_ci95 needs at least one value, got none")
    if n == 1:
        return float(values[0]), float("nan")
    t = stats.t.ppf(0.975, df=n - 1)
    return float(values.mean()), float(t * values.std(ddof=1) / np.sqrt(n))


def paired_diff_ci(a: np.ndarray, b: np.ndarray) -> tuple[float, float]:
    """Mean of the paired differences ``a - b`` (e.g. agent minus baseline on the same tasks)
    and its 95% half-width: pairing removes the between-task variance that two unpaired
    intervals both carry, so the difference is significant when this interval excludes 0."""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if a.shape != b.shape:
        raise ValueError(f"paired values need equal shapes, got {a.shape} and {b.shape}")
    return mean_ci95(a - b)
