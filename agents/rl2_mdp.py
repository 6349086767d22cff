"""``rl2-mdp``: a memory policy (SNAIL, LSTM or MANN) meta-trained by PPO on random tabular
MDPs.

The RL² / SNAIL setting (Duan et al. 2016, section 4.2; Mishra et al. 2018, section 5.2.2):
each trial is ``episodes_per_trial`` episodes (n) of 10 steps in one fresh MDP of 10 states
and 5 actions (:mod:`envs.tabular_mdp`). The policy sees the state, its previous action and
reward and the episode ends, and must learn the MDP within the trial. ``snail-mdp``,
``lstm-mdp`` and ``mann-mdp`` differ only in ``model``; the measure is the return per trial,
beside random, PSRL, greedy, tuned epsilon-greedy and the oracle on the same tasks and noise.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any

import numpy as np

from agents.rl2_agent import RL2Agent, RL2Config
from envs.tabular_mdp import TabularMDPVectorEnv
from metarl.config import require_positive_ints
from metarl.rollout.worker import Batch


@dataclasses.dataclass
class MDPConfig:
    """Attributes:
    num_states: states per MDP (Duan et al.: 10).
    num_actions: actions per state (Duan et al.: 5).
    episode_length: steps per episode, each from state 0 (Duan et al.: 10).
    episodes_per_trial: episodes per trial n (Duan et al.: 10, 25, 50, 75, 100)."""

    num_states: int = 10
    num_actions: int = 5
    episode_length: int = 10
    episodes_per_trial: int = 10

    def __post_init__(self) -> None:
        require_positive_ints(
            self, "env", ("num_states", "num_actions", "episode_length", "episodes_per_trial")
        )


@dataclasses.dataclass
class Config(RL2Config):
    """The whole ``rl2-mdp`` experiment: :class:`RL2Config` and the MDPs."""

    env: MDPConfig = dataclasses.field(default_factory=MDPConfig)


class RL2MDPAgent(RL2Agent):
    """RL² on random tabular MDP trials, measured against PSRL, greedy learners and the
    oracle."""

    def __init__(self, config: Config) -> None:
        env = config.env
        make_env = functools.partial(TabularMDPVectorEnv, **dataclasses.asdict(env))
        max_len = env.episodes_per_trial * env.episode_length
        super().__init__(config, make_env, env.num_states + 1, env.num_actions, max_len)

    def episode_returns(self, batch: Batch) -> np.ndarray:
        """The return of each episode (trials, episodes_per_trial) of a rollout batch: every
        trial has the same length, so its steps split evenly into episodes."""
        env = self.config.env
        shape = (len(batch["rewards"]), env.episodes_per_trial, env.episode_length)
        return batch["rewards"].reshape(shape).sum(axis=2)

    def batch_metrics(self, batch: Batch) -> dict[str, float]:
        """Mean return of the trial's first and last episode."""
        returns = self.episode_returns(batch).mean(axis=0)
        return {
            "return_first_episode": float(returns[0]),
            "return_last_episode": float(returns[-1]),
        }

    def evaluate(self, episodes: int) -> dict[str, Any]:
        """Return per trial of the agent and every baseline on the same held-out tasks and
        noise tape (:func:`metarl.eval.mdp_baselines.mdp_trials`), and the mean return by
        episode of the trial (:func:`metarl.eval.mdps.mdp_report`)."""
        from metarl.eval.mdp_baselines import mdp_trials
        from metarl.eval.mdps import mdp_report

        cfg, env = self.config, self.config.env
        steps = env.episodes_per_trial * env.episode_length
        seed = np.random.SeedSequence(cfg.eval.seed)
        tasks, tape, players = mdp_trials(seed, episodes, env.num_states, env.num_actions, steps)
        batch = self.held_out_trials(tasks, players, {"tape": tape})
        return mdp_report(
            self.episode_returns(batch),
            tasks,
            tape,
            players,
            env.num_states,
            env.num_actions,
            env.episode_length,
        )


def build(config: Config) -> RL2MDPAgent:
    return RL2MDPAgent(config)
