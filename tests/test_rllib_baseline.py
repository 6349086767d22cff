import io

import numpy as np
import pytest
import torch
from gymnasium.utils.env_checker import check_env

import metarl
from envs.bandits import BernoulliBanditEnv
from envs.mazes import MazeEnv
from envs.rllib import BANDIT, MAZE, RL2Inputs, make_bandit_env, make_maze_env, register_envs
from metarl.errors import ConfigError
from metarl.eval.bandit_baselines import run_baseline
from metarl.policies import rl2_inputs
from metarl.trainer import build_config, resolve_config

TINY = {
    "env.num_arms": 3,
    "env.horizon": 5,
    "model.lstm_cell_size": 16,
    "model.tokenizer_hiddens": [8],
    "ppo.train_batch_size": 200,
    "ppo.minibatches": 2,
    "ppo.epochs": 1,
    "rllib.envs_per_runner": 2,
    "train.iterations": 1,
}


def config(**overrides):
    return resolve_config(build_config("rllib-lstm-bandit", {**TINY, **overrides}))


def expected_inputs(env, obs, previous):
    action, reward, done = previous
    return rl2_inputs(obs[None], np.array([action]), np.array([reward]), np.array([done]), env)[0]


@pytest.mark.filterwarnings("ignore:.*different from the unwrapped")
def test_registered_envs_build_the_wrapped_task_distributions():
    from ray.tune.registry import ENV_CREATOR, _global_registry

    register_envs()
    bandit = _global_registry.get(ENV_CREATOR, BANDIT)({"num_arms": 3, "horizon": 4})
    maze = _global_registry.get(ENV_CREATOR, MAZE)({"size": 3, "episodes_per_trial": 2})
    assert isinstance(bandit.unwrapped, BernoulliBanditEnv) and bandit.unwrapped.horizon == 4
    assert isinstance(maze.unwrapped, MazeEnv) and maze.unwrapped.size == 3
    for env in (bandit, maze):
        assert isinstance(env, RL2Inputs)
        check_env(env, skip_render_check=True)


def test_maze_observations_are_rl2_inputs_with_the_inner_episode_end():
    """A hand-made action sequence: each observation is rl2_inputs of the plain maze's
    observation, the previous action, reward and info["episode_end"]."""
    config = {"size": 3, "episodes_per_trial": 2, "max_episode_steps": 3}
    wrapped, plain = make_maze_env(config), MazeEnv(**config)
    obs, _ = wrapped.reset(seed=7)
    raw, _ = plain.reset(seed=7)
    assert obs.shape == wrapped.observation_space.shape == (raw.size + 4 + 2,)
    np.testing.assert_array_equal(obs, expected_inputs(4, raw, (-1, 0.0, False)))
    assert not obs[raw.size : raw.size + 4].any()  # no previous action at the start
    ends = []
    for action in [1, 2, 2, 0, 3, 1, 2]:
        obs, reward, terminated, truncated, info = wrapped.step(action)
        raw, raw_reward, *_, raw_info = plain.step(action)
        assert reward == raw_reward
        previous = (action, raw_reward, raw_info["episode_end"])
        np.testing.assert_array_equal(obs, expected_inputs(4, raw, previous))
        assert obs[raw.size + action] == 1 and obs[-2] == reward
        ends.append(obs[-1])
        if terminated or truncated:
            break
    assert max(ends[:3]) == 1  # the first inner episode ends within its cap of 3 steps


@pytest.mark.parametrize("bootstrap", [False, True])
def test_a_trial_ends_terminated_unless_the_recipe_bootstraps_past_it(bootstrap):
    """RLlib bootstraps a value only at a truncation: by default the trial's last pull
    terminates it, as metarl's PPO ends a trial."""
    from agents.rllib_rl2 import ppo_config

    env_config = ppo_config(config(**{"rllib.bootstrap_trial_end": bootstrap})).env_config
    env = make_bandit_env(env_config)
    env.reset(seed=0)
    ends = [tuple(env.step(0)[2:4]) for _ in range(5)]  # (terminated, truncated)
    assert ends[:4] == [(False, False)] * 4
    assert ends[4] == ((False, True) if bootstrap else (True, False))
    maze = make_maze_env({"size": 3, "episodes_per_trial": 1, "max_episode_steps": 2})
    maze.reset(seed=0)
    while not any(end := tuple(maze.step(0)[2:4])):
        pass
    assert end == (True, False)


def test_evaluation_feeds_the_module_what_the_training_env_observes():
    from agents.rllib_rl2 import RLModuleBanditPolicy

    class NoModule:
        def get_initial_state(self):
            return {}

    env = make_bandit_env({"num_arms": 3, "horizon": 4})
    policy = RLModuleBanditPolicy(NoModule())
    policy.reset(1, 3, 4, np.random.default_rng(0))
    obs, _ = env.reset(seed=0)
    for action in [2, 0, 0, 1]:
        np.testing.assert_array_equal(policy.inputs()[0], obs)
        obs, reward, *_ = env.step(action)
        policy.observe(np.array([action]), np.array([reward]))
    np.testing.assert_array_equal(policy.inputs()[0], obs)


def test_one_iteration_trains_and_evaluates_against_the_bandit_baselines(tmp_path):
    run = metarl.train("rllib-lstm-bandit", out=tmp_path / "run", progress=False, overrides=TINY)
    assert run.summary["iterations"] == 1 and run.summary["env_steps"] >= 200
    assert np.isfinite(run.summary["final_mean_return"])
    report = run.evaluate(episodes=50)
    assert report["metric"] == "cumulative_reward" and report["episodes"] == 50
    assert set(report["baselines"]) >= {"random", "ucb1", "thompson", "gittins"}
    assert len(report["curve"]["agent"]) == 5
    assert 0 <= report["value"] <= 5


def trial_actions(agent, tasks: np.ndarray) -> np.ndarray:
    """The arms the agent's RLModule pulls on ``tasks`` (tasks, horizon), sampling from a
    fixed stream."""
    from agents.rllib_rl2 import RLModuleBanditPolicy

    policy, pulls = RLModuleBanditPolicy(agent.module()), []
    observe = policy.observe
    policy.observe = lambda actions, rewards: (pulls.append(actions), observe(actions, rewards))
    uniforms = np.random.default_rng(4).random((*tasks.shape, agent.config.env.horizon))
    run_baseline(policy, tasks, uniforms, seed=3)
    return np.stack(pulls, axis=1)


def test_state_dict_round_trips_into_a_fresh_agent():
    from agents.rllib_rl2 import build

    tasks = np.random.default_rng(0).random((200, 3))
    trained = build(config(seed=0))
    try:
        trained.train_iteration(0)
        buffer = io.BytesIO()
        torch.save(trained.state_dict(), buffer)
        expected = trial_actions(trained, tasks)
    finally:
        trained.close()
    fresh = build(config(seed=1))
    try:
        assert not np.array_equal(trial_actions(fresh, tasks), expected)
        buffer.seek(0)
        fresh.load_state_dict(torch.load(buffer, weights_only=False))
        np.testing.assert_array_equal(trial_actions(fresh, tasks), expected)
        assert fresh.algo.training_iteration == 1
    finally:
        fresh.close()


@pytest.mark.parametrize(
    ("key", "value", "message"),
    [
        ("ppo.train_batch_size", 4, "ppo.train_batch_size"),
        ("ppo.normalize_advantages", False, "ppo.normalize_advantages"),
        ("ppo.entropy_final", 0.001, "constant entropy bonus"),
        ("ppo.lr", 0, "ppo.lr"),
        ("model.tokenizer_hiddens", [], "model.tokenizer_hiddens"),
        ("model.lstm_cell_size", 0, "model.lstm_cell_size"),
        ("rllib.env_runners", -1, "rllib.env_runners"),
        ("rllib.envs_per_runner", 0, "rllib.envs_per_runner"),
        ("env.horizon", 0, "env.horizon"),
        ("sampler", {"backend": "ray"}, "sampler"),
    ],
)
def test_bad_config_values_are_rejected_naming_the_key(key, value, message):
    with pytest.raises(ConfigError, match=message):
        config(**{key: value})
