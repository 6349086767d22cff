"""Task distributions: gymnasium environments with verbs to sample and set tasks."""

from envs.bandits import BernoulliBanditEnv, BernoulliBanditVectorEnv
from envs.locomotion import LocomotionTaskEnv
from envs.navigation import Navigation2DEnv

__all__ = ["BernoulliBanditEnv", "BernoulliBanditVectorEnv", "LocomotionTaskEnv", "Navigation2DEnv"]
