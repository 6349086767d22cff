"""What every RL² recipe shares: the configuration sections and the training loop of a memory
policy (SNAIL, LSTM or MANN) meta-trained by PPO on whole trials sampled by rollout workers.

A recipe (``rl2-bandit``, ``rl2-maze``, ``rl2-mdp``, ``rl2-metaworld``) adds its ``env``
section, the batched environment and its evaluation against its own baselines.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from gymnasium.vector import VectorEnv

from metarl.allocator import keep_freed_memory
from metarl.backbones.config import ModelConfig
from metarl.config import EvalConfig as BaseEvalConfig
from metarl.config import SamplerConfig, TrainConfig, require
from metarl.devices import on_cpu
from metarl.learners.rl2 import RL2, PPOConfig
from metarl.policies import RecurrentActorCritic, rl2_input_size
from metarl.rollout import RolloutWorker, Shard, make_sampler
from metarl.rollout.worker import Batch, concat_batches, shard_seeds


@dataclasses.dataclass
class EvalConfig(BaseEvalConfig):
    """:class:`metarl.config.EvalConfig` (one trial per held-out task) and:

    Attributes:
        deterministic: act greedily instead of sampling.
    """

    deterministic: bool = False


@dataclasses.dataclass
class RL2Config:
    """The sections of an RL² experiment but its ``env``, which each recipe adds.

    Attributes:
        name: experiment name.
        agent: the recipe.
        seed: seeds the weights, every iteration's tasks and actions, and PPO's shuffling.
        trials_per_iteration: trials (one task each) sampled per PPO update.
    """

    name: str
    agent: str
    seed: int = 0
    trials_per_iteration: int = 1000
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


def build_policy(
    model: ModelConfig,
    obs_size: int,
    num_actions: int,
    max_len: int,
    continuous: bool = False,
    init_std: float = 1.0,
) -> RecurrentActorCritic:
    """The memory policy over RL² inputs, for trials of at most ``max_len`` steps (discrete
    actions, or ``continuous`` ones of width ``num_actions``; see
    :class:`RecurrentActorCritic`)."""
    backbone = model.build(rl2_input_size(obs_size, num_actions), max_len)
    return RecurrentActorCritic(backbone, num_actions, continuous, init_std)


def _split(total: int, parts: int) -> list[int]:
    return [total // parts + (i < total % parts) for i in range(parts)]


class RL2Agent:
    """Samples trials on rollout workers and updates the policy with PPO.

    Args:
        config: the experiment.
        make_env: builds the batched task distribution for a number of tasks.
        obs_size, num_actions: the environment's observation width and action count (the
            action's width if ``continuous``).
        max_len: the longest trial, in steps.
        continuous: the actions are vectors of a Box space (a Gaussian actor).
        init_std: the Gaussian actor's initial standard deviation.
    """

    headline = "mean_return"

    def __init__(
        self,
        config: RL2Config,
        make_env: Callable[[int], VectorEnv],
        obs_size: int,
        num_actions: int,
        max_len: int,
        continuous: bool = False,
        init_std: float = 1.0,
    ) -> None:
        keep_freed_memory()  # PPO on long trials page-faulted its activations back in each time
        self.config = config
        self.device = config.train.torch_device
        torch.manual_seed(config.seed)
        make_policy = functools.partial(
            build_policy, config.model, obs_size, num_actions, max_len, continuous, init_std
        )
        self.policy = make_policy().to(self.device)  # workers act on their own copies
        self.learner = RL2(self.policy, config.ppo)
        self.worker_kwargs = {
            "make_env": make_env,
            "make_policy": make_policy,
            "device": config.sampler.device,
        }
        self.sampler = make_sampler(config.sampler, self.worker_kwargs)

    def iteration_shards(self, iteration: int) -> list[Shard]:
        """The shards whose trials iteration number ``iteration`` samples."""
        cfg = self.config
        seeds = shard_seeds(cfg.seed, iteration, cfg.sampler.shards)
        sizes = _split(cfg.trials_per_iteration, cfg.sampler.shards)
        return [Shard(seed, size) for seed, size in zip(seeds, sizes, strict=True)]

    def train_iteration(self, iteration: int) -> dict[str, float]:
        shards = self.iteration_shards(iteration)
        batch = concat_batches(self.sampler.sample(on_cpu(self.policy.state_dict()), shards))
        tensors = {k: torch.as_tensor(v, device=self.device) for k, v in batch.items()}
        for key in ("mask", "dones", "rewards"):
            tensors[key] = tensors[key].float()
        generator = torch.Generator().manual_seed(shards[0].seed)
        stats = self.learner.update(tensors, generator, iteration)
        return {
            "mean_return": float(batch["returns"].mean()),
            "env_steps": float(batch["mask"].sum()),
            **self.batch_metrics(batch),
            **stats,
        }

    def batch_metrics(self, batch: Batch) -> dict[str, float]:
        """Task-specific training metrics of a sampled batch (none here)."""
        return {}

    def held_out_trials(
        self, tasks: np.ndarray, seed: int, options: dict[str, np.ndarray] | None = None
    ) -> Batch:
        """One trial of the trained policy on each held-out task, in-process, in chunks of
        1,000 tasks, the chunk starting at task i sampling its actions from ``seed + i``.
        ``options`` are further ``reset`` options of the environment with one row per task
        (a bandit's reward tape)."""
        cfg = self.config
        worker = RolloutWorker(**self.worker_kwargs, deterministic=cfg.eval.deterministic)
        chunk = 1000
        shards = [
            Shard(
                seed + i,
                len(tasks[i : i + chunk]),
                tasks[i : i + chunk],
                {key: value[i : i + chunk] for key, value in (options or {}).items()},
            )
            for i in range(0, len(tasks), chunk)
        ]
        try:
            return concat_batches(worker.sample(on_cpu(self.policy.state_dict()), shards))
        finally:
            worker.close()

    def state_dict(self) -> dict[str, Any]:
        return {"policy": self.policy.state_dict(), **self.learner.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.policy.load_state_dict(state["policy"])
        self.learner.load_state_dict(state)

    def close(self) -> None:
        self.sampler.close()
