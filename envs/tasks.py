"""The start of ``reset`` shared by every task environment: seed, then fix the task(s) that
``options`` names, then (single environments) pick the trial's task."""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium.vector import VectorEnv


def reset_task(env: Any, seed: int | None, options: dict[str, Any] | None) -> np.ndarray:
    """Seed ``env`` (a :class:`gymnasium.Env` with ``set_task``, ``sample_tasks`` and
    ``_fixed_task``), apply ``options["task"]``, and set and return ``env.task``: the fixed
    task, or a fresh one drawn from ``env.np_random``."""
    gym.Env.reset(env, seed=seed)
    if options and "task" in options:
        env.set_task(options["task"])
    fixed = env._fixed_task
    env.task = fixed.copy() if fixed is not None else env.sample_tasks(1)[0]
    return env.task


def reset_tasks(
    env: Any, seed: int | list[int] | None, options: dict[str, Any] | None, key: str = "tasks"
) -> None:
    """Seed ``env`` (a :class:`VectorEnv` whose sub-environments share one generator, so one
    integer seed) and apply ``options[key]`` through ``set_tasks`` (or ``set_task`` for the
    key ``task``)."""
    if isinstance(seed, list):
        raise ValueError(f"{type(env).__name__} takes one integer seed for all sub-environments")
    VectorEnv.reset(env, seed=seed)
    if options and key in options:
        (env.set_tasks if key == "tasks" else env.set_task)(options[key])


def next_tasks(env: Any) -> np.ndarray:
    """The tasks of the next trials of ``env`` (a :class:`VectorEnv` with ``sample_tasks``,
    ``num_envs`` and ``_fixed_tasks``): a copy of the fixed ones, else fresh ones drawn from
    ``env.np_random``."""
    fixed = env._fixed_tasks
    return fixed.copy() if fixed is not None else env.sample_tasks(env.num_envs)


def check_actions(
    actions: np.ndarray, num_envs: int, num_actions: int, meaning: str = ""
) -> np.ndarray:
    """The actions of a batched discrete step, validated: integers of shape (num_envs,) in
    [0, num_actions); ``meaning`` (e.g. ``": 0 up, 1 right"``) ends the range's message."""
    actions = np.asarray(actions)
    if actions.shape != (num_envs,) or not np.issubdtype(actions.dtype, np.integer):
        raise ValueError(f"actions must be integers of shape ({num_envs},)")
    if actions.min() < 0 or actions.max() >= num_actions:
        raise ValueError(f"actions must lie in [0, {num_actions}){meaning}")
    return actions
