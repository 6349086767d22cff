"""``rl2-bandit``: a memory policy (SNAIL, LSTM or MANN) meta-trained by PPO on Bernoulli
bandits.

The RL² / SNAIL setting (Duan et al. 2016, Mishra et al. 2018): each trial is ``horizon``
pulls of a fresh k-armed bandit; the policy sees its previous action and reward and must
explore and exploit within the trial. ``snail-bandit``, ``lstm-bandit`` and ``mann-bandit``
differ only in ``model``.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any

import numpy as np

from agents.rl2_agent import RL2Agent, RL2Config
from envs.bandits import BernoulliBanditVectorEnv
from metarl.config import require_positive_ints


@dataclasses.dataclass
class BanditConfig:
    """Attributes:
    num_arms: arms per bandit (k).
    horizon: pulls per trial (n)."""

    num_arms: int = 5
    horizon: int = 10

    def __post_init__(self) -> None:
        require_positive_ints(self, "env", ("num_arms", "horizon"))


@dataclasses.dataclass
class Config(RL2Config):
    """The whole ``rl2-bandit`` experiment: :class:`RL2Config` and the bandits."""

    env: BanditConfig = dataclasses.field(default_factory=BanditConfig)


class RL2BanditAgent(RL2Agent):
    """RL² on k-armed bandit trials, measured against the classic bandit algorithms."""

    def __init__(self, config: Config) -> None:
        env = config.env
        make_env = functools.partial(
            BernoulliBanditVectorEnv, num_arms=env.num_arms, horizon=env.horizon
        )
        super().__init__(config, make_env, 1, env.num_arms, env.horizon)

    def evaluate(self, episodes: int) -> dict[str, Any]:
        """Cumulative reward of the agent and every baseline on the same held-out tasks and
        reward tape (:func:`metarl.eval.bandit_baselines.bandit_trials`)."""
        from metarl.eval.bandit_baselines import bandit_trials
        from metarl.eval.bandits import bandit_report

        cfg, env = self.config, self.config.env
        seed = np.random.SeedSequence(cfg.eval.seed)
        tasks, uniforms, players = bandit_trials(seed, episodes, env.num_arms, env.horizon)
        rewards = self.held_out_trials(tasks, players, {"reward_uniforms": uniforms})["rewards"]
        return bandit_report(rewards, tasks, uniforms, players)


def build(config: Config) -> RL2BanditAgent:
    return RL2BanditAgent(config)
