"""Rollout workers and the samplers that run them locally or on Ray."""

from metarl.rollout.samplers import LocalSampler, RaySampler, Sampler, make_sampler
from metarl.rollout.worker import RolloutWorker, Shard

__all__ = ["LocalSampler", "RaySampler", "RolloutWorker", "Sampler", "Shard", "make_sampler"]
