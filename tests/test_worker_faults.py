"""Rollout workers that die mid-iteration: replaced, their shards run again, each once."""

import os
import signal
import sys
from pathlib import Path

import numpy as np
import pytest
import ray

from agents.rl2_bandit import RL2BanditAgent
from metarl.errors import WorkersLost
from metarl.rollout import RolloutWorker, Shard
from metarl.rollout.samplers import RaySampler
from tests.test_rollout import small_config

ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])  # actors need this class

DOOMED = 103  # the seed of the shard whose worker is killed


class KilledWorker(RolloutWorker):
    """A worker whose process is killed (SIGKILL) when it starts the doomed shard, the first
    ``deaths`` times, counted in a file."""

    def __init__(self, tally: str, deaths: int, **kwargs) -> None:
        super().__init__(**kwargs)
        self.tally, self.deaths = Path(tally), deaths

    def sample(self, weights, shards):
        if shards[0].seed == DOOMED:
            died = len(self.tally.read_text()) if self.tally.exists() else 0
            if died < self.deaths:
                self.tally.write_text("x" * (died + 1))
                os.kill(os.getpid(), signal.SIGKILL)
        return super().sample(weights, shards)


def ray_sampler(agent: RL2BanditAgent, tmp_path: Path, deaths: int, max_restarts: int):
    kwargs = {**agent.worker_kwargs, "tally": str(tmp_path / "tally"), "deaths": deaths}
    return RaySampler(kwargs, workers=2, worker=KilledWorker, max_restarts=max_restarts)


SHARDS = [Shard(100 + i, 16) for i in range(8)]


def test_a_killed_worker_is_replaced_and_the_batch_is_whole(tmp_path):
    agent = RL2BanditAgent(small_config())
    weights = agent.policy.state_dict()
    expected = agent.sampler.sample(weights, SHARDS)
    sampler = ray_sampler(agent, tmp_path, deaths=1, max_restarts=3)
    try:
        got = sampler.sample(weights, SHARDS)
        assert (tmp_path / "tally").read_text() == "x"  # the process really died once
        assert sampler.restarts == 1 and sampler.resampled >= 1
        # every shard once, as the undisturbed local call gave it: same tasks, same trials
        assert len(got) == len(expected)
        for a, b in zip(got, expected, strict=True):
            for key in b:
                np.testing.assert_array_equal(a[key], b[key])
        again = sampler.sample(weights, SHARDS)  # the replacement keeps working
        np.testing.assert_array_equal(again[3]["actions"], expected[3]["actions"])
    finally:
        sampler.close()


def test_a_worker_that_keeps_dying_ends_the_call_with_a_clear_error(tmp_path):
    agent = RL2BanditAgent(small_config())
    sampler = ray_sampler(agent, tmp_path, deaths=10, max_restarts=2)
    try:
        with pytest.raises(WorkersLost, match=r"died 3 times in one iteration \(sampler.max"):
            sampler.sample(agent.policy.state_dict(), SHARDS)
    finally:
        sampler.close()


def test_the_trainer_checkpoints_the_iterations_done_when_workers_are_lost(tmp_path, monkeypatch):
    from metarl import runs
    from metarl.errors import RunFailed
    from metarl.trainer import train

    original = RL2BanditAgent.train_iteration

    def failing(self, iteration):
        if iteration == 2:
            raise WorkersLost("rollout workers died 4 times in one iteration")
        return original(self, iteration)

    monkeypatch.setattr(RL2BanditAgent, "train_iteration", failing)
    overrides = ["trials_per_iteration=16", "train.iterations=5"]
    with pytest.raises(RunFailed, match="holds the 2 iterations done .*--resume"):
        train("snail-bandit", overrides=overrides, out=tmp_path / "run", progress=False)
    assert runs.load_checkpoint(tmp_path / "run")["iteration"] == 2
