"""Meta-World task distributions (the optional ``metaworld`` extra): tasks are set, the
success flag is read, the benchmark's train/test split is kept, and without the extra a
Meta-World experiment stops with one line naming it."""

import functools
import importlib.util
import sys

import gymnasium as gym
import numpy as np
import pytest
import torch
from gymnasium.utils.env_checker import check_env

from metarl.cli import main
from metarl.rollout import EpisodeWorker, TaskShard

needs_metaworld = pytest.mark.skipif(
    importlib.util.find_spec("metaworld") is None,
    reason='the metaworld extra is not installed (pip install -e ".[metaworld]")',
)


@pytest.mark.parametrize("experiment", ["maml-ml1-reach", "snail-ml1-reach"])
def test_without_the_extra_a_metaworld_experiment_exits_2_with_one_line(
    experiment, tmp_path, monkeypatch, capsys
):
    monkeypatch.setitem(sys.modules, "metaworld", None)  # import metaworld raises ImportError
    out = tmp_path / "run"
    assert main(["train", experiment, "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err
    assert 'pip install -e ".[metaworld]"' in err
    assert not out.exists()


class _FlagEnv(gym.Env):
    """Sets ``info["success"]`` at step 2 of episodes of tasks >= 1 only."""

    observation_space = gym.spaces.Box(-1.0, 1.0, (1,), dtype=np.float32)
    action_space = gym.spaces.Box(-1.0, 1.0, (1,), dtype=np.float32)

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.task, self.t = int(options["task"]), 0
        return np.zeros(1, dtype=np.float32), {}

    def step(self, action):
        self.t += 1
        info = {"success": float(self.task >= 1 and self.t == 2)}
        return np.zeros(1, dtype=np.float32), 0.0, False, self.t == 4, info


def test_the_episode_worker_reads_the_success_flag_at_any_step():
    from metarl.policies import GaussianMLPPolicy

    worker = EpisodeWorker(
        lambda n: gym.vector.SyncVectorEnv([_FlagEnv] * n),
        functools.partial(GaussianMLPPolicy, 1, 1, (4,)),
        episodes=3,
        horizon=4,
    )
    (batch,) = worker.sample(None, [TaskShard(0, np.array([0, 1]))])
    np.testing.assert_array_equal(batch["success"], [[0, 0, 0], [1, 1, 1]])


@pytest.fixture(scope="module")
def reach():
    from envs.metaworld import metaworld_tasks

    return metaworld_tasks("ML1", "reach")


@needs_metaworld
@pytest.mark.filterwarnings("ignore:.*Box observation space")  # object values are unbounded
def test_ml1_tasks_set_different_goals_and_rewards(reach):
    from envs.metaworld import MetaWorldEnv

    env = MetaWorldEnv(reach, horizon=5)
    check_env(env, skip_render_check=True)
    goals, rewards = [], []
    for task in (0, 1):
        env.reset(seed=0, options={"task": task})
        goals.append(env._sim._target_pos.copy())
        rewards.append(env.step(np.zeros(4, dtype=np.float32))[1])
    assert not np.allclose(goals[0], goals[1])
    assert rewards[0] != rewards[1]
    env.close()


@needs_metaworld
def test_reaching_the_goal_sets_the_success_flag(reach):
    from envs.metaworld import MetaWorldEnv

    env = MetaWorldEnv(reach, horizon=150)
    obs, _ = env.reset(seed=0, options={"task": 3})
    target = env._sim._target_pos.copy()  # hidden from the policy, read here to script it
    solved, truncated = [], False
    while not truncated:
        action = np.append(np.clip((target - obs[:3]) * 20, -1, 1), 0.0).astype(np.float32)
        obs, _, _, truncated, info = env.step(action)
        solved.append(info["success"])
    assert not solved[0] and max(solved) == 1.0
    env.close()


@needs_metaworld
def test_ml1_train_and_held_out_tasks_are_the_benchmarks_splits(reach):
    from envs.metaworld import MetaWorldEnv

    env = MetaWorldEnv(reach)
    env.reset(seed=1)
    train, held_out = env.sample_tasks(200), env.sample_held_out_tasks(50)
    assert train.max() < reach.num_train <= held_out.min()
    np.testing.assert_array_equal(np.sort(held_out), reach.split(held_out=True))  # all 50
    data = [reach.tasks[i].data for i in range(len(reach.tasks))]
    assert not {data[i] for i in reach.split(False)} & {data[i] for i in reach.split(True)}
    with pytest.raises(ValueError, match="index"):
        env.set_task(len(reach.tasks))


@needs_metaworld
def test_ml10_held_out_tasks_are_its_five_test_classes():
    from envs.metaworld import metaworld_tasks

    ml10 = metaworld_tasks("ML10")
    rng = np.random.default_rng(0)
    train = {ml10.names[i] for i in ml10.sample(rng, 20)}
    test = {ml10.names[i] for i in ml10.sample(rng, 50, held_out=True)}
    assert len(train) == 10 and len(test) == 5 and not train & test


@needs_metaworld
def test_maml_evaluates_on_held_out_goals_and_reports_success(reach):
    from agents.maml_rl import Config, MetaPGAgent
    from metarl.config import from_dict

    config = from_dict(
        Config,
        {
            "name": "t",
            "agent": "maml-rl",
            "env": {"family": "ML1", "task": "reach", "horizon": 5, "episodes_per_task": 3},
            "eval": {"steps": 1, "scored_episodes": 2, "ppo_tasks": 0, "workers": 1},
        },
    )
    agent = MetaPGAgent(config)
    try:
        assert agent.sample_tasks(0, 8, held_out=True).min() >= reach.num_train
        report = agent.evaluate(2)
    finally:
        agent.close()
    assert report["metric"] == "success_rate" and report["scored_episodes"] == 2
    assert set(report["curve"]) == {"x", "agent", "pretrained_finetuned"}
    assert 0.0 <= report["value"] <= 1.0


@needs_metaworld
def test_rl2_trials_reset_the_same_task_between_episodes_and_read_the_flag(reach):
    from envs.metaworld import MetaWorldTrialVectorEnv

    env = MetaWorldTrialVectorEnv(2, "ML1", "reach", horizon=150, episodes_per_trial=2)
    first, info = env.reset(seed=0, options={"tasks": np.array([3, 60])})
    np.testing.assert_array_equal(info["task"], [3, 60])
    targets = [e._sim._target_pos.copy() for e in env.envs]  # hidden; read to script it
    obs, ends, solved, starts = first, [], [], []
    for t in range(300):
        actions = np.zeros((2, 4), dtype=np.float32)
        if t < 150:  # the first episode reaches for task 3's goal only
            actions[0, :3] = np.clip((targets[0] - obs[0, :3]) * 20, -1, 1)
        obs, _, terminated, truncated, info = env.step(actions)
        ends.append(info["episode_end"][0])
        solved.append(info["success"])
        if t == 149:
            starts = obs.copy()
        assert not terminated.any() and truncated.all() == (t == 299)
    assert np.flatnonzero(ends).tolist() == [149, 299]
    np.testing.assert_allclose(starts, first, atol=1e-6)  # episode 2 starts afresh, same goal
    solved = np.array(solved)
    assert solved[:150, 0].max() == 1.0 and solved[150:, 0].max() == 0.0
    assert solved[:, 1].max() == 0.0
    with pytest.raises(ValueError, match="task indices"):
        env.reset(options={"tasks": np.array([0, len(reach.tasks)])})
    env.close()


@needs_metaworld
def test_rl2_trains_a_gaussian_snail_and_reports_success_by_episode(reach):
    from agents.rl2_metaworld import Config, RL2MetaWorldAgent
    from metarl.config import from_dict

    config = from_dict(
        Config,
        {
            "name": "t",
            "agent": "rl2-metaworld",
            "trials_per_iteration": 4,
            "env": {"benchmark": "ML1", "task": "reach", "horizon": 6, "episodes_per_trial": 3},
            "model": {"backbone": "snail", "blocks": ["tc 8", "attention 8 8"]},
            "sampler": {"shards": 2},
        },
    )
    agent = RL2MetaWorldAgent(config)
    try:
        before = [p.detach().clone() for p in agent.policy.parameters()]
        metrics = agent.train_iteration(0)
        report = agent.evaluate(3)
    finally:
        agent.close()
    assert metrics["env_steps"] == 4 * 18 and 0.0 <= metrics["success_rate"] <= 1.0
    assert any(
        not torch.equal(a, b) for a, b in zip(before, agent.policy.parameters(), strict=True)
    )
    assert report["metric"] == "success_rate" and report["curve_of"] == "episode"
    assert report["curve"]["x"] == [1, 2, 3] and set(report["paired"]) == {
        "random",
        "first_episode",
    }
    assert len(report["return_curve"]["random"]) == 3 and report["episodes"] == 3


def test_task_draws_balance_classes_and_small_draws_reach_every_class():
    """Rollout shards draw a few tasks each: over many draws every class must come up (the
    benchmark itself is not needed: tasks are indices into its names)."""
    from collections import Counter

    from envs.metaworld import MetaWorldTasks

    names = tuple(f"class-{c}" for c in range(10) for _ in range(50))
    tasks = MetaWorldTasks("ML10", names, tuple(range(len(names))), num_train=len(names))
    rng = np.random.default_rng(0)
    assert len({names[i] for _ in range(40) for i in tasks.sample(rng, 2)}) == 10
    counts = Counter(names[i] for i in tasks.sample(rng, 15))
    assert len(counts) == 10 and sorted(set(counts.values())) == [1, 2]
    draw = tasks.sample(rng, 50)
    assert len(set(draw)) == 50 and set(Counter(names[i] for i in draw).values()) == {5}
