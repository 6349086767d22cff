"""``rl2-maze``: a memory policy (SNAIL, LSTM or MANN) meta-trained by PPO on maze trials.

The SNAIL / RL² maze setting (Mishra et al. 2018, section 5.2.3; Duan et al. 2016): a trial
is ``episodes_per_trial`` episodes in one fresh perfect maze from the same start to the same
goal. Seeing only its surroundings, the agent must explore in the first episode and walk
straight to the goal in the next ones, from memory. ``snail-maze``, ``lstm-maze`` and
``mann-maze`` differ only in ``model``; the measure is the mean episode length by episode
index, beside the shortest path (the oracle) and a random walk.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any

import numpy as np

from agents.rl2_agent import RL2Agent, RL2Config
from envs.mazes import MazeVectorEnv, default_max_episode_steps, sample_tasks
from metarl.config import require, require_positive_ints
from metarl.eval.mazes import (
    episode_lengths,
    oracle_episode_lengths,
    random_episode_lengths,
    rollout_episode_ends,
    trial_paths,
)
from metarl.eval.paired import gains, paired, per_task, task_fingerprint
from metarl.eval.stats import mean_ci95
from metarl.rollout.worker import Batch


@dataclasses.dataclass
class MazeConfig:
    """Attributes:
    size: cells per side (SNAIL: 5 small, 9 large).
    episodes_per_trial: episodes in one maze per trial.
    max_episode_steps: an episode's step cap (0: 4 * size ** 2).
    step_penalty: reward lost per step; reaching the goal adds 1.
    view_radius: the agent sees the (2v + 1)-square window of the wall grid around it.
    observe_position: the agent also sees which cell it is in (a one-hot)."""

    size: int = 5
    episodes_per_trial: int = 2
    max_episode_steps: int = 0
    step_penalty: float = 0.01
    view_radius: int = 2
    observe_position: bool = False

    def __post_init__(self) -> None:
        require(self.size >= 2, "env.size", self.size, "an integer >= 2")
        require_positive_ints(self, "env", ("episodes_per_trial", "view_radius"))
        require(
            self.max_episode_steps >= 0, "env.max_episode_steps", self.max_episode_steps, ">= 0"
        )
        require(0 <= self.step_penalty < 1, "env.step_penalty", self.step_penalty, "in [0, 1)")

    def env_kwargs(self) -> dict[str, Any]:
        """Keyword arguments of :class:`envs.mazes.MazeEnv` and :class:`MazeVectorEnv`."""
        return {
            "episodes_per_trial": self.episodes_per_trial,
            "max_episode_steps": self.max_episode_steps or default_max_episode_steps(self.size),
            "step_penalty": self.step_penalty,
            "view_radius": self.view_radius,
            "observe_position": self.observe_position,
        }


@dataclasses.dataclass
class Config(RL2Config):
    """The whole ``rl2-maze`` experiment: :class:`RL2Config` and the mazes."""

    env: MazeConfig = dataclasses.field(default_factory=MazeConfig)


def _episode_lengths(batch: Batch, episodes_per_trial: int) -> np.ndarray:
    """Steps of each episode (trials, episodes_per_trial) of a rollout batch."""
    return episode_lengths(rollout_episode_ends(batch), batch["mask"], episodes_per_trial)


class RL2MazeAgent(RL2Agent):
    """RL² on maze trials, measured against the oracle and a random walk."""

    def __init__(self, config: Config) -> None:
        make_env = functools.partial(MazeVectorEnv, size=config.env.size, **config.env.env_kwargs())
        probe = make_env(1)
        super().__init__(
            config,
            make_env,
            probe.single_observation_space.shape[0],
            int(probe.single_action_space.n),
            probe.max_trial_steps,
        )

    def batch_metrics(self, batch: Batch) -> dict[str, float]:
        """Mean length of each episode of the trial (``length_episode_1``, ...)."""
        lengths = _episode_lengths(batch, self.config.env.episodes_per_trial)
        return {f"length_episode_{i + 1}": float(v) for i, v in enumerate(lengths.mean(0))}

    def evaluate(self, episodes: int) -> dict[str, Any]:
        """Mean episode length by episode index of the trial on held-out mazes, with the
        oracle's and a random walk's on the same mazes, the paired per-maze differences of
        the last episode's length (agent minus baseline), each later episode's per-maze gain
        over the first (negative: shorter), and one trial's paths to draw."""
        cfg = self.config
        kwargs = cfg.env.env_kwargs()
        tasks = sample_tasks(np.random.default_rng(cfg.eval.seed), episodes, cfg.env.size)
        batch = self.held_out_trials(tasks, cfg.eval.seed)
        count = cfg.env.episodes_per_trial
        lengths = _episode_lengths(batch, count)
        oracle = oracle_episode_lengths(tasks, count, kwargs["max_episode_steps"])
        random = random_episode_lengths(tasks, cfg.eval.seed, **kwargs)
        value, ci95 = mean_ci95(lengths[:, -1])
        first = lengths[:, 0].mean()
        steps = batch["mask"][0].sum()
        last = {"oracle": oracle[:, -1], "random": random[:, -1]}
        return {
            "metric": "episode_length",
            "higher_is_better": False,
            "value": value,
            "ci95": ci95,
            "episodes": episodes,
            "curve_of": "episode",
            "baselines": {name: float(values.mean()) for name, values in last.items()},
            "paired": {
                name: paired(lengths[:, -1], values, higher_is_better=False)
                for name, values in last.items()
            },
            **per_task(lengths[:, -1], task_fingerprint(tasks)),
            "gains": gains(lengths, list(range(2, count + 1))),
            "curve": {
                "x": list(range(1, count + 1)),
                "agent": lengths.mean(0).tolist(),
                "oracle": oracle.mean(0).tolist(),
                "random": random.mean(0).tolist(),
            },
            "last_vs_first": float(value / first),
            "last_vs_oracle": float(value / oracle[:, -1].mean()),
            "rendered_trial": {
                "task": tasks[0].tolist(),
                "paths": trial_paths(tasks[0], batch["actions"][0, :steps], **kwargs),
            },
        }


def build(config: Config) -> RL2MazeAgent:
    return RL2MazeAgent(config)
