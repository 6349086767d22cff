"""MuJoCo locomotion task distributions (Finn et al. 2017, section 5.3) on gymnasium's v5
environments: run at a target velocity, or run forward or backward.

The environment's own reward is kept except its forward term: ``reward_forward`` (the
x-velocity) is replaced by the task's term, −|v − v_goal| for velocity tasks and d·v for
direction tasks (d = ±1). Control, contact and survival terms are gymnasium's, with the
weights of the MAML paper's code where :data:`COSTS` sets them (HalfCheetah's control
cost 0.05·Σa², half of gymnasium's), so every task of a family shares the same costs. Episodes
are truncated after ``horizon`` steps.
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np

from metarl.config import require_positive

FAMILIES = {  # name: (gymnasium id, kind, task range or directions)
    "HalfCheetahVel": ("HalfCheetah-v5", "velocity", (0.0, 2.0)),
    "HalfCheetahDir": ("HalfCheetah-v5", "direction", (-1.0, 1.0)),
    "AntVel": ("Ant-v5", "velocity", (0.0, 3.0)),
    "AntDir": ("Ant-v5", "direction", (-1.0, 1.0)),
}
COSTS = {  # gymnasium id: the MAML paper's code's cost weights, where checked (Ant: gymnasium's)
    "HalfCheetah-v5": {"ctrl_cost_weight": 0.05},
    "Ant-v5": {},
}


class LocomotionTaskEnv(gym.Env):
    """A gymnasium MuJoCo runner whose forward reward is set by a task.

    Args:
        family: a key of :data:`FAMILIES`.
        horizon: steps per episode (200 in the paper).
        **kwargs: passed to ``gymnasium.make`` (e.g. ``render_mode``), over :data:`COSTS`.

    A new task is drawn from ``self.np_random`` at every reset, unless one was fixed with
    :meth:`set_task` or passed as ``reset(options={"task": value})``; a task is a target
    velocity (U over the family's range) or a direction (−1 or +1).
    """

    def __init__(self, family: str, horizon: int = 200, **kwargs: Any) -> None:
        if family not in FAMILIES:
            raise ValueError(f"unknown family {family!r}; expected one of {', '.join(FAMILIES)}")
        require_positive("LocomotionTaskEnv", "horizon", horizon)
        env_id, self.kind, self.task_range = FAMILIES[family]
        self.env = gym.make(env_id, max_episode_steps=horizon, **{**COSTS[env_id], **kwargs})
        self.observation_space, self.action_space = (
            self.env.observation_space,
            self.env.action_space,
        )
        self.metadata = self.env.metadata
        self.family = family
        self.task = self.task_range[1]
        self._fixed_task: float | None = None

    def sample_tasks(self, num_tasks: int) -> np.ndarray:
        """Draw tasks from this environment's random generator, shape (num_tasks,)."""
        low, high = self.task_range
        if self.kind == "direction":
            return self.np_random.choice(np.array([low, high]), size=num_tasks)
        return self.np_random.uniform(low, high, size=num_tasks)

    def set_task(self, task: float | None) -> None:
        """Fix the task used from the next reset on (``None``: sample at each reset)."""
        if task is None:
            self._fixed_task = None
            return
        value = float(task)
        low, high = self.task_range
        valid = value in (low, high) if self.kind == "direction" else low <= value <= high
        if not valid:
            expected = f"{low:g} or {high:g}" if self.kind == "direction" else f"[{low}, {high}]"
            raise ValueError(f"{self.family}: a task is {expected}, got {task!r}")
        self._fixed_task = value

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[np.ndarray, dict[str, Any]]:
        super().reset(seed=seed)
        options = dict(options or {})
        if "task" in options:
            self.set_task(options.pop("task"))
        obs, info = self.env.reset(seed=seed, options=options or None)
        fixed = self._fixed_task
        self.task = fixed if fixed is not None else float(self.sample_tasks(1)[0])
        return obs, {**info, "task": self.task}

    def task_reward(self, velocity: float) -> float:
        """The task's forward term for an x-velocity."""
        if self.kind == "direction":
            return self.task * velocity
        return -abs(velocity - self.task)

    def step(self, action: np.ndarray) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        obs, reward, terminated, truncated, info = self.env.step(action)
        reward = reward - info["reward_forward"] + self.task_reward(info["x_velocity"])
        return obs, float(reward), terminated, truncated, info

    def close(self) -> None:
        self.env.close()
