import numpy as np
import pytest

from agents.rl2_bandit import Config, RL2BanditAgent
from metarl.config import SamplerConfig, TrainConfig
from metarl.errors import UsageError
from metarl.rollout.samplers import RaySampler, check_ray_address
from metarl.rollout.worker import Shard, concat_batches, shard_seeds


def small_config(**sampler) -> Config:
    return Config(
        name="t",
        agent="rl2-bandit",
        trials_per_iteration=64,
        sampler=SamplerConfig(**sampler),
        train=TrainConfig(iterations=1),
    )


def test_shard_results_depend_only_on_the_seed():
    agent = RL2BanditAgent(small_config())
    weights = agent.policy.state_dict()
    a, b = agent.sampler.sample(weights, [Shard(7, 16), Shard(8, 16)])
    (again,) = agent.sampler.sample(weights, [Shard(7, 16)])
    for key in a:
        np.testing.assert_array_equal(a[key], again[key])
    assert not np.array_equal(a["actions"], b["actions"])


def test_trials_have_horizon_steps_and_rl2_inputs():
    agent = RL2BanditAgent(small_config())
    (batch,) = agent.sampler.sample(agent.policy.state_dict(), [Shard(1, 5)])
    assert batch["mask"].shape == (5, 10) and batch["mask"].all()
    assert batch["dones"][:, -1].all() and not batch["dones"][:, :-1].any()
    inputs = batch["inputs"]  # (obs, one-hot previous action, previous reward, done flag)
    assert inputs.shape == (5, 10, 1 + 5 + 2)
    assert not inputs[:, 0, 1:].any()
    prev_actions = inputs[:, 1:, 1:6].argmax(-1)
    np.testing.assert_array_equal(prev_actions, batch["actions"][:, :-1])
    np.testing.assert_array_equal(inputs[:, 1:, 6], batch["rewards"][:, :-1])


def test_concat_batches_pads_time_with_masked_steps():
    a = {"mask": np.ones((2, 3), bool), "returns": np.ones(2)}
    b = {"mask": np.ones((1, 5), bool), "returns": np.zeros(1)}
    out = concat_batches([a, b])
    assert out["mask"].shape == (3, 5) and out["mask"].sum() == 11
    np.testing.assert_array_equal(out["returns"], [1, 1, 0])


def test_shard_seeds_are_distinct_and_reproducible():
    assert shard_seeds(0, 5, 4) == shard_seeds(0, 5, 4)
    assert len(set(shard_seeds(0, 5, 4) + shard_seeds(0, 6, 4) + shard_seeds(1, 5, 4))) == 12


def test_local_and_ray_backends_give_the_same_iteration():
    local = RL2BanditAgent(small_config(backend="local", shards=4))
    ray_agent = RL2BanditAgent(small_config(backend="ray", workers=2, shards=4))
    try:
        assert isinstance(ray_agent.sampler, RaySampler)
        stats_local = local.train_iteration(0)
        stats_ray = ray_agent.train_iteration(0)
        assert stats_local == stats_ray
        for name, value in local.policy.state_dict().items():
            assert (value == ray_agent.policy.state_dict()[name]).all(), name
    finally:
        ray_agent.close()


def test_unreachable_ray_address_fails_fast():
    with pytest.raises(UsageError, match="cannot reach a Ray cluster"):
        check_ray_address("127.0.0.1:1", timeout=1.0)
    with pytest.raises(UsageError, match="HOST:PORT"):
        check_ray_address("nonsense")


class _SignTrials:
    """Three-step trials of one continuous action in [-1, 1]: the reward is the action sent,
    the success flag is set when it exceeds 0.5, and every step ends an episode."""

    max_trial_steps = 3

    def __init__(self, num_envs: int) -> None:
        import gymnasium as gym

        self.num_envs = num_envs
        self.single_action_space = gym.spaces.Box(-1.0, 1.0, (1,), dtype=np.float32)

    def reset(self, *, seed=None, options=None):
        self.t = 0
        return np.zeros((self.num_envs, 1), np.float32), {}

    def step(self, actions):
        assert np.abs(actions).max() <= 1.0  # the worker clips to the bounds
        self.t += 1
        done = np.full(self.num_envs, self.t == 3)
        info = {"success": (actions[:, 0] > 0.5).astype(float), "episode_end": np.ones_like(done)}
        return np.zeros((self.num_envs, 1), np.float32), actions[:, 0].copy(), done, done, info


def test_the_worker_clips_gaussian_actions_on_the_way_out_and_scores_them_unclipped():
    from metarl.backbones.lstm import LSTMBackbone
    from metarl.policies import RecurrentActorCritic
    from metarl.rollout import RolloutWorker

    worker = RolloutWorker(
        _SignTrials,
        lambda: RecurrentActorCritic(LSTMBackbone(1 + 1 + 2, 8), 1, continuous=True, init_std=2.0),
    )
    (batch,) = worker.sample(None, [Shard(3, 64)])
    actions = batch["actions"][..., 0]
    assert batch["actions"].shape == (64, 3, 1) and np.abs(actions).max() > 1.0  # unclipped
    sent = np.clip(actions, -1.0, 1.0)
    np.testing.assert_allclose(batch["rewards"], sent)
    np.testing.assert_allclose(batch["inputs"][:, 1:, 1], sent[:, :-1])  # previous action
    np.testing.assert_array_equal(batch["success"], sent > 0.5)
