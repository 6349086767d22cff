"""``rl2-bandit``: a memory policy (SNAIL or LSTM) meta-trained by PPO on Bernoulli bandits.

The RL² / SNAIL setting (Duan et al. 2016, Mishra et al. 2018): each trial is ``horizon``
pulls of a fresh k-armed bandit; the policy sees its previous action and reward and must
explore and exploit within the trial. ``snail-bandit`` and ``lstm-bandit`` differ only in
``model.backbone``.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any

import numpy as np
import torch

from envs.bandits import BernoulliBanditVectorEnv, sample_tasks
from metarl.backbones import (
    BACKBONES,
    SequenceBackbone,
    build_backbone,
    parse_block,
)
from metarl.config import SamplerConfig, TrainConfig, require
from metarl.learners.rl2 import RL2, PPOConfig
from metarl.policies import RecurrentActorCritic, rl2_input_size
from metarl.rollout import RolloutWorker, Shard, make_sampler
from metarl.rollout.worker import concat_batches, shard_seeds


@dataclasses.dataclass
class BanditConfig:
    """Attributes:
    num_arms: arms per bandit (k).
    horizon: pulls per trial (n)."""

    num_arms: int = 5
    horizon: int = 10

    def __post_init__(self) -> None:
        require(self.num_arms >= 1, "env.num_arms", self.num_arms, "an integer >= 1")
        require(self.horizon >= 1, "env.horizon", self.horizon, "an integer >= 1")


@dataclasses.dataclass
class ModelConfig:
    """The policy's backbone (the actor and critic heads are linear).

    Attributes:
        backbone: ``snail`` or ``lstm``.
        projection_size: width of the input projection (0: none).
        blocks: SNAIL's blocks in order, each ``"tc FILTERS"`` or ``"attention KEY VALUE"``.
        hidden_size: LSTM units (lstm only).
        layers: stacked LSTM layers (lstm only).
    """

    backbone: str = "snail"
    projection_size: int = 32
    blocks: list[str] = dataclasses.field(
        default_factory=lambda: ["tc 32", "tc 32", "attention 32 32"]
    )
    hidden_size: int = 64
    layers: int = 1

    def __post_init__(self) -> None:
        require(
            self.backbone in BACKBONES,
            "model.backbone",
            self.backbone,
            " or ".join(repr(k) for k in BACKBONES),
        )
        require(
            self.projection_size >= 0,
            "model.projection_size",
            self.projection_size,
            "an integer >= 0",
        )
        for i, text in enumerate(self.blocks):
            try:
                parse_block(text)
            except ValueError:
                require(
                    False,
                    f"model.blocks[{i}]",
                    text,
                    "'tc FILTERS' or 'attention KEY_SIZE VALUE_SIZE'",
                )
        require(len(self.blocks) >= 1, "model.blocks", self.blocks, "at least one block")
        require(self.hidden_size >= 1, "model.hidden_size", self.hidden_size, "an integer >= 1")
        require(self.layers >= 1, "model.layers", self.layers, "an integer >= 1")

    def build(self, input_size: int, max_len: int) -> SequenceBackbone:
        """The backbone for inputs of ``input_size`` and sequences of at most ``max_len``."""
        projection = self.projection_size or None
        if self.backbone == "snail":
            blocks = [parse_block(b) for b in self.blocks]
            return build_backbone(
                "snail", input_size, max_len, blocks=blocks, projection_size=projection
            )
        return build_backbone(
            "lstm",
            input_size,
            max_len,
            hidden_size=self.hidden_size,
            num_layers=self.layers,
            projection_size=projection,
        )


@dataclasses.dataclass
class EvalConfig:
    """Attributes:
    episodes: held-out tasks (one trial each).
    seed: seed of the held-out tasks, distinct from any training seed stream.
    deterministic: act greedily instead of sampling."""

    episodes: int = 1000
    seed: int = 2_147_483_647
    deterministic: bool = False

    def __post_init__(self) -> None:
        require(self.episodes >= 2, "eval.episodes", self.episodes, "an integer >= 2")


@dataclasses.dataclass
class Config:
    """The whole ``rl2-bandit`` experiment.

    Attributes:
        name: experiment name.
        agent: ``rl2-bandit``.
        seed: seeds the weights, every iteration's tasks and actions, and PPO's shuffling.
        trials_per_iteration: trials (one task each) sampled per PPO update.
    """

    name: str
    agent: str
    seed: int = 0
    trials_per_iteration: int = 1000
    env: BanditConfig = dataclasses.field(default_factory=BanditConfig)
    model: ModelConfig = dataclasses.field(default_factory=ModelConfig)
    ppo: PPOConfig = dataclasses.field(default_factory=PPOConfig)
    sampler: SamplerConfig = dataclasses.field(default_factory=SamplerConfig)
    train: TrainConfig = dataclasses.field(default_factory=TrainConfig)
    eval: EvalConfig = dataclasses.field(default_factory=EvalConfig)

    def __post_init__(self) -> None:
        require(
            self.trials_per_iteration >= self.sampler.shards,
            "trials_per_iteration",
            self.trials_per_iteration,
            f">= sampler.shards ({self.sampler.shards})",
        )


def build_policy(model: ModelConfig, num_arms: int, horizon: int) -> RecurrentActorCritic:
    """The memory policy for k-armed bandit trials of ``horizon`` pulls."""
    input_size = rl2_input_size(1, num_arms)
    return RecurrentActorCritic(model.build(input_size, horizon), num_arms)


def _split(total: int, parts: int) -> list[int]:
    return [total // parts + (i < total % parts) for i in range(parts)]


class RL2BanditAgent:
    """Samples trials on rollout workers and updates the policy with PPO."""

    headline = "mean_return"

    def __init__(self, config: Config) -> None:
        self.config = config
        torch.manual_seed(config.seed)
        env = config.env
        self.policy = build_policy(config.model, env.num_arms, env.horizon)
        self.learner = RL2(self.policy, config.ppo)
        self.worker_kwargs = {
            "make_env": functools.partial(
                BernoulliBanditVectorEnv, num_arms=env.num_arms, horizon=env.horizon
            ),
            "make_policy": functools.partial(build_policy, config.model, env.num_arms, env.horizon),
        }
        self.sampler = make_sampler(config.sampler, self.worker_kwargs)

    def train_iteration(self, iteration: int) -> dict[str, float]:
        cfg = self.config
        seeds = shard_seeds(cfg.seed, iteration, cfg.sampler.shards)
        sizes = _split(cfg.trials_per_iteration, cfg.sampler.shards)
        shards = [Shard(seed, size) for seed, size in zip(seeds, sizes, strict=True)]
        batch = concat_batches(self.sampler.sample(self.policy.state_dict(), shards))
        tensors = {k: torch.as_tensor(v) for k, v in batch.items()}
        for key in ("mask", "dones", "rewards"):
            tensors[key] = tensors[key].float()
        generator = torch.Generator().manual_seed(seeds[0])
        stats = self.learner.update(tensors, generator)
        return {
            "mean_return": float(batch["returns"].mean()),
            "env_steps": float(batch["mask"].sum()),
            **stats,
        }

    def evaluate(self, episodes: int) -> dict[str, Any]:
        """Cumulative reward of the agent and every baseline on the same held-out tasks."""
        from metarl.eval.bandits import bandit_report

        cfg = self.config
        tasks = sample_tasks(np.random.default_rng(cfg.eval.seed), episodes, cfg.env.num_arms)
        worker = RolloutWorker(**self.worker_kwargs, deterministic=cfg.eval.deterministic)
        chunk = 1000
        shards = [
            Shard(cfg.eval.seed + i, len(tasks[i : i + chunk]), tasks[i : i + chunk])
            for i in range(0, episodes, chunk)
        ]
        rewards = np.concatenate(
            [b["rewards"] for b in worker.sample(self.policy.state_dict(), shards)]
        )
        return bandit_report(rewards, tasks, cfg.eval.seed)

    def state_dict(self) -> dict[str, Any]:
        return {
            "policy": self.policy.state_dict(),
            "optimizer": self.learner.optimizer.state_dict(),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.policy.load_state_dict(state["policy"])
        self.learner.optimizer.load_state_dict(state["optimizer"])

    def close(self) -> None:
        self.sampler.close()


def build(config: Config) -> RL2BanditAgent:
    return RL2BanditAgent(config)
