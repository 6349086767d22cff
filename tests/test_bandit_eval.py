"""Bandit evaluation: independent streams, common random numbers for the agent and every
baseline, and the paired differences of eval.json."""

from __future__ import annotations

import numpy as np
import pytest

from agents.rl2_bandit import Config, RL2BanditAgent
from metarl.eval.bandit_baselines import BASELINES, bandit_trials, run_baseline
from metarl.eval.bandits import bandit_report
from metarl.eval.gittins import gittins_discount, gittins_index_table


@pytest.fixture(autouse=True)
def private_cache(tmp_path, monkeypatch):
    from metarl.eval.bandit_baselines import tuned_constant

    monkeypatch.setenv("METARL_CACHE_DIR", str(tmp_path))
    for cached in (gittins_index_table, gittins_discount, tuned_constant):
        cached.cache_clear()


def test_tasks_and_rewards_come_from_independent_streams():
    """Once the reward uniforms of step t were the task numbers ``tasks.flat[t N + i]``: now
    no reward reuses a number of the tasks, and the tasks do not depend on the horizon."""
    seed = np.random.SeedSequence(7)
    tasks, uniforms, players = bandit_trials(seed, 300, 5, 10)
    assert tasks.shape == (300, 5) and uniforms.shape == (300, 5, 10)
    assert np.intersect1d(tasks.ravel(), uniforms.ravel()).size == 0
    longer, _, same_players = bandit_trials(seed, 300, 5, 50)
    np.testing.assert_array_equal(tasks, longer)
    assert same_players == players
    other, _, _ = bandit_trials(np.random.SeedSequence(8), 300, 5, 10)
    assert np.intersect1d(tasks.ravel(), other.ravel()).size == 0


def check_tape(actions: np.ndarray, rewards: np.ndarray, tasks, uniforms) -> None:
    """Every reward is the tape's: the j-th pull of arm a in task i pays u[i, a, j] < mean."""
    pulls = np.zeros(tasks.shape, dtype=np.int64)
    rows = np.arange(len(tasks))
    for t in range(actions.shape[1]):
        arm = actions[:, t]
        expected = uniforms[rows, arm, pulls[rows, arm]] < tasks[rows, arm]
        np.testing.assert_array_equal(rewards[:, t], expected)
        pulls[rows, arm] += 1


def played(name: str, tasks, uniforms, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """The actions and rewards (tasks, horizon) of baseline ``name``."""
    policy, actions = BASELINES[name](), []
    observe = policy.observe
    policy.observe = lambda a, r: (actions.append(a.copy()), observe(a, r))
    rewards = run_baseline(policy, tasks, uniforms, seed)
    return np.stack(actions, axis=1), rewards


def test_agent_and_baselines_meet_the_same_reward_for_the_same_pull():
    tasks, uniforms, players = bandit_trials(np.random.SeedSequence(3), 64, 3, 8)
    for name in ("thompson", "ucb1", "random"):
        check_tape(*played(name, tasks, uniforms, players), tasks, uniforms)
    config = Config(name="t", agent="rl2-bandit", trials_per_iteration=8)
    config.env.num_arms, config.env.horizon = 3, 8
    agent = RL2BanditAgent(config)
    try:
        batch = agent.held_out_trials(tasks, players, {"reward_uniforms": uniforms})
    finally:
        agent.close()
    check_tape(batch["actions"], batch["rewards"], tasks, uniforms)
    # the check has teeth: other luck for the same actions pays differently
    with pytest.raises(AssertionError):
        check_tape(batch["actions"], batch["rewards"], tasks, 1 - uniforms)


def test_report_pairs_the_agent_with_every_baseline():
    """An "agent" that plays exactly as the random baseline, with the random baseline's own
    stream, is its twin: paired difference 0 with half-width 0. Against Gittins, the paired
    difference is the difference of the per-task totals, with Student's t half-width."""
    tasks, uniforms, players = bandit_trials(np.random.SeedSequence(5), 200, 2, 6)
    twin = run_baseline(
        BASELINES["random"](), tasks, uniforms, np.random.SeedSequence([players, 1])
    )
    report = bandit_report(twin, tasks, uniforms, players)
    assert list(BASELINES)[0] == "random"
    assert report["paired"]["random"] == {"diff": 0.0, "ci95": 0.0, "tasks": 200, "verdict": "tie"}
    gittins = run_baseline(
        BASELINES["gittins"](), tasks, uniforms, np.random.SeedSequence([players, 6])
    )
    diff = twin.sum(axis=1) - gittins.sum(axis=1)
    half = 1.9719565443 * diff.std(ddof=1) / np.sqrt(200)  # t quantile, 199 degrees of freedom
    assert report["paired"]["gittins"]["diff"] == pytest.approx(diff.mean())
    assert report["paired"]["gittins"]["ci95"] == pytest.approx(half, rel=1e-6)
    assert report["paired"]["gittins"]["diff"] < 0
    assert set(report["paired"]) == set(BASELINES) == set(report["baselines"])
    assert set(report["baseline_settings"]) == {"greedy", "epsilon_greedy", "ucb1", "gittins"}


def test_compare_pairs_two_bandit_evaluations_task_by_task(tmp_path):
    """Two players' reports on the same tasks and tape compare as the report itself pairs
    them; a report on other tasks (seed) or another tape (horizon) is refused."""
    from metarl import runs
    from metarl.errors import UsageError
    from metarl.eval.report import compare_runs

    def report_of(name: str, seed: int, horizon: int, folder: str) -> str:
        tasks, uniforms, players = bandit_trials(np.random.SeedSequence(seed), 100, 2, horizon)
        j = list(BASELINES).index(name) + 1  # the report's own stream for this baseline
        rewards = run_baseline(
            BASELINES[name](), tasks, uniforms, np.random.SeedSequence([players, j])
        )
        report = bandit_report(rewards, tasks, uniforms, players)
        assert report["scores"] == pytest.approx(rewards.sum(axis=1).tolist())
        (tmp_path / folder).mkdir()
        runs.write_json(tmp_path / folder / "eval.json", report)
        return str(tmp_path / folder)

    random, gittins = report_of("random", 5, 6, "a"), report_of("gittins", 5, 6, "b")
    paired_in_report = runs.read_json(tmp_path / "a" / "eval.json")["paired"]["gittins"]
    assert compare_runs(random, gittins) == pytest.approx(paired_in_report)
    for seed, horizon, folder in ((6, 6, "other-tasks"), (5, 7, "other-tape")):
        with pytest.raises(UsageError, match="were not evaluated on the same tasks"):
            compare_runs(random, report_of("gittins", seed, horizon, folder))
