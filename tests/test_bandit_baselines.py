"""Batched bandit baselines: the protocol, tie-breaking, exactness and the expected ordering."""

from __future__ import annotations

import numpy as np
import pytest

from metarl.eval.bandit_baselines import (
    BASELINES,
    EpsilonGreedyPolicy,
    GittinsPolicy,
    GreedyPolicy,
    RandomPolicy,
)
from metarl.eval.bandits import run_baseline
from metarl.eval.bayes_optimal import index_policy_value
from metarl.eval.gittins import argmax_random_ties, gittins_discount, gittins_index_table


@pytest.fixture(autouse=True)
def private_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("METARL_CACHE_DIR", str(tmp_path))
    gittins_index_table.cache_clear()
    gittins_discount.cache_clear()


def test_registry_names_every_policy():
    assert set(BASELINES) == {"random", "greedy", "epsilon_greedy", "ucb1", "thompson", "gittins"}
    for name, make in BASELINES.items():
        assert make().name == name


@pytest.mark.parametrize("name", sorted(BASELINES))
def test_policies_play_a_batch_of_bandits(name):
    means = np.random.default_rng(0).random((64, 2))
    rewards = run_baseline(BASELINES[name](), means, 7, seed=0)
    assert rewards.shape == (64, 7) and rewards.dtype == np.float64
    assert set(np.unique(rewards)) <= {0.0, 1.0}
    policy = BASELINES[name]()
    policy.reset(3, 4, 5, np.random.default_rng(1))
    actions = policy.act()
    assert actions.shape == (3,) and actions.dtype == np.int64
    assert np.all((actions >= 0) & (actions < 4))


def test_same_seed_same_rewards():
    means = np.random.default_rng(0).random((32, 5))
    runs = [run_baseline(BASELINES["thompson"](), means, 20, seed=7) for _ in "ab"]
    np.testing.assert_array_equal(*runs)


def test_ties_are_broken_uniformly_at_random():
    counts = np.bincount(argmax_random_ties(np.ones((40_000, 4)), np.random.default_rng(0)))
    assert np.all(np.abs(counts / 40_000 - 0.25) < 0.01)
    assert np.all(
        argmax_random_ties(np.array([[0.0, 2.0, 1.0]] * 5), np.random.default_rng(0)) == 1
    )


def simulate_actions(policy, means: np.ndarray, horizon: int, rng) -> np.ndarray:
    """The arms pulled (num_tasks, horizon), rewards drawn from ``rng``."""
    rows = np.arange(len(means))
    policy.reset(*means.shape, horizon, rng)
    actions = np.zeros((len(means), horizon), dtype=np.int64)
    for t in range(horizon):
        actions[:, t] = policy.act()
        policy.observe(actions[:, t], rng.random(len(means)) < means[rows, actions[:, t]])
    return actions


@pytest.mark.parametrize("policy", [GreedyPolicy(), EpsilonGreedyPolicy(0.0)])
def test_greedy_tries_every_arm_once_first(policy):
    rng = np.random.default_rng(0)
    first = simulate_actions(policy, rng.random((500, 6)), 6, rng)
    assert np.all(np.sort(first, axis=1) == np.arange(6))


def test_gittins_policy_follows_the_index():
    policy = GittinsPolicy(discount=0.9)
    policy.reset(2, 2, 10, np.random.default_rng(0))
    policy.observe(np.array([0, 0]), np.array([1.0, 0.0]))
    # A success makes the tried arm better than a fresh one; a failure, worse.
    np.testing.assert_array_equal(policy.act(), [0, 1])


def greedy_index(successes: int, failures: int) -> float:
    pulls = successes + failures
    return successes / pulls if pulls else np.inf


@pytest.mark.parametrize("name", ["gittins", "greedy"])
def test_simulated_return_matches_exact_value(name):
    """Monte Carlo through the bandit env agrees with the exact value of the same index rule."""
    horizon, num_arms, num_tasks = 6, 3, 40_000
    table = gittins_index_table(0.8, horizon - 1)
    policy, index = {
        "gittins": (GittinsPolicy(discount=0.8), lambda s, f: table[s, f]),
        "greedy": (GreedyPolicy(), greedy_index),
    }[name]
    exact = index_policy_value(index, num_arms, horizon)
    means = np.random.default_rng(3).random((num_tasks, num_arms))
    totals = run_baseline(policy, means, horizon, seed=3).sum(axis=1)
    assert abs(totals.mean() - exact) < 4 * totals.std() / np.sqrt(num_tasks)


def test_baselines_are_ordered_as_published():
    """Duan et al. (2016, Table 1), n = 100 pulls of k = 5 arms: Gittins > Thompson >
    random = n / 2, on the same tasks."""
    horizon, num_tasks = 100, 2_000
    means = np.random.default_rng(0).random((num_tasks, 5))
    totals = {
        name: run_baseline(BASELINES[name](), means, horizon, seed=1).sum(axis=1)
        for name in ("random", "thompson", "gittins", "ucb1")
    }

    def paired_gap(better: str, worse: str) -> float:
        """Mean difference minus three standard errors."""
        diff = totals[better] - totals[worse]
        return diff.mean() - 3 * diff.std() / np.sqrt(num_tasks)

    assert paired_gap("gittins", "thompson") > 0
    assert paired_gap("thompson", "random") > 0
    assert paired_gap("ucb1", "random") > 0
    random = totals["random"]
    assert abs(random.mean() - horizon / 2) < 3 * random.std() / np.sqrt(num_tasks)


@pytest.mark.parametrize(
    ("num_tasks", "num_arms", "horizon", "bad"),
    [(0, 5, 10, "num_tasks"), (4, 0, 10, "num_arms"), (4, 5, 0, "horizon")],
)
@pytest.mark.parametrize("name", sorted(BASELINES))
def test_reset_rejects_bad_sizes(name, num_tasks, num_arms, horizon, bad):
    with pytest.raises(ValueError, match=bad):
        BASELINES[name]().reset(num_tasks, num_arms, horizon, np.random.default_rng(0))


def test_bad_settings_and_data_raise():
    with pytest.raises(ValueError, match="epsilon"):
        EpsilonGreedyPolicy(epsilon=1.5)
    with pytest.raises(ValueError, match="discount"):
        GittinsPolicy(discount=1.0)
    with pytest.raises(ValueError, match="means"):
        run_baseline(RandomPolicy(), np.array([[0.5, 1.5]]), 3, seed=0)
    policy = RandomPolicy()
    policy.reset(1, 2, 3, np.random.default_rng(0))
    with pytest.raises(ValueError, match="0 or 1"):
        policy.observe(np.array([0]), np.array([0.5]))


def test_gittins_policy_refuses_to_play_past_its_horizon():
    policy = GittinsPolicy(discount=0.9)
    policy.reset(2, 3, 1, np.random.default_rng(0))
    policy.observe(policy.act(), np.array([1.0, 0.0]))
    with pytest.raises(RuntimeError, match="1 pulls"):
        policy.act()
