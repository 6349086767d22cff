"""Task distributions: gymnasium environments with verbs to sample and set tasks."""

from envs.bandits import BernoulliBanditEnv, BernoulliBanditVectorEnv

__all__ = ["BernoulliBanditEnv", "BernoulliBanditVectorEnv"]
