"""``rl2-metaworld``: a memory policy (SNAIL, LSTM or MANN) meta-trained by PPO on Meta-World
trials, with a Gaussian actor over the arm's 4 continuous actions.

The RL² protocol on Meta-World (Yu et al. 2019): a trial is ``episodes_per_trial`` episodes of
one task (an ML1 goal, or an ML10/ML45 task and goal) whose goal is hidden; the memory
persists across the trial's episodes, so later episodes can use what earlier ones found. The
measure is the benchmark's success rate (the flag set at any step of an episode) by episode
of the trial on held-out tasks, beside uniformly random actions on the same tasks.
``snail-ml1-reach``, ``lstm-ml1-reach``, ``snail-ml10`` and ``snail-ml45`` differ only in
``env`` and ``model``. Needs the ``metaworld`` extra.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any

import numpy as np

from agents.rl2_agent import RL2Agent, RL2Config
from envs.metaworld import (
    BENCHMARKS,
    HORIZON,
    MetaWorldTrialVectorEnv,
    action_space,
    metaworld_tasks,
    observation_space,
)
from metarl.config import require, require_positive_ints
from metarl.eval.paired import gains, versus_baselines
from metarl.rollout.worker import Batch


@dataclasses.dataclass
class MetaWorldConfig:
    """Attributes:
    benchmark: ML1, ML10 or ML45.
    task: ML1's task class (``reach``, ``push``, ...); unused by ML10 and ML45.
    horizon: steps per episode (the benchmark's 500).
    episodes_per_trial: episodes per trial, the memory kept across them.
    init_std: the Gaussian actor's initial standard deviation."""

    benchmark: str = "ML1"
    task: str = "reach"
    horizon: int = HORIZON
    episodes_per_trial: int = 2
    init_std: float = 1.0

    def __post_init__(self) -> None:
        require(self.benchmark in BENCHMARKS, "env.benchmark", self.benchmark, str(BENCHMARKS))
        require_positive_ints(self, "env", ("horizon", "episodes_per_trial"))
        require(self.init_std > 0, "env.init_std", self.init_std, "> 0")


@dataclasses.dataclass
class Config(RL2Config):
    """The whole ``rl2-metaworld`` experiment: :class:`RL2Config` and the benchmark."""

    env: MetaWorldConfig = dataclasses.field(default_factory=MetaWorldConfig)


class RL2MetaWorldAgent(RL2Agent):
    """RL² on Meta-World trials, scored by success rate against random actions."""

    headline = "success_rate"

    def __init__(self, config: Config) -> None:
        env = config.env
        self.tasks = metaworld_tasks(env.benchmark, env.task)  # fails early without the extra
        make_env = functools.partial(
            MetaWorldTrialVectorEnv,
            benchmark=env.benchmark,
            task=env.task,
            horizon=env.horizon,
            episodes_per_trial=env.episodes_per_trial,
        )
        max_len = env.horizon * env.episodes_per_trial
        obs_size, action_size = observation_space().shape[0], action_space().shape[0]
        super().__init__(
            config, make_env, obs_size, action_size, max_len, continuous=True, init_std=env.init_std
        )

    def by_episode(self, steps: np.ndarray) -> np.ndarray:
        """A (trials, steps) array split into (trials, episodes_per_trial, horizon)."""
        env = self.config.env
        return steps.reshape(len(steps), env.episodes_per_trial, env.horizon)

    def batch_metrics(self, batch: Batch) -> dict[str, float]:
        """Success rate of the trial's last episode (the headline) and of its first."""
        solved = self.by_episode(batch["success"]).max(axis=2).mean(axis=0)
        return {"success_rate": float(solved[-1]), "success_first_episode": float(solved[0])}

    def evaluate(self, episodes: int) -> dict[str, Any]:
        """Success by episode of the trial on ``episodes`` held-out tasks (ML1: the test
        goals; ML10/ML45: the test classes' goals), for the agent and for uniformly random
        actions on the same tasks. The value is the last episode's success rate; ``paired``
        compares it task by task with random actions and with the agent's own first episode
        (the trial's gain from memory); ``gains`` each later episode over the first."""
        cfg = self.config
        rng = np.random.default_rng(cfg.eval.seed)
        tasks = self.tasks.sample(rng, episodes, held_out=True)
        batch = self.held_out_trials(tasks, cfg.eval.seed)
        solved = self.by_episode(batch["success"]).max(axis=2)  # flag set at any step
        random_solved, random_returns = self.random_trials(tasks, cfg.eval.seed)
        compared = versus_baselines(
            solved[:, -1],
            {"random": random_solved[:, -1], "first_episode": solved[:, 0]},
            higher_is_better=True,
            tasks=(tasks,),
        )
        x = list(range(1, solved.shape[1] + 1))
        returns = self.by_episode(batch["rewards"]).sum(axis=2)
        return {
            "metric": "success_rate",
            "higher_is_better": True,
            **compared,
            "episodes": len(tasks),
            "curve_of": "episode",
            "gains": gains(solved, x[1:]),
            "curve": {
                "x": x,
                "agent": solved.mean(0).tolist(),
                "random": random_solved.mean(0).tolist(),
            },
            "return_curve": {
                "x": x,
                "agent": returns.mean(0).tolist(),
                "random": random_returns.mean(0).tolist(),
            },
        }

    def random_trials(self, tasks: np.ndarray, seed: int) -> tuple[np.ndarray, np.ndarray]:
        """Success and return by episode (tasks, episodes_per_trial) of uniformly random
        actions on ``tasks``."""
        env = self.worker_kwargs["make_env"](len(tasks))
        rng = np.random.default_rng(seed)
        env.reset(seed=seed, options={"tasks": tasks})
        steps: dict[str, list[np.ndarray]] = {"success": [], "rewards": []}
        for _ in range(env.max_trial_steps):
            actions = rng.uniform(-1.0, 1.0, env.action_space.shape).astype(np.float32)
            _, reward, _, _, info = env.step(actions)
            steps["success"].append(info["success"])
            steps["rewards"].append(reward)
        env.close()
        success = self.by_episode(np.stack(steps["success"], axis=1))
        rewards = self.by_episode(np.stack(steps["rewards"], axis=1))
        return success.max(axis=2), rewards.sum(axis=2)


def build(config: Config) -> RL2MetaWorldAgent:
    return RL2MetaWorldAgent(config)
