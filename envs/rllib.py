"""The bandit and maze task distributions as RLlib environments, for RL² as RLlib runs it.

An RLlib episode is one *trial* (a gymnasium episode of :class:`envs.bandits.BernoulliBanditEnv`
or :class:`envs.mazes.MazeEnv`), and the policy sees the RL² inputs of Duan et al. (2016):
``(o_t, onehot(a_{t-1}), r_{t-1}, d_{t-1})``, exactly as :func:`metarl.policies.rl2_inputs`
builds them for metarl's own agents.

RLlib's new API stack does not feed the previous action and reward to its LSTM by itself:
``DefaultModelConfig.lstm_use_prev_action`` / ``lstm_use_prev_reward`` are read only by the old
stack's model catalog, and the ``PrevActionsPrevRewards`` connector has no episode-end flag
(the maze's inner episodes need one). :class:`RL2Inputs`, a gymnasium wrapper, adds them to
the observation instead, so any RLlib model (or none) reads them as part of ``obs``.

RLlib bootstraps the value of the last observation of a *truncated* episode. A trial's end is
no time limit on a longer task but the end of RL²'s objective (its return sums the trial's
rewards and nothing after them; metarl's PPO bootstraps nothing there), so by default the
wrapper reports it as terminated.
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces

from envs.bandits import BernoulliBanditEnv
from envs.mazes import MazeEnv
from metarl.policies import rl2_input_size, rl2_inputs

BANDIT = "metarl-bandit"
MAZE = "metarl-maze"


class RL2Inputs(gym.Wrapper):
    """Observations become the RL² inputs ``(o_t, onehot(a_{t-1}), r_{t-1}, d_{t-1})``.

    Args:
        env: an environment with a ``Box`` observation and ``Discrete`` actions.
        reward_bounds: the lowest and highest reward of one step (bounds of the reward
            entry of the observation space).
        trial_end_terminates: report the trial's end (the inner environment's truncation)
            as ``terminated``, so that no value is bootstrapped past it; false keeps it a
            truncation.

    At a reset there is no previous action (all-zero one-hot), reward 0 and flag 0. The flag
    ``d`` is ``info["episode_end"]`` where the environment sets it (the maze's inner episodes;
    every bandit pull), else the end of the trial.
    """

    def __init__(
        self,
        env: gym.Env,
        reward_bounds: tuple[float, float] = (-np.inf, np.inf),
        trial_end_terminates: bool = True,
    ) -> None:
        super().__init__(env)
        self.trial_end_terminates = trial_end_terminates
        obs_space, action_space = env.observation_space, env.action_space
        if not isinstance(obs_space, spaces.Box) or not isinstance(action_space, spaces.Discrete):
            raise ValueError(
                f"RL2Inputs needs Box observations and Discrete actions, got {obs_space} "
                f"and {action_space}"
            )
        self.num_actions = int(action_space.n)
        obs_size = int(np.prod(obs_space.shape))
        low = np.zeros(rl2_input_size(obs_size, self.num_actions), dtype=np.float32)
        high = np.ones_like(low)
        low[:obs_size], high[:obs_size] = obs_space.low.ravel(), obs_space.high.ravel()
        low[-2], high[-2] = reward_bounds
        self.observation_space = spaces.Box(low, high, dtype=np.float32)
        self._previous = (-1, 0.0, False)

    def _inputs(self, obs: np.ndarray) -> np.ndarray:
        action, reward, done = self._previous
        return rl2_inputs(
            np.asarray(obs)[None],
            np.array([action]),
            np.array([reward]),
            np.array([done]),
            self.num_actions,
        )[0]

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[np.ndarray, dict[str, Any]]:
        obs, info = self.env.reset(seed=seed, options=options)
        self._previous = (-1, 0.0, False)
        return self._inputs(obs), info

    def step(self, action: Any) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        obs, reward, terminated, truncated, info = self.env.step(action)
        done = bool(info.get("episode_end", terminated or truncated))
        self._previous = (int(action), float(reward), done)
        if self.trial_end_terminates:
            terminated, truncated = terminated or truncated, False
        return self._inputs(obs), reward, terminated, truncated, info


def make_bandit_env(env_config: dict[str, Any]) -> RL2Inputs:
    """``metarl-bandit``: :class:`BernoulliBanditEnv` trials (``env_config``: ``num_arms``,
    ``horizon``, optionally ``trial_end_terminates``) with RL² inputs."""
    config = dict(env_config)
    terminates = config.pop("trial_end_terminates", True)
    return RL2Inputs(BernoulliBanditEnv(**config), (0.0, 1.0), terminates)


def make_maze_env(env_config: dict[str, Any]) -> RL2Inputs:
    """``metarl-maze``: :class:`MazeEnv` trials (``env_config``: ``size``,
    ``episodes_per_trial``, ``max_episode_steps``, ``step_penalty``, ``view_radius``,
    ``observe_position``, optionally ``trial_end_terminates``) with RL² inputs."""
    config = dict(env_config)
    terminates = config.pop("trial_end_terminates", True)
    # a step earns 1 - step_penalty or -step_penalty, with step_penalty in [0, 1)
    return RL2Inputs(MazeEnv(**config), (-1.0, 1.0), terminates)


def register_envs() -> None:
    """Register ``metarl-bandit`` and ``metarl-maze`` with RLlib (``ray.tune.registry``), so
    that ``PPOConfig().environment("metarl-bandit", env_config={"num_arms": 5})`` finds them.
    Call it after ``ray.init`` for remote env runners to see them too."""
    from ray.tune.registry import register_env

    register_env(BANDIT, make_bandit_env)
    register_env(MAZE, make_maze_env)
