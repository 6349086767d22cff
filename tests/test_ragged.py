"""Trials of unequal length: the length grouping, the grouped forward of every backbone, and a
PPO update on ragged trials equal to one on the padded batch."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch

from metarl.backbones import MANN, SNAIL, LSTMBackbone, SequenceBackbone
from metarl.backbones.base import length_groups
from metarl.learners.rl2 import RL2, PPOConfig
from metarl.policies import RecurrentActorCritic
from metarl.rollout.worker import Shard

BACKBONES = {
    "lstm": lambda: LSTMBackbone(5, 16, hidden_size=8),
    "snail": lambda: SNAIL(5, 16, projection_size=8),
    "mann": lambda: MANN(5, 16, hidden_size=8, memory_slots=4, memory_width=3, read_heads=1),
}
LENGTHS = torch.tensor([3, 16, 1, 7, 7, 12, 2])


def test_groups_minimise_the_hand_computed_cost() -> None:
    """Lengths 2, 2, 10 with step cost 1 and group cost 1: one group costs 10·(3+1)+1 = 41,
    {2}{2}{10} 3+1+3+1+21 = 29, {2}{2,10} 4+31 = 35, {2,2}{10} 2·3+1 + 10·2+1 = 28: best."""
    groups = length_groups(np.array([2, 2, 10]), step_cost=1.0, group_cost=1.0)
    assert [g.tolist() for g in groups] == [[0, 1], [2]]
    equal = length_groups(np.full(6, 9))
    assert [g.tolist() for g in equal] == [list(range(6))]  # equal lengths: one group
    with pytest.raises(ValueError, match="ascending"):
        length_groups(np.array([3, 1]))


@pytest.mark.parametrize("kind", BACKBONES)
def test_grouped_forward_equals_forward_on_counted_steps(kind: str) -> None:
    torch.manual_seed(0)
    backbone: SequenceBackbone = BACKBONES[kind]()
    x = torch.randn(len(LENGTHS), 16, 5)
    mask = (torch.arange(16) < LENGTHS[:, None]).float()[..., None]
    full = backbone(x)
    (full * mask).sum().backward()
    expected = [p.grad.clone() for p in backbone.parameters()]
    backbone.zero_grad()
    ragged = backbone.forward_ragged(x, LENGTHS)
    torch.testing.assert_close(ragged * mask, full.detach() * mask, rtol=1e-5, atol=1e-6)
    (ragged * mask).sum().backward()
    for grad, want in zip((p.grad for p in backbone.parameters()), expected, strict=True):
        torch.testing.assert_close(grad, want, rtol=1e-4, atol=1e-6)


def test_ppo_update_on_ragged_trials_equals_the_padded_one(monkeypatch) -> None:
    """The grouped forward changes the cost of an update, not its result: the same update with
    the backbone run on the whole padded minibatch lands on the same weights."""
    torch.manual_seed(0)
    policy = RecurrentActorCritic(SNAIL(5, 16, projection_size=8), num_actions=3)
    inputs = torch.randn(len(LENGTHS), 16, 5)
    mask = (torch.arange(16) < LENGTHS[:, None]).float()
    with torch.no_grad():
        dist, values = policy(inputs)
        actions = torch.distributions.Categorical(logits=dist.logits).sample()
    ends = torch.zeros_like(mask)
    ends[torch.arange(len(LENGTHS)), LENGTHS - 1] = 1
    batch = {
        "inputs": inputs,
        "actions": actions * mask.long(),
        "logp": dist.log_prob(actions) * mask,
        "values": values * mask,
        "rewards": torch.randn(mask.shape) * mask,
        "dones": ends,
        "mask": mask,
    }
    config = PPOConfig(lr=0.01, epochs=2, minibatches=2)
    grouped = copy.deepcopy(policy)
    RL2(grouped, config).update(batch, torch.Generator().manual_seed(0))
    monkeypatch.setattr(SNAIL, "forward_ragged", lambda self, x, lengths: self(x))
    padded = copy.deepcopy(policy)
    RL2(padded, config).update(batch, torch.Generator().manual_seed(0))
    for a, b, before in zip(
        grouped.parameters(), padded.parameters(), policy.parameters(), strict=True
    ):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-6)
        assert not torch.equal(a, before) or not before.requires_grad


@pytest.mark.parametrize("kind", BACKBONES)
def test_a_selected_state_steps_on_like_the_rows_it_holds(kind: str) -> None:
    torch.manual_seed(0)
    backbone: SequenceBackbone = BACKBONES[kind]()
    x = torch.randn(4, 7, 5)
    rows = torch.tensor([3, 1])
    with torch.no_grad():
        state = backbone.initial_state(4, 7)
        for t in range(3):
            _, state = backbone.step(x[:, t], state)
        kept = state.select(rows)
        assert kept.batch_size == 2 and kept.t == 3
        for t in range(3, 7):
            full, state = backbone.step(x[:, t], state)
            part, kept = backbone.step(x[rows, t], kept)
            torch.testing.assert_close(part, full[rows])


class _CountdownTrials:
    """Trials whose length is the task (an integer of ``reset(options={"tasks"})``); the
    observation is the steps left, the reward the discrete action taken."""

    max_trial_steps = 16

    def __init__(self, num_envs: int) -> None:
        import gymnasium as gym

        self.num_envs = num_envs
        self.single_action_space = gym.spaces.Discrete(3)

    def reset(self, *, seed=None, options=None):
        self.lengths, self.t = np.asarray(options["tasks"]), 0
        return self._observe(), {}

    def _observe(self) -> np.ndarray:
        return (self.lengths - self.t)[:, None].astype(np.float32)

    def step(self, actions):
        self.t += 1
        done = self.t >= self.lengths
        return self._observe(), actions.astype(float), done, done, {}


def test_the_worker_drops_ended_trials_and_matches_each_trial_run_alone() -> None:
    """Ten trials of 1-16 steps in one shard, the policy stepping only the running ones once
    half have ended, equal those trials run one per shard."""
    from metarl.rollout import RolloutWorker

    torch.manual_seed(0)
    worker = RolloutWorker(
        _CountdownTrials,
        lambda: RecurrentActorCritic(SNAIL(1 + 3 + 2, 16, projection_size=8), 3),
        deterministic=True,
    )
    lengths = np.array([16, 2, 5, 1, 9, 3, 12, 4, 7, 6])
    (together,) = worker.sample(None, [Shard(0, 10, lengths)])
    alone = worker.sample(None, [Shard(0, 1, lengths[i : i + 1]) for i in range(10)])
    np.testing.assert_array_equal(together["mask"].sum(1), lengths)
    for i, trial in enumerate(alone):
        steps = lengths[i]
        for key in ("inputs", "actions", "rewards", "dones"):
            np.testing.assert_array_equal(together[key][i, :steps], trial[key][0, :steps])
        for key in ("logp", "values"):
            np.testing.assert_allclose(together[key][i, :steps], trial[key][0, :steps], atol=1e-5)
