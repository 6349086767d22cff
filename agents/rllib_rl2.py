"""``rllib-rl2``: RL² as RLlib runs it, a baseline for metarl's own ``lstm-bandit``.

RLlib's PPO (new API stack) trains its default LSTM model (``DefaultModelConfig(use_lstm=True)``:
an MLP tokenizer, one LSTM layer, linear policy and value heads) on bandit trials of the
``metarl-bandit`` environment (:mod:`envs.rllib`): one RLlib episode is one trial, and the
observation carries the RL² inputs (Duan et al. 2016), so the LSTM's memory spans the trial.
Evaluation plays the trained RLModule on the same held-out tasks as ``rl2-bandit`` and
reports it beside the same baselines (Gittins, UCB1, Thompson sampling, ...).
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np
import torch

from agents.rl2_agent import EvalConfig
from agents.rl2_bandit import BanditConfig
from envs.rllib import BANDIT, register_envs
from metarl.config import TrainConfig, require, require_positive_ints
from metarl.learners.rl2 import PPOConfig as MetarlPPOConfig
from metarl.policies import rl2_inputs
from metarl.rollout.samplers import init_ray


@dataclasses.dataclass
class LSTMConfig:
    """RLlib's default recurrent model.

    Attributes:
        lstm_cell_size: LSTM units.
        tokenizer_hiddens: widths of the tanh MLP between the RL² inputs and the LSTM
            (RLlib's ``fcnet_hiddens``; it needs at least one layer)."""

    lstm_cell_size: int = 256
    tokenizer_hiddens: list[int] = dataclasses.field(default_factory=lambda: [64])

    def __post_init__(self) -> None:
        require_positive_ints(self, "model", ("lstm_cell_size",))
        require(
            len(self.tokenizer_hiddens) >= 1 and min(self.tokenizer_hiddens) >= 1,
            "model.tokenizer_hiddens",
            self.tokenizer_hiddens,
            "a non-empty list of integers >= 1",
        )


@dataclasses.dataclass
class PPOConfig(MetarlPPOConfig):
    """metarl's PPO hyper-parameters, as RLlib's PPO takes them.

    Attributes:
        train_batch_size: environment steps sampled per update (``train_batch_size_per_learner``);
            ``minibatches`` cuts it into minibatches of ``train_batch_size // minibatches`` steps.

    RLlib always standardises advantages (``normalize_advantages`` must stay true); its KL
    penalty is off, as in metarl's PPO."""

    train_batch_size: int = 10_000

    def __post_init__(self) -> None:
        super().__post_init__()
        require(
            self.train_batch_size >= self.minibatches,
            "ppo.train_batch_size",
            self.train_batch_size,
            f"an integer >= ppo.minibatches ({self.minibatches})",
        )
        require(
            self.normalize_advantages,
            "ppo.normalize_advantages",
            self.normalize_advantages,
            "true (RLlib always standardises advantages)",
        )
        require(
            self.entropy_final is None,
            "ppo.entropy_final",
            self.entropy_final,
            "null: the RLlib baseline keeps a constant entropy bonus",
        )
        require(
            not self.normalize_returns,
            "ppo.normalize_returns",
            self.normalize_returns,
            "false (RLlib's PPO has no return normalisation)",
        )


@dataclasses.dataclass
class RLlibConfig:
    """Where RLlib samples.

    Attributes:
        env_runners: RLlib EnvRunner actors (0: sample in the training process).
        envs_per_runner: environments each runner steps at once (a gymnasium vector env).
        bootstrap_trial_end: let RLlib bootstrap a value at the end of a trial, as at a
            time-limit truncation; false (the default) ends the trial as metarl's PPO does,
            with no value after it (:class:`envs.rllib.RL2Inputs`)."""

    env_runners: int = 0
    envs_per_runner: int = 32
    bootstrap_trial_end: bool = False

    def __post_init__(self) -> None:
        require(self.env_runners >= 0, "rllib.env_runners", self.env_runners, "an integer >= 0")
        require_positive_ints(self, "rllib", ("envs_per_runner",))


@dataclasses.dataclass
class Config:
    """The whole ``rllib-rl2`` experiment.

    Attributes:
        name: experiment name.
        agent: the recipe.
        seed: RLlib's seed (weights, environments, shuffling).
        train: ``train.device`` must be ``auto`` or ``cpu``: this baseline's learner is
            RLlib's own, on the CPU (a small LSTM; its GPU settings are RLlib's business)."""

    name: str
    agent: str
    seed: int = 0
    env: BanditConfig = dataclasses.field(default_factory=BanditConfig)
    model: LSTMConfig = dataclasses.field(default_factory=LSTMConfig)
    ppo: PPOConfig = dataclasses.field(default_factory=PPOConfig)
    rllib: RLlibConfig = dataclasses.field(default_factory=RLlibConfig)
    train: TrainConfig = dataclasses.field(default_factory=TrainConfig)
    eval: EvalConfig = dataclasses.field(default_factory=EvalConfig)

    def __post_init__(self) -> None:
        require(
            self.ppo.train_batch_size >= self.env.horizon,
            "ppo.train_batch_size",
            self.ppo.train_batch_size,
            f"at least one trial (env.horizon = {self.env.horizon} steps)",
        )
        require(
            self.train.device in ("auto", "cpu"),
            "train.device",
            self.train.device,
            "auto or cpu (RLlib's learner runs on the CPU in this recipe)",
        )


def ppo_config(config: Config) -> Any:
    """The ``ray.rllib.algorithms.ppo.PPOConfig`` of an experiment."""
    from ray.rllib.algorithms.ppo import PPOConfig as RLlibPPOConfig
    from ray.rllib.core.rl_module.default_model_config import DefaultModelConfig

    env, ppo = config.env, config.ppo
    trials = max(ppo.train_batch_size // env.horizon, 1)
    return (
        RLlibPPOConfig()
        .environment(
            BANDIT,
            env_config={
                "num_arms": env.num_arms,
                "horizon": env.horizon,
                "trial_end_terminates": not config.rllib.bootstrap_trial_end,
            },
        )
        .framework("torch")
        .env_runners(
            num_env_runners=config.rllib.env_runners,
            num_envs_per_env_runner=config.rllib.envs_per_runner,
        )
        .learners(num_learners=0)
        .training(
            lr=ppo.lr,
            gamma=ppo.gamma,
            lambda_=ppo.gae_lambda,
            clip_param=ppo.clip,
            num_epochs=ppo.epochs,
            train_batch_size_per_learner=ppo.train_batch_size,
            minibatch_size=ppo.train_batch_size // ppo.minibatches,
            entropy_coeff=ppo.entropy_coef,
            # metarl's PPO weighs 0.5 * squared error by value_coef and never clips it; RLlib
            # weighs the squared error and, by default, clips it at 10, which at bandit
            # returns of 5 to 100 stops the value function from learning.
            vf_loss_coeff=0.5 * ppo.value_coef,
            vf_clip_param=float("inf"),
            grad_clip=ppo.max_grad_norm,
            grad_clip_by="global_norm",
            use_kl_loss=False,
        )
        .rl_module(
            model_config=DefaultModelConfig(
                use_lstm=True,
                lstm_cell_size=config.model.lstm_cell_size,
                max_seq_len=env.horizon,  # a whole trial per sequence
                fcnet_hiddens=list(config.model.tokenizer_hiddens),
            )
        )
        .reporting(metrics_num_episodes_for_smoothing=trials)  # about one iteration's trials
        .debugging(seed=config.seed)
    )


class RLlibRL2Agent:
    """RLlib's PPO with an LSTM on bandit trials, behind metarl's ``Agent`` protocol."""

    headline = "mean_return"

    def __init__(self, config: Config) -> None:
        self.config = config
        init_ray()
        register_envs()
        self.algo = ppo_config(config).build_algo()

    def train_iteration(self, iteration: int) -> dict[str, float]:
        """One ``algo.train()``: sample ``ppo.train_batch_size`` steps, then PPO's epochs."""
        result = self.algo.train()
        runners = result["env_runners"]
        learner = result["learners"].get("default_policy", {})
        stats = {
            key: float(learner[name])
            for key, name in (
                ("policy_loss", "policy_loss"),
                ("value_loss", "vf_loss"),
                ("entropy", "entropy"),
                ("loss", "total_loss"),
            )
            if name in learner
        }
        return {
            "mean_return": float(runners.get("episode_return_mean", np.nan)),
            "env_steps": float(runners["num_env_steps_sampled"]),
            **stats,
        }

    def module(self) -> Any:
        """The trained RLModule (the inference copy the sampler acts with)."""
        return self.algo.get_module()

    def evaluate(self, episodes: int) -> dict[str, Any]:
        """Cumulative reward of the RLModule and every baseline on ``rl2-bandit``'s held-out
        tasks."""
        from metarl.eval.bandit_baselines import bandit_trials, run_baseline
        from metarl.eval.bandits import bandit_report

        cfg, env = self.config, self.config.env
        seed = np.random.SeedSequence(cfg.eval.seed)
        tasks, uniforms, players = bandit_trials(seed, episodes, env.num_arms, env.horizon)
        policy = RLModuleBanditPolicy(self.module(), cfg.eval.deterministic)
        rewards = run_baseline(policy, tasks, uniforms, players)
        return bandit_report(rewards, tasks, uniforms, players)

    def state_dict(self) -> dict[str, Any]:
        """The learner's state (RLModule weights and optimizer state) and RLlib's iteration
        count, from ``algo.get_state``; ``torch.save`` pickles it."""
        from ray.rllib.core import COMPONENT_LEARNER_GROUP
        from ray.tune.result import TRAINING_ITERATION

        state = self.algo.get_state(components=[COMPONENT_LEARNER_GROUP])
        return {key: state[key] for key in (COMPONENT_LEARNER_GROUP, TRAINING_ITERATION)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore :meth:`state_dict`'s state; the env runners get the weights too."""
        self.algo.set_state(state)

    def close(self) -> None:
        self.algo.stop()


class RLModuleBanditPolicy:
    """An RLlib RLModule over RL² inputs as a batched bandit policy
    (:class:`metarl.eval.bandit_baselines.BanditPolicy`): ``forward_inference`` one pull at
    a time, carrying the LSTM state across the trial.

    Args:
        module: the RLModule of :func:`ppo_config`'s algorithm.
        deterministic: pull the most likely arm instead of sampling."""

    name = "rllib-rl2"

    def __init__(self, module: Any, deterministic: bool = False) -> None:
        self.module = module
        self.deterministic = deterministic

    def reset(self, num_tasks: int, num_arms: int, horizon: int, rng: np.random.Generator) -> None:
        self.num_arms, self.rng = num_arms, rng
        self.prev_actions = np.full(num_tasks, -1)
        self.prev_rewards = np.zeros(num_tasks)
        self.state = {
            key: torch.as_tensor(value).expand(num_tasks, *np.shape(value)).clone()
            for key, value in self.module.get_initial_state().items()
        }

    def inputs(self) -> np.ndarray:
        """The RL² inputs of the next pull (num_tasks, D), as the ``metarl-bandit`` env
        observes them."""
        obs = np.zeros((len(self.prev_actions), 1), dtype=np.float32)
        prev_dones = self.prev_actions >= 0  # every pull ends a bandit "episode"
        return rl2_inputs(obs, self.prev_actions, self.prev_rewards, prev_dones, self.num_arms)

    def act(self) -> np.ndarray:
        from ray.rllib.core.columns import Columns

        inputs = torch.as_tensor(self.inputs())[:, None]  # a time axis of one step
        batch = {Columns.OBS: inputs, Columns.STATE_IN: self.state}
        with torch.no_grad():
            out = self.module.forward_inference(batch)
        self.state = out[Columns.STATE_OUT]
        logits = out[Columns.ACTION_DIST_INPUTS][:, 0].double().numpy()
        if self.deterministic:
            return logits.argmax(axis=1)
        gumbel = -np.log(-np.log(self.rng.random(logits.shape)))  # Gumbel-max sampling
        return (logits + gumbel).argmax(axis=1)

    def observe(self, actions: np.ndarray, rewards: np.ndarray) -> None:
        self.prev_actions, self.prev_rewards = np.asarray(actions), np.asarray(rewards)


def build(config: Config) -> RLlibRL2Agent:
    return RLlibRL2Agent(config)
