"""Task distributions: gymnasium environments with verbs to sample and set tasks."""

import gymnasium as gym

from envs.bandits import BernoulliBanditEnv, BernoulliBanditVectorEnv
from envs.locomotion import FAMILIES, LocomotionTaskEnv
from envs.navigation import Navigation2DEnv

CONTINUOUS_FAMILIES = ("Navigation2D", *FAMILIES)


def make_task_env(family: str, horizon: int) -> gym.Env:
    """One environment of a continuous-control task family (``Navigation2D`` or a key of
    :data:`envs.locomotion.FAMILIES`) with episodes of ``horizon`` steps."""
    if family == "Navigation2D":
        return Navigation2DEnv(horizon)
    return LocomotionTaskEnv(family, horizon)


__all__ = [
    "CONTINUOUS_FAMILIES",
    "BernoulliBanditEnv",
    "BernoulliBanditVectorEnv",
    "LocomotionTaskEnv",
    "Navigation2DEnv",
    "make_task_env",
]
