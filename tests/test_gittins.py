"""Gittins indices: limits, monotonicity, a slow reference, published tables, optimality."""

from __future__ import annotations

import json
from itertools import pairwise

import numpy as np
import pytest

from metarl.eval.bayes_optimal import bayes_optimal_arms, bayes_optimal_value, index_policy_value
from metarl.eval.gittins import gittins_discount, gittins_index_table


@pytest.fixture(autouse=True)
def private_cache(tmp_path, monkeypatch):
    """Each test starts with empty caches and writes its disk cache under tmp_path."""
    monkeypatch.setenv("METARL_CACHE_DIR", str(tmp_path))
    gittins_index_table.cache_clear()
    gittins_discount.cache_clear()


def posterior_means(max_pulls: int) -> np.ndarray:
    s, f = np.meshgrid(np.arange(max_pulls + 1), np.arange(max_pulls + 1), indexing="ij")
    return np.where(s + f <= max_pulls, (1.0 + s) / (2.0 + s + f), np.nan)


def bisection_indices(discount: float, states: list[tuple[int, int]], depth: int) -> np.ndarray:
    """Slow reference: per state, bisect on the retirement reward, solving the optimal
    stopping problem of that state alone (truncated ``depth`` pulls below its deepest)."""
    states_arr = np.array(states)
    level = states_arr.sum(axis=1)
    top = int(level.max()) + depth
    lo = (states_arr[:, 0] + 1.0) / (level + 2.0)
    hi = np.ones(len(states))
    for _ in range(40):
        lam = 0.5 * (lo + hi)
        carry_on = np.zeros(len(states), dtype=bool)
        for k, (s, n) in enumerate(zip(states_arr[:, 0], level, strict=True)):
            succ = np.arange(top + 1)
            value = np.maximum(lam[k], (succ + 1.0) / (top + 2.0))
            for pulls in range(top - 1, n - 1, -1):
                mean = (np.arange(pulls + 1) + 1.0) / (pulls + 2.0)
                future = mean * value[1:] + (1 - mean) * value[:-1]
                cont = (1 - discount) * mean + discount * future
                value = np.maximum(lam[k], cont)
            carry_on[k] = cont[s] > lam[k]
        lo, hi = np.where(carry_on, lam, lo), np.where(carry_on, hi, lam)
    return 0.5 * (lo + hi)


def test_index_tends_to_posterior_mean_as_discount_vanishes():
    table = gittins_index_table(1e-4, 30)
    np.testing.assert_allclose(table, posterior_means(30), atol=2e-4)


def test_index_exceeds_mean_and_grows_with_discount_and_successes():
    tables = [gittins_index_table(g, 40) for g in (0.5, 0.9, 0.99)]
    mask = ~np.isnan(tables[0])
    assert np.all(tables[0][mask] >= posterior_means(40)[mask] - 1e-6)
    for shorter, longer in pairwise(tables):
        assert np.all(longer[mask] > shorter[mask] - 1e-6)
    table = tables[-1]
    for n in range(40):  # along a level: one more success and one failure fewer
        diagonal = table[np.arange(n + 1), n - np.arange(n + 1)]
        assert np.all(np.diff(diagonal) > 0)
    assert table[0, 0] > 0.85 > table[0, 1]  # an untried arm is worth a lot when patient


def test_table_matches_per_state_bisection():
    discount, max_pulls = 0.95, 40
    states = [(0, 0), (1, 0), (0, 3), (5, 5), (12, 3), (2, 20), (30, 10), (39, 1), (1, 39)]
    # The reference truncates 6 effective horizons deep: it also checks the table's depth.
    reference = bisection_indices(discount, states, depth=6 * 20 + 20)
    table = gittins_index_table(discount, max_pulls)
    got = np.array([table[s, f] for s, f in states])
    np.testing.assert_allclose(got, reference, atol=1e-4)


@pytest.mark.parametrize(
    ("discount", "state", "published"),
    [
        # Gittins' tables (Gittins, Glazebrook and Weber 2011, ch. 8; reproduced by
        # Christian and Griffiths 2016): state = (successes, failures) after a uniform prior.
        (0.9, (0, 0), 0.7029),
        (0.9, (1, 1), 0.6346),
        (0.9, (2, 2), 0.6010),
        (0.9, (9, 1), 0.8695),
        (0.99, (0, 0), 0.8699),
    ],
)
def test_matches_published_table(discount, state, published):
    assert gittins_index_table(discount, 12)[state] == pytest.approx(published, abs=1e-4)


def test_table_is_read_only_and_cached_on_disk(tmp_path):
    table = gittins_index_table(0.8, 10)
    with pytest.raises(ValueError):
        table[0, 0] = 0.0
    files = list((tmp_path / "gittins").glob("index-*.npy"))
    assert len(files) == 1
    gittins_index_table.cache_clear()
    np.testing.assert_array_equal(gittins_index_table(0.8, 10), table)


@pytest.mark.parametrize("discount", [0.0, 1.0, -0.5, 1.5])
def test_discount_outside_unit_interval_raises(discount):
    with pytest.raises(ValueError, match="discount"):
        gittins_index_table(discount, 10)


def test_discount_choice_is_a_deterministic_candidate(tmp_path):
    chosen = gittins_discount(6, 2)
    candidates = [r * 6 / (1 + r * 6) for r in (1 / 8, 1 / 4, 3 / 8, 1 / 2, 5 / 8, 3 / 4, 1)]
    assert min(abs(chosen - c) for c in candidates) < 1e-12
    saved = json.loads((tmp_path / "gittins" / "tuned-v1.json").read_text())
    assert saved == {"gittins,6,2": chosen}
    gittins_discount.cache_clear()
    (tmp_path / "gittins" / "tuned-v1.json").unlink()
    assert gittins_discount(6, 2) == chosen


def test_longer_horizons_get_larger_discounts():
    assert gittins_discount(4, 2) < gittins_discount(40, 2)


@pytest.mark.parametrize(("horizon", "num_arms", "bad"), [(0, 5, "horizon"), (10, 0, "num_arms")])
def test_discount_choice_rejects_bad_sizes(horizon, num_arms, bad):
    with pytest.raises(ValueError, match=bad):
        gittins_discount(horizon, num_arms)


@pytest.mark.parametrize("num_arms", [2, 3])
def test_gittins_rule_is_nearly_bayes_optimal_on_short_horizons(num_arms):
    horizon = 8
    table = gittins_index_table(gittins_discount(horizon, num_arms), horizon - 1)
    optimal = bayes_optimal_value(num_arms, horizon)
    value = index_policy_value(lambda s, f: table[s, f], num_arms, horizon)
    assert optimal * 0.99 <= value <= optimal + 1e-12


@pytest.mark.parametrize("start", [[(0, 0), (0, 0)], [(1, 0), (0, 0)], [(2, 1), (0, 0)]])
def test_gittins_rule_is_optimal_for_discounted_bandits(start):
    """Gittins' theorem: on the discounted bandit the index rule is Bayes-optimal. Cutting
    the bandit at 30 pulls moves values by at most gamma**30 / (1 - gamma) = 7.5e-5."""
    discount, horizon = 0.7, 30
    cut = discount**horizon / (1 - discount)
    table = gittins_index_table(discount, horizon + 3)
    optimal = bayes_optimal_value(2, horizon, discount, start)
    gittins_value = index_policy_value(lambda s, f: table[s, f], 2, horizon, discount, start)
    greedy_value = index_policy_value(
        lambda s, f: (1 + s) / (2 + s + f), 2, horizon, discount, start
    )
    assert optimal - cut <= gittins_value <= optimal + 1e-12
    assert optimal - greedy_value > 10 * cut  # the check tells a myopic rule apart


def test_gittins_first_pull_is_bayes_optimal_for_discounted_bandits():
    discount, horizon = 0.6, 20  # cut at 20 pulls: values move by at most 1e-4
    table = gittins_index_table(discount, 4)
    arm_states = [(s, f) for s in range(3) for f in range(3)]
    for i, first in enumerate(arm_states):
        for second in arm_states[i + 1 :]:
            start = [first, second]
            gittins_arm = int(np.argmax([table[s, f] for s, f in start]))
            assert gittins_arm in bayes_optimal_arms(start, horizon, discount), start
