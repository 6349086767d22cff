"""Exact dynamic programming over posterior states: hand-checked values and bad input."""

from __future__ import annotations

import pytest

from metarl.eval.bayes_optimal import bayes_optimal_arms, bayes_optimal_value, index_policy_value


def test_one_arm_pays_half_per_pull():
    assert bayes_optimal_value(1, 7) == pytest.approx(3.5)


def test_two_pulls_of_two_arms_by_hand():
    # Pull either arm (1/2); on a success pull it again (2/3), else the other arm (1/2).
    assert bayes_optimal_value(2, 2) == pytest.approx(0.5 + 0.5 * 2 / 3 + 0.5 * 0.5)


def test_value_grows_with_arms_and_never_loses_to_an_index_rule():
    values = [bayes_optimal_value(k, 6) for k in (1, 2, 3)]
    assert values[0] < values[1] < values[2]
    greedy = index_policy_value(lambda s, f: (1 + s) / (2 + s + f), 3, 6)
    assert greedy <= values[2] + 1e-12


def test_last_pull_exploits_and_longer_horizons_explore():
    assert bayes_optimal_arms([(1, 1), (0, 0), (3, 1)], 1) == [2]
    assert bayes_optimal_arms([(0, 0), (0, 0)], 3) == [0, 1]
    # A known-good arm (mean 0.6) against an untried one (mean 0.5): explore iff time is left.
    assert bayes_optimal_arms([(2, 1), (0, 0)], 1) == [0]
    assert bayes_optimal_arms([(2, 1), (0, 0)], 8) == [1]


def test_discounting_shrinks_the_value():
    assert bayes_optimal_value(2, 5, discount=0.5) < bayes_optimal_value(2, 5)


@pytest.mark.parametrize(
    ("kwargs", "bad"),
    [
        ({"num_arms": 0, "horizon": 3}, "num_arms"),
        ({"num_arms": 2, "horizon": -1}, "horizon"),
        ({"num_arms": 2, "horizon": 3, "discount": 0.0}, "discount"),
        ({"num_arms": 2, "horizon": 3, "start": [(0, 0)]}, "start"),
        ({"num_arms": 1, "horizon": 3, "start": [(0, -1)]}, "start"),
    ],
)
def test_bad_input_raises(kwargs, bad):
    with pytest.raises(ValueError, match=bad):
        bayes_optimal_value(**kwargs)


def test_index_outside_its_table_raises():
    with pytest.raises(ValueError, match="NaN"):
        index_policy_value(lambda s, f: float("nan"), 2, 3)
