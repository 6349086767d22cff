"""The one mean and 95% CI (Student's t) and the paired difference, against hand-computed cases."""

import math

import numpy as np
import pytest

from metarl.eval.stats import mean_ci95, paired_diff_ci

# 97.5% quantiles of Student's t (scipy.stats.t.ppf(0.975, df)), as printed in t tables.
T_DF1, T_DF2, T_DF4 = 12.706204736, 4.302652730, 2.776445105


def test_two_values_use_t_with_one_degree_of_freedom():
    # mean 2, sample sd sqrt(2), standard error sqrt(2)/sqrt(2) = 1: half-width is t itself,
    # 6.5 times the normal approximation's 1.96.
    mean, half = mean_ci95(np.array([1.0, 3.0]))
    assert mean == 2.0
    assert half == pytest.approx(T_DF1, rel=1e-9)


def test_five_values_use_t_with_four_degrees_of_freedom():
    # mean 3, sample variance 2.5, standard error sqrt(2.5 / 5) = 1/sqrt(2).
    mean, half = mean_ci95([1, 2, 3, 4, 5])
    assert mean == 3.0
    assert half == pytest.approx(T_DF4 / math.sqrt(2), rel=1e-9)


def test_one_value_has_no_interval():
    mean, half = mean_ci95(np.array([4.5]))
    assert mean == 4.5 and math.isnan(half)


def test_no_value_is_refused():
    with pytest.raises(ValueError, match="at least one value"):
        mean_ci95(np.array([]))


def test_paired_difference_is_the_interval_of_per_task_differences():
    # differences 2, 3, 0: mean 5/3, sample variance 7/3, standard error sqrt(7/9).
    mean, half = paired_diff_ci([3.0, 5.0, 4.0], [1.0, 2.0, 4.0])
    assert mean == pytest.approx(5 / 3)
    assert half == pytest.approx(T_DF2 * math.sqrt(7 / 9), rel=1e-9)


def test_pairing_removes_the_between_task_spread():
    # Tasks differ a lot, the agent beats the baseline by 1 +- 0.1 on each: unpaired
    # intervals overlap, the paired one excludes 0.
    tasks = np.array([0.0, 10.0, 20.0, 30.0, 40.0])
    agent, baseline = tasks + [1.1, 0.9, 1.0, 1.1, 0.9], tasks
    (a, a_half), (b, b_half) = mean_ci95(agent), mean_ci95(baseline)
    assert a - a_half < b + b_half
    diff, diff_half = paired_diff_ci(agent, baseline)
    assert diff == pytest.approx(1.0) and diff - diff_half > 0


def test_unequal_pairs_are_refused():
    with pytest.raises(ValueError, match=r"equal shapes, got \(2,\) and \(3,\)"):
        paired_diff_ci([1.0, 2.0], [1.0, 2.0, 3.0])
