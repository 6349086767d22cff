"""2-D navigation (Finn et al. 2017, section 5.2): a point robot must find a goal it cannot see.

A *task* is the goal, drawn uniformly from [-0.5, 0.5]². The robot starts at the origin,
observes its position, and moves by its action clipped to [-0.1, 0.1] per coordinate; the
reward is the negative distance to the goal after the move. An episode is truncated after
``horizon`` steps (100 in the paper). Only the rewards tell tasks apart, so a policy must
adapt from experience, here by a few policy-gradient steps.
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces

GOAL_LOW, GOAL_HIGH = -0.5, 0.5
MAX_STEP = 0.1


def sample_goals(rng: np.random.Generator, num_tasks: int) -> np.ndarray:
    """Draw ``num_tasks`` goals uniformly from [-0.5, 0.5]², shape (num_tasks, 2)."""
    return rng.uniform(GOAL_LOW, GOAL_HIGH, size=(num_tasks, 2))


class Navigation2DEnv(gym.Env):
    """A point robot on the plane and a hidden goal.

    Args:
        horizon: steps per episode.

    A new goal is drawn from ``self.np_random`` at every reset, unless one was fixed with
    :meth:`set_task` or passed as ``reset(options={"task": goal})``.
    """

    metadata = {"render_modes": []}

    def __init__(self, horizon: int = 100) -> None:
        if isinstance(horizon, bool) or not isinstance(horizon, int | np.integer) or horizon < 1:
            raise ValueError(f"horizon must be a positive integer, got {horizon!r}")
        self.horizon = int(horizon)
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
        super().reset(seed=seed)
        if options and "task" in options:
            self.set_task(options["task"])
        fixed = self._fixed_task
        self.task = fixed.copy() if fixed is not None else self.sample_tasks(1)[0]
        self._position = np.zeros(2)
        self._t = 0
        return self._position.astype(np.float32), {"task": self.task.copy()}

    def step(self, action: np.ndarray) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        move = np.clip(np.asarray(action, dtype=np.float64), -MAX_STEP, MAX_STEP)
        if move.shape != (2,) or not np.all(np.isfinite(move)):
            raise ValueError(f"an action is a finite move of shape (2,), got {action!r}")
        self._position = self._position + move
        reward = -float(np.linalg.norm(self._position - self.task))
        self._t += 1
        return self._position.astype(np.float32), reward, False, self._t >= self.horizon, {}
