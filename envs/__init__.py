"""Task distributions: gymnasium environments with verbs to sample and set tasks."""

import functools
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium.vector import SyncVectorEnv, VectorEnv
from gymnasium.wrappers import RescaleAction
from gymnasium.wrappers.vector import RescaleAction as RescaleVectorAction

from envs.bandits import BernoulliBanditEnv, BernoulliBanditVectorEnv
from envs.locomotion import FAMILIES, LocomotionTaskEnv
from envs.mazes import MazeEnv, MazeVectorEnv
from envs.metaworld import BENCHMARKS as METAWORLD_BENCHMARKS
from envs.metaworld import MetaWorldEnv, make_metaworld_env, make_metaworld_vector_env
from envs.navigation import Navigation2DEnv, Navigation2DVectorEnv
from envs.tabular_mdp import TabularMDPEnv, TabularMDPVectorEnv

CONTINUOUS_FAMILIES = ("Navigation2D", *FAMILIES)
TASK_FAMILIES = (*CONTINUOUS_FAMILIES, "TabularMDP", *METAWORLD_BENCHMARKS)
"""The families of :func:`make_task_env`: the continuous-control ones, the discrete one and
the Meta-World benchmarks (with the ``metaworld`` extra)."""
UNIT = (np.float32(-1.0), np.float32(1.0))  # the policy's action range


def make_task_env(family: str, horizon: int, task: str = "") -> gym.Env:
    """One environment of a task family of :data:`TASK_FAMILIES` with episodes of
    ``horizon`` steps: continuous control (``Navigation2D`` or a key of
    :data:`envs.locomotion.FAMILIES`) with actions in [-1, 1] (navigation's moves of at most
    0.1 rescaled, as the MAML paper's code did), ``TabularMDP``, a random MDP of Duan et
    al.'s 10 states and 5 actions whose gymnasium episode is one episode from state 0, or a
    Meta-World benchmark (ML1 of the class ``task``, ML10, ML45)."""
    if family in METAWORLD_BENCHMARKS:
        return make_metaworld_env(family, horizon, task)
    if family == "Navigation2D":
        return RescaleAction(Navigation2DEnv(horizon), *UNIT)
    if family == "TabularMDP":
        return TabularMDPEnv(episode_length=horizon, episodes_per_trial=1)
    return LocomotionTaskEnv(family, horizon)


def make_task_vector_env(family: str, horizon: int, num_envs: int, task: str = "") -> VectorEnv:
    """``num_envs`` environments of a family stepped together, as :func:`make_task_env`
    makes them: natively batched in numpy for navigation and tabular MDPs, a
    ``SyncVectorEnv`` of MuJoCo environments otherwise."""
    if family in METAWORLD_BENCHMARKS:
        return make_metaworld_vector_env(family, horizon, num_envs, task)
    if family == "Navigation2D":
        return RescaleVectorAction(Navigation2DVectorEnv(num_envs, horizon), *UNIT)
    if family == "TabularMDP":
        return TabularMDPVectorEnv(num_envs, episode_length=horizon, episodes_per_trial=1)
    return SyncVectorEnv([functools.partial(make_task_env, family, horizon)] * num_envs)


def __getattr__(name: str) -> Any:
    # The RLlib environments import torch: loaded on first use, so that ``envs`` stays light.
    if name in ("RL2Inputs", "register_envs"):
        from envs import rllib

        return getattr(rllib, name)
    raise AttributeError(f"module 'envs' has no attribute {name!r}")


__all__ = [
    "CONTINUOUS_FAMILIES",
    "TASK_FAMILIES",
    "BernoulliBanditEnv",
    "BernoulliBanditVectorEnv",
    "LocomotionTaskEnv",
    "MazeEnv",
    "MazeVectorEnv",
    "METAWORLD_BENCHMARKS",
    "MetaWorldEnv",
    "Navigation2DEnv",
    "Navigation2DVectorEnv",
    "RL2Inputs",
    "TabularMDPEnv",
    "TabularMDPVectorEnv",
    "make_task_env",
    "make_task_vector_env",
    "register_envs",
]
