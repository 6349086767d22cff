"""2-D navigation (Finn et al. 2017, section 5.2): a point robot must find a goal it cannot see.

A *task* is the goal, drawn uniformly from [-0.5, 0.5]². The robot starts at the origin,
observes its position, and moves by its action clipped to [-0.1, 0.1] per coordinate; the
reward is the negative distance to the goal after the move. An episode terminates once the
robot is within 0.01 of the goal in both coordinates and is truncated after ``horizon`` steps
(100 in the paper). Only the rewards tell tasks apart, so a policy must adapt from
experience, here by a few policy-gradient steps. :func:`envs.make_task_env` rescales actions
to [-1, 1], as the paper's code (rllab's ``normalize``) did.
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces
from gymnasium.vector import AutoresetMode, VectorEnv
from gymnasium.vector.utils import batch_space

from envs.tasks import reset_task, reset_tasks
from metarl.config import require_positive

GOAL_LOW, GOAL_HIGH = -0.5, 0.5
MAX_STEP = 0.1
REACHED = 0.01  # an episode ends within this distance of the goal in every coordinate


def sample_goals(rng: np.random.Generator, num_tasks: int) -> np.ndarray:
    """Draw ``num_tasks`` goals uniformly from [-0.5, 0.5]², shape (num_tasks, 2)."""
    return rng.uniform(GOAL_LOW, GOAL_HIGH, size=(num_tasks, 2))


def _check_moves(actions: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    moves = np.asarray(actions, dtype=np.float64)
    if moves.shape != shape or not np.all(np.isfinite(moves)):
        raise ValueError(f"actions must be finite moves of shape {shape}, got {actions!r}")
    return np.clip(moves, -MAX_STEP, MAX_STEP)


class Navigation2DEnv(gym.Env):
    """A point robot on the plane and a hidden goal.

    Args:
        horizon: steps per episode.

    A new goal is drawn from ``self.np_random`` at every reset, unless one was fixed with
    :meth:`set_task` or passed as ``reset(options={"task": goal})``.
    """

    metadata = {"render_modes": []}

    def __init__(self, horizon: int = 100) -> None:
        self.horizon = require_positive("Navigation2DEnv", "horizon", horizon)
        reach = MAX_STEP * self.horizon  # the farthest the robot can go in one episode
        self.observation_space = spaces.Box(-reach, reach, shape=(2,), dtype=np.float32)
        self.action_space = spaces.Box(-MAX_STEP, MAX_STEP, shape=(2,), dtype=np.float32)
        self._fixed_task: np.ndarray | None = None
        self.task = np.zeros(2)
        self._position = np.zeros(2)
        self._t = 0

    def sample_tasks(self, num_tasks: int) -> np.ndarray:
        """Draw goals from this environment's random generator."""
        return sample_goals(self.np_random, num_tasks)

    def set_task(self, task: np.ndarray | None) -> None:
        """Fix the goal used from the next reset on (``None``: sample at each reset)."""
        if task is None:
            self._fixed_task = None
            return
        goal = np.asarray(task, dtype=np.float64)
        if goal.shape != (2,) or not np.all(np.isfinite(goal)):
            raise ValueError(f"a task is a finite goal of shape (2,), got {task!r}")
        self._fixed_task = goal

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[np.ndarray, dict[str, Any]]:
        reset_task(self, seed, options)
        self._position = np.zeros(2)
        self._t = 0
        return self._position.astype(np.float32), {"task": self.task.copy()}

    def step(self, action: np.ndarray) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        move = _check_moves(action, (2,))
        self._position = self._position + move
        offset = self._position - self.task
        self._t += 1
        reached = bool(np.all(np.abs(offset) < REACHED))
        return (
            self._position.astype(np.float32),
            -float(np.linalg.norm(offset)),
            reached,
            self._t >= self.horizon,
            {},
        )


class Navigation2DVectorEnv(VectorEnv):
    """``num_envs`` navigation episodes stepped together in numpy.

    Semantics equal ``num_envs`` copies of :class:`Navigation2DEnv` under gymnasium's
    next-step autoreset: the step after an episode ends starts a new one in that
    sub-environment (reward 0). ``reset(options={"task": goal})`` fixes one goal for every
    sub-environment (the episodes of one task); without it each draws its own goal at every
    reset.

    Args:
        num_envs: episodes stepped at once.
        horizon: steps per episode.
    """

    metadata = {"autoreset_mode": AutoresetMode.NEXT_STEP}

    def __init__(self, num_envs: int, horizon: int = 100) -> None:
        require_positive("Navigation2DVectorEnv", "num_envs", num_envs)
        single = Navigation2DEnv(horizon)
        self.num_envs, self.horizon = num_envs, single.horizon
        self.single_observation_space = single.observation_space
        self.single_action_space = single.action_space
        self.observation_space = batch_space(self.single_observation_space, num_envs)
        self.action_space = batch_space(self.single_action_space, num_envs)
        self._single = single  # holds the fixed goal, validated as the single env does
        self.tasks = np.zeros((num_envs, 2))
        self._positions = np.zeros((num_envs, 2))
        self._t = np.zeros(num_envs, dtype=int)
        self._ended = np.ones(num_envs, dtype=bool)  # these start anew at the next step

    def sample_tasks(self, num_tasks: int) -> np.ndarray:
        """Draw goals from this environment's random generator."""
        return sample_goals(self.np_random, num_tasks)

    def set_task(self, task: np.ndarray | None) -> None:
        """Fix one goal for every sub-environment from the next reset on (``None``: sample)."""
        self._single.set_task(task)

    def _new_episodes(self, which: np.ndarray) -> dict[str, Any]:
        """Start new episodes in the sub-environments of the boolean mask ``which``."""
        fixed = self._single._fixed_task
        self.tasks[which] = self.sample_tasks(int(which.sum())) if fixed is None else fixed
        self._positions[which] = 0.0
        self._t[which] = 0
        self._ended[which] = False
        return {"task": self.tasks.copy()}

    def reset(
        self, *, seed: int | list[int] | None = None, options: dict[str, Any] | None = None
    ) -> tuple[np.ndarray, dict[str, Any]]:
        reset_tasks(self, seed, options, key="task")
        info = self._new_episodes(np.ones(self.num_envs, dtype=bool))
        return self._positions.astype(np.float32), info

    def step(
        self, actions: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, dict[str, Any]]:
        moves = _check_moves(actions, (self.num_envs, 2))
        restart = self._ended.copy()  # next-step autoreset: these ignore their action
        moving = ~restart
        self._positions[moving] += moves[moving]
        offsets = self._positions - self.tasks
        rewards = np.where(moving, -np.linalg.norm(offsets, axis=1), 0.0)
        self._t += moving
        terminated = moving & np.all(np.abs(offsets) < REACHED, axis=1)
        truncated = moving & (self._t >= self.horizon)
        info = self._new_episodes(restart) if restart.any() else {}
        self._ended = terminated | truncated
        return self._positions.astype(np.float32), rewards, terminated, truncated, info
