"""Batched bandit baselines: the protocol, tie-breaking, exactness and the expected ordering."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from metarl.eval.bandit_baselines import (
    BASELINES,
    EpsilonGreedyPolicy,
    GittinsPolicy,
    GreedyPolicy,
    RandomPolicy,
    UCB1Policy,
    bandit_trials,
    run_baseline,
    tune,
    tuned_constant,
)
from metarl.eval.bayes_optimal import index_policy_value
from metarl.eval.gittins import (
    argmax_random_ties,
    gittins_discount,
    gittins_index_table,
    tuning_seed,
    tuning_tasks,
)


def tape(means: np.ndarray, horizon: int) -> np.ndarray:
    """A reward tape (tasks, arms, horizon) for ``means``, from a stream of its own."""
    return np.random.default_rng(99).random((*np.shape(means), horizon))


@pytest.fixture(autouse=True)
def private_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("METARL_CACHE_DIR", str(tmp_path))
    gittins_index_table.cache_clear()
    gittins_discount.cache_clear()
    tuned_constant.cache_clear()


def test_registry_names_every_policy():
    assert set(BASELINES) == {"random", "greedy", "epsilon_greedy", "ucb1", "thompson", "gittins"}
    for name, make in BASELINES.items():
        assert make().name == name


@pytest.mark.parametrize("name", sorted(BASELINES))
def test_policies_play_a_batch_of_bandits(name):
    means = np.random.default_rng(0).random((64, 2))
    rewards = run_baseline(BASELINES[name](), means, tape(means, 7), seed=1)
    assert rewards.shape == (64, 7) and rewards.dtype == np.float64
    assert set(np.unique(rewards)) <= {0.0, 1.0}
    policy = BASELINES[name]()
    policy.reset(3, 4, 5, np.random.default_rng(1))
    actions = policy.act()
    assert actions.shape == (3,) and actions.dtype == np.int64
    assert np.all((actions >= 0) & (actions < 4))


def test_same_seed_same_rewards():
    means = np.random.default_rng(0).random((32, 5))
    runs = [run_baseline(BASELINES["thompson"](), means, tape(means, 20), seed=7) for _ in "ab"]
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
    totals = run_baseline(policy, means, tape(means, horizon), seed=11).sum(axis=1)
    assert abs(totals.mean() - exact) < 4 * totals.std() / np.sqrt(num_tasks)


def test_baselines_are_ordered_as_published():
    """Duan et al. (2016, Table 1), n = 100 pulls of k = 5 arms: Gittins > Thompson >
    random = n / 2, and tuned UCB1 (78.0 published) > greedy, on the same tasks. UCB1 with
    the textbook bonus sqrt(2) earned 66.1 against greedy's 76.7."""
    horizon, num_tasks = 100, 2_000
    means = np.random.default_rng(0).random((num_tasks, 5))
    totals = {
        name: run_baseline(BASELINES[name](), means, tape(means, horizon), seed=1).sum(axis=1)
        for name in ("random", "greedy", "thompson", "gittins", "ucb1")
    }

    def paired_gap(better: str, worse: str) -> float:
        """Mean difference minus three standard errors."""
        diff = totals[better] - totals[worse]
        return diff.mean() - 3 * diff.std() / np.sqrt(num_tasks)

    assert paired_gap("gittins", "thompson") > 0
    assert paired_gap("thompson", "random") > 0
    assert paired_gap("ucb1", "greedy") > 0
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
        EpsilonGreedyPolicy(1.5)
    with pytest.raises(ValueError, match=r"c must lie in \[0.0, inf\], got -0.1"):
        UCB1Policy(-0.1)
    with pytest.raises(ValueError, match="c must lie"):
        UCB1Policy(math.inf)
    with pytest.raises(ValueError, match="discount"):
        GittinsPolicy(discount=1.0)
    with pytest.raises(ValueError, match="means"):
        run_baseline(RandomPolicy(), np.array([[0.5, 1.5]]), np.zeros((1, 2, 3)), seed=0)
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


def switching_bandits(num_tasks: int, horizon: int) -> tuple[np.ndarray, np.ndarray]:
    """Two arms whose first pull misleads: arm 0 (mean 0.5) pays on its first pull only,
    arm 1 (mean 0.9) on every pull but its first. A greedy player, having seen 1 against 0,
    stays on arm 0 and earns 1 in total; exploring finds arm 1."""
    means = np.tile([0.5, 0.9], (num_tasks, 1))
    uniforms = np.empty((num_tasks, 2, horizon))
    uniforms[:, 0], uniforms[:, 1] = 0.9, 0.1
    uniforms[:, 0, 0], uniforms[:, 1, 0] = 0.1, 0.95
    return means, uniforms


def test_tuning_picks_the_constant_that_earns_most():
    means, uniforms = switching_bandits(2_000, 4)
    # epsilon = 0 earns exactly 1; epsilon = 1 pulls pulls 3 and 4 at random, each paying 1 on
    # arm 1 (its pulls after the first): 1 + 0.5 + 0.5 = 2 expected.
    assert tune(EpsilonGreedyPolicy, (0.0, 1.0), means, uniforms, seed=0) == 1.0
    assert run_baseline(GreedyPolicy(), means, uniforms, seed=0).sum(axis=1).max() == 1.0
    # c = 10: pull 3 goes to arm 0 (1 + 10 sqrt(ln 2) against 10 sqrt(ln 2)) and pays 0, pull
    # 4 to arm 1 (10 sqrt(ln 3) against 0.5 + 10 sqrt(ln 3 / 2)) and pays 1: 2 in all.
    rewards = run_baseline(UCB1Policy(10.0), means, uniforms, seed=0)
    np.testing.assert_array_equal(rewards.sum(axis=1), 2.0)
    assert tune(UCB1Policy, (0.0, 10.0), means, uniforms, seed=0) == 10.0
    assert tune(UCB1Policy, (10.0, 20.0), means, uniforms, seed=0) == 10.0  # a tie: the first


def test_tuned_constants_are_cached_on_disk_and_played(tmp_path, monkeypatch):
    c = tuned_constant("ucb1", 6, 2)
    epsilon = tuned_constant("epsilon_greedy", 6, 2)
    saved = json.loads((tmp_path / "gittins" / "tuned-v1.json").read_text())
    assert saved == {"ucb1,6,2": c, "epsilon_greedy,6,2": epsilon}
    tuned_constant.cache_clear()
    monkeypatch.setattr("metarl.eval.bandit_baselines.tune", None)  # no second tuning
    assert tuned_constant("ucb1", 6, 2) == c
    policy = UCB1Policy()
    policy.reset(3, 2, 6, np.random.default_rng(0))
    assert policy.settings() == {"c": c}
    given = EpsilonGreedyPolicy(0.25)
    given.reset(3, 2, 6, np.random.default_rng(0))
    assert given.settings() == {"epsilon": 0.25}


@pytest.mark.parametrize("eval_seed", [0, 1, 2_147_483_647])
def test_tuning_tasks_are_disjoint_from_evaluation_tasks(eval_seed):
    """Whatever ``eval.seed`` is, even the tuning's own entropy 0, no number of the
    evaluation's tasks or rewards appears among the tuning's tasks (bandit baselines) or
    draws (Gittins' index_policy_return reads one generator of tuning_seed)."""
    held_out, uniforms, _ = bandit_trials(np.random.SeedSequence(eval_seed), 1_000, 5, 10)
    tuning, _, _ = bandit_trials(tuning_seed(), tuning_tasks(10, 5), 5, 10)
    gittins_draws = np.random.default_rng(tuning_seed()).random(100_000)
    evaluation = np.concatenate([held_out.ravel(), uniforms.ravel()])
    assert np.intersect1d(evaluation, tuning.ravel()).size == 0
    assert np.intersect1d(evaluation, gittins_draws).size == 0
