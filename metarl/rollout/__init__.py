"""Rollout workers and the samplers that run them locally or on Ray."""

from metarl.rollout.episodes import EpisodeWorker, TaskShard
from metarl.rollout.samplers import LocalSampler, RaySampler, Sampler, make_sampler
from metarl.rollout.worker import RolloutWorker, Shard

__all__ = [
    "EpisodeWorker",
    "LocalSampler",
    "RaySampler",
    "RolloutWorker",
    "Sampler",
    "Shard",
    "TaskShard",
    "make_sampler",
]
