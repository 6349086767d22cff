"""The rollout worker: runs whole trials of a memory policy on a batched task distribution.

One class serves every backend: the local sampler calls it in-process, the Ray sampler runs
copies of it as actors. Work comes as :class:`Shard` s, each with its own seed, so a shard's
trials are the same whichever worker runs it.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from gymnasium.spaces import Box
from gymnasium.vector import VectorEnv
from torch import Tensor

from metarl.devices import torch_threads
from metarl.policies import RecurrentActorCritic, draw_actions, rl2_inputs

Batch = dict[str, np.ndarray]


@dataclasses.dataclass(frozen=True)
class Shard:
    """A unit of sampling work: ``num_tasks`` trials seeded by ``seed``.

    Attributes:
        seed: seeds the environment (tasks and rewards) and the action sampling.
        num_tasks: trials run in parallel, one per task.
        tasks: fixed tasks (one row per trial); ``None`` draws them from the seed.
        options: further ``reset`` options of the environment, such as a bandit's fixed
            reward tape (``reward_uniforms``, one row per trial).
    """

    seed: int
    num_tasks: int
    tasks: np.ndarray | None = None
    options: dict[str, np.ndarray] | None = None


def shard_seeds(seed: int, iteration: int, shards: int) -> list[int]:
    """Independent 32-bit seeds for the shards of one iteration, derived from the run's seed."""
    states = np.random.SeedSequence([seed, iteration]).generate_state(shards)
    return [int(s) for s in states]


def concat_batches(batches: list[Batch]) -> Batch:
    """Join shard batches along the trial axis, padding time to the longest shard."""
    horizon = max(b["mask"].shape[1] for b in batches)
    out: dict[str, list[np.ndarray]] = {k: [] for k in batches[0]}
    for b in batches:
        pad = horizon - b["mask"].shape[1]
        for k, v in b.items():
            widths = [(0, 0), (0, pad)] + [(0, 0)] * (v.ndim - 2) if v.ndim >= 2 else [(0, 0)]
            out[k].append(np.pad(v, widths))
    return {k: np.concatenate(v) for k, v in out.items()}


def _scatter(values: Tensor, rows: np.ndarray, batch: int) -> np.ndarray:
    """``values`` of the stepped ``rows`` as a batch-sized array, zero in the other rows
    (trials that have ended: masked out)."""
    values = values.cpu().numpy()
    out = np.zeros((batch, *values.shape[1:]), values.dtype)
    out[rows] = values
    return out


class RolloutWorker:
    """Samples whole trials with a :class:`RecurrentActorCritic`.

    Args:
        make_env: builds a batched task distribution with a given number of tasks; the env
            exposes ``max_trial_steps`` and reads fixed tasks from ``reset(options={"tasks"})``.
        make_policy: builds the policy (weights come later through :meth:`sample`).
        deterministic: act greedily (a categorical's most likely action, a Gaussian's mean)
            instead of sampling from the policy.
        device: where the policy acts (``sampler.device``); environments stay on the CPU.
    """

    def __init__(
        self,
        make_env: Callable[[int], VectorEnv],
        make_policy: Callable[[], RecurrentActorCritic],
        deterministic: bool = False,
        device: str = "cpu",
    ) -> None:
        self.make_env = make_env
        self.device = torch.device(device)
        self.policy = make_policy().to(self.device)
        self.policy.eval()
        self.deterministic = deterministic
        self._envs: dict[int, VectorEnv] = {}

    def sample(self, weights: dict[str, Any] | None, shards: list[Shard]) -> list[Batch]:
        """Load ``weights`` (if given) and run one trial per task of each shard.

        Runs on one torch thread: acting is a long chain of small tensor operations, which
        intra-op threads slow down (ten times, measured, when the other core is busy)."""
        if weights is not None:
            self.policy.load_state_dict(weights)
        with torch_threads(1):
            return [self.run_trials(shard) for shard in shards]

    def close(self) -> None:
        """Close the environments this worker built (Meta-World's return their simulations
        to the process's pool)."""
        for env in self._envs.values():
            env.close()
        self._envs.clear()

    def _env(self, num_tasks: int) -> VectorEnv:
        if num_tasks not in self._envs:
            self._envs[num_tasks] = self.make_env(num_tasks)
        return self._envs[num_tasks]

    @torch.no_grad()
    def run_trials(self, shard: Shard) -> Batch:
        """Run one trial for each of the shard's tasks; return (B, T) arrays: inputs
        (B, T, D), actions (integers, or (B, T, A) floats unclipped for a Box space), logp,
        values, rewards, dones, mask, and ``success`` where the environment reports
        ``info["success"]`` (Meta-World's flag, 0 on masked steps); ``returns`` (B,).

        Once half of the trials the policy steps have ended, it steps on with the others
        only (:meth:`BackboneState.select`): trials that end early (mazes) cost less. The
        rows of ended trials hold zeros, masked out."""
        env = self._env(shard.num_tasks)
        space = env.single_action_space
        continuous = isinstance(space, Box)
        width = space.shape[0] if continuous else int(space.n)
        generator = torch.Generator(self.device).manual_seed(shard.seed)
        obs, _ = env.reset(seed=shard.seed, options={"tasks": shard.tasks, **(shard.options or {})})
        batch = shard.num_tasks
        state = self.policy.initial_state(batch, env.max_trial_steps)
        prev_actions = np.zeros((batch, width), np.float32) if continuous else np.full(batch, -1)
        prev_rewards = np.zeros(batch)
        prev_dones = np.zeros(batch, dtype=bool)
        alive = np.ones(batch, dtype=bool)
        running = np.arange(batch)  # the rows the policy steps, in its state's order
        steps: dict[str, list[np.ndarray]] = {
            k: [] for k in ("inputs", "actions", "logp", "values", "rewards", "dones", "mask")
        }
        while alive.any():
            if alive.sum() <= len(running) // 2:  # step on without the trials that ended
                kept = np.flatnonzero(alive)
                state = state.select(torch.as_tensor(np.searchsorted(running, kept)))
                running = kept
            inputs = rl2_inputs(obs, prev_actions, prev_rewards, prev_dones, width)
            step_inputs = torch.from_numpy(inputs[running]).to(self.device)
            dist, values, state = self.policy.step(step_inputs, state)
            actions = draw_actions(dist, generator, self.deterministic)
            drawn = {
                key: _scatter(value, running, batch)
                for key, value in (
                    ("actions", actions),
                    ("logp", dist.log_prob(actions)),
                    ("values", values),
                )
            }
            actions_np = drawn["actions"]
            sent = np.clip(actions_np, space.low, space.high) if continuous else actions_np
            obs, rewards, terminated, truncated, info = env.step(sent)
            trial_end = terminated | truncated
            for key, value in (
                ("inputs", inputs),
                ("actions", actions_np),
                ("logp", drawn["logp"]),
                ("values", drawn["values"]),
                ("rewards", rewards * alive),
                ("dones", trial_end & alive),
                ("mask", alive.copy()),
            ):
                steps[key].append(value)
            if "success" in info:
                steps.setdefault("success", []).append(
                    np.asarray(info["success"], dtype=np.float32) * alive
                )
            alive &= ~trial_end
            prev_actions = sent
            prev_rewards = rewards
            prev_dones = info.get("episode_end", trial_end)
        out = {k: np.stack(v, axis=1) for k, v in steps.items()}
        out["returns"] = out["rewards"].sum(axis=1)
        return out
