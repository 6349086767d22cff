"""Maze baselines, measured in steps per episode of a trial (Mishra et al. 2018, Table 4):
the oracle, which knows the maze and walks the shortest path every episode, and an agent
acting uniformly at random, run through :class:`envs.mazes.MazeVectorEnv` on the same tasks.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from envs.mazes import (
    MOVES,
    MazeEnv,
    MazeVectorEnv,
    default_max_episode_steps,
    maze_size,
    shortest_path_lengths,
)
from metarl.config import require_positive


def episode_lengths(
    episode_end: np.ndarray, mask: np.ndarray, episodes_per_trial: int
) -> np.ndarray:
    """Steps of each episode (B, episodes_per_trial) of trials given per step (B, T):
    ``episode_end`` marks the steps that end an episode, ``mask`` the steps inside a trial.
    An episode still running when its trial's steps run out counts the steps it had."""
    episode_end, mask = np.asarray(episode_end, dtype=bool), np.asarray(mask, dtype=bool)
    if episode_end.ndim != 2 or episode_end.shape != mask.shape:
        raise ValueError(
            f"episode_end and mask must be (B, T) arrays of one shape, got "
            f"{episode_end.shape} and {mask.shape}"
        )
    require_positive("episode_lengths", "episodes_per_trial", episodes_per_trial)
    ends = episode_end & mask
    episode = np.cumsum(ends, axis=1) - ends  # episodes finished before each step
    counted = mask & (episode < episodes_per_trial)
    trial = np.broadcast_to(np.arange(len(mask))[:, None], mask.shape)
    lengths = np.zeros((len(mask), episodes_per_trial), dtype=np.int64)
    np.add.at(lengths, (trial[counted], episode[counted]), 1)
    return lengths


def rollout_episode_ends(batch: dict[str, np.ndarray]) -> np.ndarray:
    """The steps (B, T) that end an episode in a :class:`metarl.rollout.worker.RolloutWorker`
    batch, as the environment flagged them: the worker feeds ``info["episode_end"]`` back as
    the last input column of the next step (d_{t-1} of :func:`metarl.policies.rl2_inputs`),
    and a trial's last step (``dones``) ends its last episode."""
    ends = batch["dones"].astype(bool)
    ends[:, :-1] |= batch["inputs"][:, 1:, -1] > 0.5
    return ends & batch["mask"]


def oracle_episode_lengths(
    tasks: np.ndarray, episodes_per_trial: int = 2, max_episode_steps: int | None = None
) -> np.ndarray:
    """The oracle's episode lengths (num_tasks, episodes_per_trial): the shortest path from
    start to goal, by breadth-first search, or the episode cap if that is shorter."""
    if max_episode_steps is None:
        max_episode_steps = default_max_episode_steps(maze_size(tasks))
    lengths = np.minimum(shortest_path_lengths(tasks), max_episode_steps)
    return np.repeat(lengths[:, None], episodes_per_trial, axis=1)


def random_episode_lengths(tasks: np.ndarray, seed: int, **env_kwargs: Any) -> np.ndarray:
    """Episode lengths (num_tasks, episodes_per_trial) of an agent acting uniformly at random
    on fixed ``tasks``, one trial each in a :class:`MazeVectorEnv` built with ``env_kwargs``
    and reset with ``seed``; the actions come from their own stream, seeded by ``seed``."""
    tasks = np.asarray(tasks)
    env = MazeVectorEnv(len(tasks), maze_size(tasks), **env_kwargs)
    env.reset(seed=seed, options={"tasks": tasks})
    rng = np.random.default_rng([seed, 1])
    alive = np.ones(len(tasks), dtype=bool)
    ends, masks = [], []
    while alive.any():
        _, _, terminated, truncated, info = env.step(rng.integers(4, size=len(tasks)))
        ends.append(info["episode_end"])
        masks.append(alive.copy())
        alive &= ~(terminated | truncated)
    return episode_lengths(np.stack(ends, axis=1), np.stack(masks, axis=1), env.episodes_per_trial)


def trial_paths(task: np.ndarray, actions: np.ndarray, **env_kwargs: Any) -> list[list[Any]]:
    """The cells (r, c) each episode of a trial visited, replaying its ``actions`` in a
    :class:`MazeEnv` (the dynamics are deterministic); an episode that reached the goal ends
    on it. For drawing with :func:`envs.mazes.draw_paths`."""
    env = MazeEnv(maze_size(task[None]), **env_kwargs)
    env.reset(options={"task": task})
    start = env.position
    paths: list[list[Any]] = [[start]]
    for action in actions:
        before = env.position
        _, reward, terminated, truncated, info = env.step(int(action))
        if info["episode_end"]:
            if reward > 0:  # the goal step: the agent is already back at the start
                paths[-1].append(_neighbour(before, int(action)))
            if terminated or truncated:
                break
            paths.append([start])
        else:
            paths[-1].append(env.position)
    return paths


def _neighbour(cell: tuple[int, int], action: int) -> tuple[int, int]:
    (dr, dc) = MOVES[action]
    return cell[0] + dr, cell[1] + dc
