"""Bernoulli multi-armed bandits as a task distribution (Duan et al. 2016; Mishra et al. 2018).

A *task* is the vector of arm means, drawn i.i.d. from U[0, 1]. A gymnasium episode is one
*trial*: ``horizon`` pulls of the same task, after which it is truncated. The observation is a
constant placeholder: everything the agent learns comes from its previous actions and rewards,
which the meta-learner's input wrapper supplies (RL² inputs).

Rewards come from the environment's generator, unless a *reward tape* is fixed: uniforms
``u[arm, j]`` per task such that the j-th pull of an arm (counted from 0 within the trial) pays
``u[arm, j] < mean[arm]``. Evaluation fixes one tape per held-out task, so the agent and every
baseline meet the same luck for the same (task, arm, pull count), and their comparison is
paired (common random numbers).

Two implementations with the same semantics:

- :class:`BernoulliBanditEnv`, a plain :class:`gymnasium.Env` (passes ``check_env``);
- :class:`BernoulliBanditVectorEnv`, a :class:`gymnasium.vector.VectorEnv` that steps thousands
  of tasks at once in numpy.
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces
from gymnasium.vector import AutoresetMode, VectorEnv
from gymnasium.vector.utils import batch_space

from envs.tasks import check_actions, next_tasks, reset_task, reset_tasks
from metarl.config import require_positive


def _check_sizes(num_arms: int, horizon: int) -> None:
    require_positive("BernoulliBandit", "num_arms", num_arms)
    require_positive("BernoulliBandit", "horizon", horizon)


def sample_tasks(rng: np.random.Generator, num_tasks: int, num_arms: int) -> np.ndarray:
    """Draw ``num_tasks`` tasks: arm means i.i.d. U[0, 1], shape (num_tasks, num_arms)."""
    return rng.random((num_tasks, num_arms))


def _check_tasks(tasks: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    tasks = np.asarray(tasks, dtype=np.float64)
    if tasks.shape != shape:
        raise ValueError(f"tasks must have shape {shape}, got {tasks.shape}")
    if np.any((tasks < 0) | (tasks > 1)):
        raise ValueError("arm means must lie in [0, 1]")
    return tasks


def _check_uniforms(uniforms: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    uniforms = np.asarray(uniforms, dtype=np.float64)
    if uniforms.shape != shape:
        raise ValueError(f"reward_uniforms must have shape {shape}, got {uniforms.shape}")
    if np.any((uniforms < 0) | (uniforms >= 1)):
        raise ValueError("reward_uniforms must lie in [0, 1)")
    return uniforms


class BernoulliBanditEnv(gym.Env):
    """One k-armed Bernoulli bandit; an episode is a trial of ``horizon`` pulls.

    Args:
        num_arms: number of arms k.
        horizon: pulls per trial n.

    A new task is drawn from ``self.np_random`` at every reset, unless one was fixed with
    :meth:`set_task` or passed as ``reset(options={"task": means})``; likewise the rewards,
    unless a tape was fixed with :meth:`set_reward_uniforms` or
    ``reset(options={"reward_uniforms": u})``.
    """

    metadata = {"render_modes": []}

    def __init__(self, num_arms: int = 5, horizon: int = 10) -> None:
        _check_sizes(num_arms, horizon)
        self.num_arms = int(num_arms)
        self.horizon = int(horizon)
        self.observation_space = spaces.Box(0.0, 1.0, shape=(1,), dtype=np.float32)
        self.action_space = spaces.Discrete(self.num_arms)
        self._fixed_task: np.ndarray | None = None
        self._uniforms: np.ndarray | None = None
        self.task = np.full(self.num_arms, 0.5)
        self._t = 0
        self._pulls = np.zeros(self.num_arms, dtype=np.int64)

    @property
    def max_trial_steps(self) -> int:
        """Steps in one trial."""
        return self.horizon

    def sample_tasks(self, num_tasks: int) -> np.ndarray:
        """Draw tasks from this environment's random generator."""
        return sample_tasks(self.np_random, num_tasks, self.num_arms)

    def set_task(self, task: np.ndarray | None) -> None:
        """Fix the arm means used from the next reset on (``None``: sample at each reset)."""
        self._fixed_task = None if task is None else _check_tasks(task, (self.num_arms,))

    def set_reward_uniforms(self, uniforms: np.ndarray | None) -> None:
        """Fix the reward tape (num_arms, horizon) from the next reset on: the j-th pull of
        arm a pays ``uniforms[a, j] < mean[a]`` (``None``: draw from ``np_random``)."""
        shape = (self.num_arms, self.horizon)
        self._uniforms = None if uniforms is None else _check_uniforms(uniforms, shape)

    def _obs(self) -> np.ndarray:
        return np.zeros(1, dtype=np.float32)

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[np.ndarray, dict[str, Any]]:
        reset_task(self, seed, options)
        if options and "reward_uniforms" in options:
            self.set_reward_uniforms(options["reward_uniforms"])
        self._t = 0
        self._pulls[:] = 0
        return self._obs(), {"task": self.task.copy()}

    def step(self, action: int) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        if not self.action_space.contains(action):
            raise ValueError(f"invalid action {action!r} for {self.num_arms} arms")
        action = int(action)
        if self._uniforms is None:
            uniform = self.np_random.random()
        else:
            uniform = self._uniforms[action, self._pulls[action]]
        self._pulls[action] += 1
        reward = float(uniform < self.task[action])
        self._t += 1
        truncated = self._t >= self.horizon
        return self._obs(), reward, False, truncated, {"episode_end": True}


class BernoulliBanditVectorEnv(VectorEnv):
    """``num_envs`` independent bandit trials stepped together in numpy.

    Semantics equal ``num_envs`` copies of :class:`BernoulliBanditEnv` under gymnasium's
    next-step autoreset: all trials have the same length, so every sub-environment ends on the
    same step, and the step after that resets them with fresh tasks (reward 0).

    Args:
        num_envs: number of tasks stepped at once.
        num_arms: number of arms k.
        horizon: pulls per trial n.
    """

    metadata = {"autoreset_mode": AutoresetMode.NEXT_STEP}

    def __init__(self, num_envs: int, num_arms: int = 5, horizon: int = 10) -> None:
        _check_sizes(num_arms, horizon)
        self.num_envs = require_positive("BernoulliBanditVectorEnv", "num_envs", num_envs)
        self.num_arms = int(num_arms)
        self.horizon = int(horizon)
        self.single_observation_space = spaces.Box(0.0, 1.0, shape=(1,), dtype=np.float32)
        self.single_action_space = spaces.Discrete(self.num_arms)
        self.observation_space = batch_space(self.single_observation_space, self.num_envs)
        self.action_space = batch_space(self.single_action_space, self.num_envs)
        self._fixed_tasks: np.ndarray | None = None
        self._uniforms: np.ndarray | None = None
        self.tasks = np.full((self.num_envs, self.num_arms), 0.5)
        self._t = 0
        self._pulls = np.zeros((self.num_envs, self.num_arms), dtype=np.int64)
        self._needs_reset = True
        self._rows = np.arange(self.num_envs)
        self._obs = np.zeros((self.num_envs, 1), dtype=np.float32)

    @property
    def max_trial_steps(self) -> int:
        """Steps in one trial."""
        return self.horizon

    def sample_tasks(self, num_tasks: int) -> np.ndarray:
        """Draw tasks from this environment's random generator."""
        return sample_tasks(self.np_random, num_tasks, self.num_arms)

    def set_tasks(self, tasks: np.ndarray | None) -> None:
        """Fix the arm means, shape (num_envs, num_arms), from the next reset on."""
        shape = (self.num_envs, self.num_arms)
        self._fixed_tasks = None if tasks is None else _check_tasks(tasks, shape)

    def set_reward_uniforms(self, uniforms: np.ndarray | None) -> None:
        """Fix the reward tape (num_envs, num_arms, horizon) from the next reset on: the j-th
        pull of arm a in task i pays ``uniforms[i, a, j] < tasks[i, a]`` (``None``: draw
        from ``np_random``)."""
        shape = (self.num_envs, self.num_arms, self.horizon)
        self._uniforms = None if uniforms is None else _check_uniforms(uniforms, shape)

    def _new_trial(self) -> dict[str, Any]:
        self.tasks = next_tasks(self)
        self._t = 0
        self._pulls[:] = 0
        self._needs_reset = False
        return {"task": self.tasks.copy()}

    def reset(
        self, *, seed: int | list[int] | None = None, options: dict[str, Any] | None = None
    ) -> tuple[np.ndarray, dict[str, Any]]:
        reset_tasks(self, seed, options)
        if options and "reward_uniforms" in options:
            self.set_reward_uniforms(options["reward_uniforms"])
        return self._obs.copy(), self._new_trial()

    def step(
        self, actions: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, dict[str, Any]]:
        actions = check_actions(actions, self.num_envs, self.num_arms)
        false = np.zeros(self.num_envs, dtype=bool)
        if self._needs_reset:  # next-step autoreset
            info = self._new_trial()
            return self._obs.copy(), np.zeros(self.num_envs), false, false.copy(), info
        means = self.tasks[self._rows, actions]
        if self._uniforms is None:
            uniforms = self.np_random.random(self.num_envs)
        else:
            uniforms = self._uniforms[self._rows, actions, self._pulls[self._rows, actions]]
        self._pulls[self._rows, actions] += 1
        rewards = (uniforms < means).astype(np.float64)
        self._t += 1
        self._needs_reset = self._t >= self.horizon
        truncated = np.full(self.num_envs, self._needs_reset)
        info = {"episode_end": np.ones(self.num_envs, dtype=bool)}
        return self._obs.copy(), rewards, false, truncated, info
