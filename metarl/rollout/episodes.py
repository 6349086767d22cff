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
from gymnasium import spaces
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

    The tasks of one :meth:`sample` call run in lockstep, each on its own vector of
    environments, and one batched policy call (``torch.func.vmap`` over the tasks'
    parameters) acts for all of them at each step: acting costs one call per step instead of
    one per task and step. Each task keeps its own seeded noise, so its episodes do not
    depend on which tasks it was sampled with.

    Args:
        make_envs: builds a gymnasium ``VectorEnv`` of a given number of environments that
            all take their task from ``reset(options={"task": ...})``.
        make_policy: builds the policy; it maps observations (N, D) to a Gaussian over
            actions of a ``Box`` action space (an ``Independent`` ``Normal``) or a
            ``Categorical`` over those of a ``Discrete`` one.
        episodes: episodes per task.
        horizon: steps per episode; an episode that terminates earlier is masked after its end.
        device: where the policy acts (``sampler.device``); environments stay on the CPU.
    """

    lockstep = 20
    """Tasks run at once at most (each holds ``episodes`` environments: 20 x 20 Ant
    environments take about 460 MB)."""

    def __init__(
        self,
        make_envs: Callable[[int], VectorEnv],
        make_policy: Callable[[], nn.Module],
        episodes: int,
        horizon: int,
        device: str = "cpu",
    ) -> None:
        self.make_envs, self.episodes = make_envs, episodes
        self.envs = [make_envs(episodes)]  # one vector per task in lockstep, made as needed
        self.device = torch.device(device)
        self.policy = make_policy().to(self.device)
        self.horizon = horizon
        space = self.envs[0].single_action_space
        self.discrete = isinstance(space, spaces.Discrete)
        self.action_shape: tuple[int, ...] = () if self.discrete else space.shape
        self.bounds = None if self.discrete else (space.low, space.high)
        self._act = torch.func.vmap(self._heads)

    def sample(self, weights: dict[str, Any] | None, shards: list[TaskShard]) -> list[Batch]:
        """Load ``weights`` (if given) and sample every task of every shard.

        Returns one batch per shard: ``obs`` (n, E, T, D), ``actions`` (n, E, T, A) floats
        for a ``Box`` action space or (n, E, T) integers for a ``Discrete`` one, ``rewards``
        and ``mask`` (n, E, T), ``returns`` (n, E) and ``success`` (n, E): 1 where the
        environment's ``info["success"]`` was set at some step of the episode (Meta-World's
        flag; 0 for environments without one), for its n tasks."""
        if weights is not None:
            self.policy.load_state_dict(weights)
        own = {k: v.detach() for k, v in self.policy.named_parameters()}
        tasks, params, seeds, sizes = [], [], [], []
        for shard in shards:
            tasks += list(shard.tasks)
            params += [own] * len(shard.tasks) if shard.params is None else shard.params
            seeds += [
                int(s) for s in np.random.SeedSequence(shard.seed).generate_state(len(shard.tasks))
            ]
            sizes.append(len(shard.tasks))
        with torch_threads(1):  # small policies: intra-op threads only slow acting down
            groups = [
                self.run_tasks(tasks[lo:hi], params[lo:hi], seeds[lo:hi])
                for lo, hi in _groups(len(tasks), self.lockstep)
            ]
        batch = {k: np.concatenate([g[k] for g in groups]) for k in groups[0]}
        bounds = np.cumsum([0, *sizes])
        return [
            {k: v[lo:hi] for k, v in batch.items()}
            for lo, hi in zip(bounds[:-1], bounds[1:], strict=True)
        ]

    def _heads(self, params: dict[str, Tensor], obs: Tensor) -> tuple[Tensor, ...]:
        """The action distribution's parameters: (logits,) of a categorical, (mean, std) of
        a Gaussian; tensors, so that ``vmap`` over tasks can return them."""
        dist = functional_call(self.policy, params, (obs,))
        return (dist.logits,) if self.discrete else (dist.mean, dist.stddev)

    def _noise(self, shape: torch.Size, generator: torch.Generator) -> Tensor:
        """One task's noise for one step: Exp(1) draws for the Gumbel-max trick (−log of
        one is a standard Gumbel), standard normal ones for a Gaussian."""
        if self.discrete:
            return torch.empty(shape, device=self.device).exponential_(generator=generator)
        return torch.randn(shape, generator=generator, device=self.device)

    def _sample(self, heads: tuple[Tensor, ...], noise: Tensor) -> np.ndarray:
        """Actions from the distributions' parameters and their noise: argmax(logits + Gumbel)
        is a categorical draw; mean + std · ε a Gaussian one."""
        if self.discrete:
            (logits,) = heads
            return (logits - noise.log()).argmax(-1).cpu().numpy()
        mean, std = heads
        return (mean + std * noise).cpu().numpy()

    @torch.no_grad()
    def run_tasks(
        self, tasks: list[Any], params: list[dict[str, Tensor]], seeds: list[int]
    ) -> Batch:
        """``episodes`` episodes of each task, task i with the policy on ``params[i]`` and
        its environments and noise seeded by ``seeds[i]``: arrays (n, E, T, ...)."""
        count, horizon = len(tasks), self.horizon
        while len(self.envs) < count:
            self.envs.append(self.make_envs(self.episodes))
        stacked = {k: torch.stack([p[k] for p in params]).to(self.device) for k in params[0]}
        generators = [torch.Generator(self.device).manual_seed(seed) for seed in seeds]
        obs = np.stack(
            [
                envs.reset(seed=seed, options={"task": task})[0]
                for envs, task, seed in zip(self.envs[:count], tasks, seeds, strict=True)
            ]
        )
        episodes = obs.shape[1]
        out = {
            "obs": np.zeros((count, episodes, horizon, *obs.shape[2:]), dtype=np.float32),
            "actions": np.zeros(
                (count, episodes, horizon, *self.action_shape),
                dtype=np.int64 if self.discrete else np.float32,
            ),
            "rewards": np.zeros((count, episodes, horizon), dtype=np.float32),
            "mask": np.zeros((count, episodes, horizon), dtype=np.float32),
        }
        success = np.zeros((count, episodes), dtype=np.float32)
        alive = np.ones((count, episodes), dtype=bool)
        for t in range(horizon):
            heads = self._act(
                stacked, torch.as_tensor(obs, dtype=torch.float32, device=self.device)
            )
            running = np.flatnonzero(alive.any(axis=1))  # tasks with an episode still going
            noise = torch.stack([self._noise(heads[0].shape[1:], generators[i]) for i in running])
            action = self._sample(tuple(head[running] for head in heads), noise)
            out["obs"][running, :, t] = obs[running]
            out["actions"][running, :, t] = action
            out["mask"][running, :, t] = alive[running]
            for i, act in zip(running, action, strict=True):
                if self.bounds is not None:
                    act = np.clip(act, *self.bounds)
                reward, ended, solved = _step(self.envs[i], act, alive[i], obs[i])
                out["rewards"][i, :, t] = reward * alive[i]
                success[i] = np.maximum(success[i], solved * alive[i])
                alive[i] &= ~ended
            if not alive.any():
                break
        out["returns"] = out["rewards"].sum(axis=2)
        out["success"] = success
        return out

    def close(self) -> None:
        for envs in self.envs:
            envs.close()


def _groups(count: int, size: int) -> list[tuple[int, int]]:
    """Consecutive index ranges of at most ``size`` covering ``range(count)``."""
    return [(lo, min(lo + size, count)) for lo in range(0, count, size)]


def _step(
    envs: VectorEnv, actions: np.ndarray, alive: np.ndarray, obs: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Step one task's episodes, writing the next observations into ``obs``; returns the
    rewards, which episodes ended and their ``info["success"]`` flags (0 where absent). A
    ``SyncVectorEnv`` steps only its sub-environments whose episode runs (an Ant that fell
    would otherwise simulate a masked episode to the horizon); any other vector steps at
    once."""
    sub_envs = getattr(envs, "envs", None)
    if sub_envs is None:
        obs[:], reward, terminated, truncated, info = envs.step(actions)
        solved = np.asarray(info.get("success", 0.0), dtype=np.float32)
        return reward, terminated | truncated, np.broadcast_to(solved, reward.shape)
    reward, ended, solved = np.zeros(len(sub_envs)), ~alive, np.zeros(len(sub_envs))
    for j in np.flatnonzero(alive):
        obs[j], reward[j], terminated, truncated, info = sub_envs[j].step(actions[j])
        ended[j] = terminated or truncated
        solved[j] = info.get("success", 0.0)
    return reward, ended, solved
