"""The episode worker of meta-RL by gradient adaptation: samples episodes of several tasks,
each with its own policy parameters (θ before adaptation, that task's φ after).

It complements :class:`metarl.rollout.RolloutWorker`, which runs whole multi-episode trials
of a memory policy. The same samplers run both, in-process or as Ray actors, and a worker
takes any number of tasks, so the meta-batch never depends on the number of workers.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from gymnasium.vector import VectorEnv
from torch import Tensor, nn
from torch.func import functional_call

from metarl.devices import torch_threads
from metarl.rollout.worker import Batch


@dataclasses.dataclass(frozen=True)
class TaskShard:
    """A unit of sampling work: ``episodes`` episodes of each task in ``tasks``.

    Attributes:
        seed: seeds the environments and the action noise of every task in the shard.
        tasks: one row per task, as the environment's ``set_task`` takes it.
        params: one parameter dict per task (an adapted policy); ``None``: the sampler's
            weights for every task.
    """

    seed: int
    tasks: np.ndarray
    params: list[dict[str, Tensor]] | None = None


class EpisodeWorker:
    """Samples fixed-horizon episodes of a policy on tasks of a distribution.

    Args:
        make_envs: builds a gymnasium ``VectorEnv`` of a given number of environments that
            all take their task from ``reset(options={"task": ...})``.
        make_policy: builds the policy; it maps observations (N, D) to a
            ``torch.distributions.Distribution`` over actions.
        episodes: episodes per task.
        horizon: steps per episode; an episode that terminates earlier is masked after its end.
        device: where the policy acts (``sampler.device``); environments stay on the CPU.
    """

    def __init__(
        self,
        make_envs: Callable[[int], VectorEnv],
        make_policy: Callable[[], nn.Module],
        episodes: int,
        horizon: int,
        device: str = "cpu",
    ) -> None:
        self.envs = make_envs(episodes)
        self.device = torch.device(device)
        self.policy = make_policy().to(self.device)
        self.horizon = horizon
        space = self.envs.single_action_space
        self.low, self.high = space.low, space.high

    def sample(self, weights: dict[str, Any] | None, shards: list[TaskShard]) -> list[Batch]:
        """Load ``weights`` (if given) and sample every task of every shard.

        Returns one batch per shard: ``obs`` (n, E, T, D), ``actions`` (n, E, T, A),
        ``rewards`` and ``mask`` (n, E, T) and ``returns`` (n, E), for its n tasks."""
        if weights is not None:
            self.policy.load_state_dict(weights)
        with torch_threads(1):  # small policies: intra-op threads only slow acting down
            return [self._run_shard(shard) for shard in shards]

    def _run_shard(self, shard: TaskShard) -> Batch:
        seeds = np.random.SeedSequence(shard.seed).generate_state(len(shard.tasks))
        own = {k: v.detach() for k, v in self.policy.named_parameters()}
        params = [own] * len(shard.tasks) if shard.params is None else shard.params
        runs = [
            self.run_task(task, {k: v.to(self.device) for k, v in p.items()}, int(seed))
            for task, p, seed in zip(shard.tasks, params, seeds, strict=True)
        ]
        return {k: np.stack([r[k] for r in runs]) for k in runs[0]}

    @torch.no_grad()
    def run_task(self, task: Any, params: dict[str, Tensor], seed: int) -> Batch:
        """``episodes`` episodes of one task with the policy on ``params``; (E, T, ...) arrays."""
        envs, horizon = self.envs, self.horizon
        generator = torch.Generator(self.device).manual_seed(seed)
        obs, _ = envs.reset(seed=seed, options={"task": task})
        count = envs.num_envs
        out = {
            "obs": np.zeros((count, horizon, *obs.shape[1:]), dtype=np.float32),
            "actions": np.zeros((count, horizon, *self.low.shape), dtype=np.float32),
            "rewards": np.zeros((count, horizon), dtype=np.float32),
            "mask": np.zeros((count, horizon), dtype=np.float32),
        }
        alive = np.ones(count, dtype=bool)
        for t in range(horizon):
            inputs = torch.as_tensor(obs, dtype=torch.float32, device=self.device)
            dist = functional_call(self.policy, params, (inputs,))
            noise = torch.randn(dist.mean.shape, generator=generator, device=self.device)
            action = (dist.mean + dist.stddev * noise).cpu().numpy()
            out["obs"][:, t], out["actions"][:, t], out["mask"][:, t] = obs, action, alive
            obs, reward, terminated, truncated, _ = envs.step(np.clip(action, self.low, self.high))
            out["rewards"][:, t] = reward * alive
            alive &= ~(terminated | truncated)
            if not alive.any():
                break
        out["returns"] = out["rewards"].sum(axis=1)
        return out

    def close(self) -> None:
        self.envs.close()
