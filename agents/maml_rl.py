"""``maml-rl``: an MLP policy meta-trained to adapt by policy-gradient steps (Finn et al.
2017, section 5.2-5.3): Gaussian on 2-D navigation, MuJoCo locomotion and Meta-World tasks
(Yu et al. 2019), categorical on random tabular MDPs (Duan et al. 2016, section 4.2).

Each iteration draws ``meta_batch`` tasks. For each, rollout workers sample
``episodes_per_task`` episodes with θ, the learner takes an inner step, the workers sample
again with the task's adapted parameters, and so on for ``learner.inner_steps`` steps; the
meta-update (MAML-TRPO, its first-order variant, or Reptile's) then uses the last episodes.
``learner.algorithm: pretrain`` trains the multi-task baseline with the same machinery.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import importlib.util
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from gymnasium import spaces
from tqdm.auto import tqdm

from envs import METAWORLD_BENCHMARKS, TASK_FAMILIES, make_task_env, make_task_vector_env
from metarl import runs
from metarl.config import EvalConfig as BaseEvalConfig
from metarl.config import SamplerConfig, TrainConfig, require, require_positive_ints
from metarl.devices import on_cpu, usable_cpus
from metarl.errors import ConfigError, UsageError
from metarl.eval.paired import gains, paired, per_task, task_fingerprint
from metarl.eval.stats import mean_ci95
from metarl.learners.maml import Params
from metarl.learners.meta_pg import (
    ALGORITHMS,
    MetaPolicyGradient,
    TaskEpisodes,
    split_tasks,
    task_episodes,
)
from metarl.learners.trpo import TRPOConfig
from metarl.policies import ACTIVATIONS, CategoricalMLPPolicy, GaussianMLPPolicy
from metarl.rollout import EpisodeWorker, Sampler, TaskShard, make_sampler


@dataclasses.dataclass
class TaskConfig:
    """Attributes:
    family: Navigation2D, HalfCheetahVel, HalfCheetahDir, AntVel, AntDir, TabularMDP, or
        the Meta-World benchmarks ML1, ML10 and ML45 (the ``metaworld`` extra).
    task: ML1's task (``reach``, ``push``, ``pick-place``, ...); unused otherwise.
    horizon: steps per episode (100 for navigation, 200 for locomotion in the paper, 10
        for tabular MDPs as Duan et al.'s, 500 for Meta-World).
    meta_batch: tasks per meta-update.
    episodes_per_task: episodes sampled per task and inner step (K in the paper)."""

    family: str = "Navigation2D"
    task: str = ""
    horizon: int = 100
    meta_batch: int = 20
    episodes_per_task: int = 20

    def __post_init__(self) -> None:
        require(
            self.family in TASK_FAMILIES,
            "env.family",
            self.family,
            " or ".join(TASK_FAMILIES),
        )
        require_positive_ints(self, "env", ("horizon", "meta_batch", "episodes_per_task"))
        if self.family == "ML1":
            require(bool(self.task), "env.task", self.task, "an ML1 task such as reach or push")
            if importlib.util.find_spec("metaworld") is not None:  # else: building says so
                from envs.metaworld import ml1_name

                try:
                    ml1_name(self.task)
                except ValueError as err:
                    raise ConfigError(f"config key 'env.task': {err}") from None

    @property
    def success_flag(self) -> bool:
        """Whether the family's environments report ``info["success"]`` (Meta-World)."""
        return self.family in METAWORLD_BENCHMARKS


@dataclasses.dataclass
class PolicyConfig:
    """Attributes:
    hidden: hidden layer widths of the MLP policy (Gaussian for continuous actions,
        categorical for discrete ones).
    init_std: initial action standard deviation (actions range over [-1, 1]); unused by a
        categorical policy.
    activation: the hidden layers' nonlinearity: relu (the paper's) or tanh (this
        project's before issue 16, the default of run folders that do not name one)."""

    hidden: list[int] = dataclasses.field(default_factory=lambda: [100, 100])
    init_std: float = 1.0
    activation: str = "tanh"

    def __post_init__(self) -> None:
        require(all(h >= 1 for h in self.hidden), "policy.hidden", self.hidden, "widths >= 1")
        require(self.init_std > 0, "policy.init_std", self.init_std, "a positive number")
        require(
            self.activation in ACTIVATIONS, "policy.activation", self.activation, "relu or tanh"
        )


@dataclasses.dataclass
class LearnerConfig:
    """Attributes:
    algorithm: maml (second-order MAML-TRPO), fomaml, reptile (Reptile-PG) or pretrain
        (multi-task TRPO, the pre-trained baseline).
    inner_lr: α, the inner policy-gradient step size.
    inner_steps: inner steps per task.
    outer_lr: Reptile's β.
    gamma: discount factor.
    gae_lambda: GAE's λ for the advantages (1: Monte-Carlo returns minus the baseline)."""

    algorithm: str = "maml"
    inner_lr: float = 0.1
    inner_steps: int = 1
    outer_lr: float = 1.0
    gamma: float = 0.99
    gae_lambda: float = 1.0

    def __post_init__(self) -> None:
        require(self.algorithm in ALGORITHMS, "learner.algorithm", self.algorithm, str(ALGORITHMS))
        require(self.inner_lr > 0, "learner.inner_lr", self.inner_lr, "a positive number")
        require_positive_ints(self, "learner", ("inner_steps",))
        require(self.outer_lr > 0, "learner.outer_lr", self.outer_lr, "a positive number")
        require(0 < self.gamma <= 1, "learner.gamma", self.gamma, "a number in (0, 1]")
        require(0 <= self.gae_lambda <= 1, "learner.gae_lambda", self.gae_lambda, "in [0, 1]")


@dataclasses.dataclass
class EvalConfig(BaseEvalConfig):
    """:class:`metarl.config.EvalConfig` (``episodes``: 40 held-out tasks by default) and:

    Attributes:
    steps: gradient steps of the adaptation curve (0 .. steps).
    inner_lr: α of each evaluation step, the last repeated for later steps; empty: the
        training's ``learner.inner_lr``.
    pretrained_run: a run folder of this experiment with ``learner.algorithm: pretrain``
        giving the fine-tuned baseline; empty: this run's own.
    pretrain_in_train: train this run's baseline during ``train``, after every meta-update
        until it has taken as many environment steps (false: all of it at evaluation).
    pretrain_iterations: multi-task TRPO iterations of the pre-trained baseline; 0: as many
        as take the environment steps the meta-learner trained with (an equal budget).
    ppo_tasks: held-out tasks (the first ones) on which PPO trains from scratch (0 for
        Meta-World: its curve is of returns, not of success).
    scored_episodes: how many of the episodes sampled per task and step the curve scores,
        the first ones (all are used to adapt); 0: all ``env.episodes_per_task``.
        Meta-World's protocol scores 3.
    workers: parallelism of ``metarl eval``: Ray rollout actors when the run samples
        in-process (``sampler.backend: local``), and processes training PPO on the tasks;
        0: one per CPU of this machine; 1: in-process. The curves do not depend on it (each
        shard and each PPO task has its own seed)."""

    episodes: int = 40
    steps: int = 3
    inner_lr: list[float] = dataclasses.field(default_factory=list)
    pretrained_run: str = ""
    pretrain_in_train: bool = True
    pretrain_iterations: int = 0
    ppo_tasks: int = 5
    scored_episodes: int = 0
    workers: int = 0

    def __post_init__(self) -> None:
        super().__post_init__()
        require_positive_ints(self, "eval", ("steps",))
        require(self.workers >= 0, "eval.workers", self.workers, "an integer >= 0")
        require(
            all(rate > 0 for rate in self.inner_lr),
            "eval.inner_lr",
            self.inner_lr,
            "positive step sizes",
        )
        require(
            self.pretrain_iterations >= 0,
            "eval.pretrain_iterations",
            self.pretrain_iterations,
            "an integer >= 0",
        )
        require(self.ppo_tasks >= 0, "eval.ppo_tasks", self.ppo_tasks, "an integer >= 0")
        require(
            self.scored_episodes >= 0,
            "eval.scored_episodes",
            self.scored_episodes,
            "an integer >= 0",
        )


@dataclasses.dataclass
class Config:
    """A ``maml-rl`` experiment.

    Attributes:
        name: experiment name.
        agent: ``maml-rl``.
        seed: seeds the weights and every iteration's tasks and episodes.
    """

    name: str
    agent: str
    seed: int = 0
    env: TaskConfig = dataclasses.field(default_factory=TaskConfig)
    policy: PolicyConfig = dataclasses.field(default_factory=PolicyConfig)
    learner: LearnerConfig = dataclasses.field(default_factory=LearnerConfig)
    trpo: TRPOConfig = dataclasses.field(default_factory=TRPOConfig)
    sampler: SamplerConfig = dataclasses.field(default_factory=SamplerConfig)
    train: TrainConfig = dataclasses.field(default_factory=TrainConfig)
    eval: EvalConfig = dataclasses.field(default_factory=EvalConfig)

    def __post_init__(self) -> None:
        require(
            not (self.env.success_flag and self.eval.ppo_tasks),
            "eval.ppo_tasks",
            self.eval.ppo_tasks,
            "0 on Meta-World (PPO from scratch measures return, the runs success rate)",
        )
        require(
            self.eval.scored_episodes <= self.env.episodes_per_task,
            "eval.scored_episodes",
            self.eval.scored_episodes,
            f"at most env.episodes_per_task ({self.env.episodes_per_task})",
        )


def build_policy(config: Config) -> GaussianMLPPolicy | CategoricalMLPPolicy:
    """The policy of the family's action space: categorical for ``Discrete``, else Gaussian."""
    env = make_task_env(config.env.family, config.env.horizon, config.env.task)
    obs_size = int(np.prod(env.observation_space.shape))
    space = env.action_space
    env.close()
    policy = config.policy
    if isinstance(space, spaces.Discrete):
        return CategoricalMLPPolicy(obs_size, int(space.n), policy.hidden, policy.activation)
    return GaussianMLPPolicy(
        obs_size, int(np.prod(space.shape)), policy.hidden, policy.init_std, policy.activation
    )


class MetaPGAgent:
    """Samples a meta-batch's episodes on rollout workers, adapts each task, meta-updates.

    Beside a meta-learner it keeps the multi-task pre-trained baseline of its evaluation
    (``eval.pretrain_in_train``), trained on the same sampler after every meta-update until
    it has taken as many environment steps, so that ``metarl eval`` compares at equal
    budgets without repeating the training's sampling.

    Args:
        config: the experiment.
        sampler: rollout workers to share (the baseline's); ``None``: start this agent's own.
    """

    headline = "mean_return"

    def __init__(self, config: Config, sampler: Sampler | None = None) -> None:
        self.config = config
        self.device = config.train.torch_device
        torch.manual_seed(config.seed)
        self.policy = build_policy(config).to(self.device)  # workers act on CPU copies
        learner = config.learner
        self.learner = MetaPolicyGradient(
            self.policy,
            learner.algorithm,
            learner.inner_lr,
            learner.inner_steps,
            config.trpo,
            learner.outer_lr,
        )
        env = config.env
        self.headline = "success_rate" if env.success_flag else "mean_return"
        self.make_env = functools.partial(make_task_env, env.family, env.horizon, env.task)
        self.task_env = self.make_env().unwrapped
        self.worker_kwargs = {
            "make_envs": functools.partial(
                make_task_vector_env, env.family, env.horizon, task=env.task
            ),
            "make_policy": functools.partial(build_policy, config),
            "episodes": config.env.episodes_per_task,
            "horizon": config.env.horizon,
            "device": config.sampler.device,
        }
        self.owns_sampler = sampler is None
        self.sampler = sampler or make_sampler(config.sampler, self.worker_kwargs, EpisodeWorker)
        self.env_steps: int | None = 0
        """Environment steps of training so far (``None``: a checkpoint that did not count)."""
        self.baseline: MetaPGAgent | None = None
        """The pre-trained baseline kept beside this meta-learner, once it exists."""
        if self.learner.steps_in_training and config.eval.pretrain_in_train:
            self.baseline = self.new_baseline()
        self.baseline_iterations = 0
        self.baseline_return = float("nan")

    def new_baseline(self) -> MetaPGAgent:
        """A fresh multi-task pre-training of this experiment on this agent's sampler,
        initialised as a ``learner.algorithm=pretrain`` run of the same seed is."""
        learner = dataclasses.replace(self.config.learner, algorithm="pretrain")
        with torch.random.fork_rng(devices=[]):  # leaves the training's random stream alone
            return MetaPGAgent(dataclasses.replace(self.config, learner=learner), self.sampler)

    def pretrain_baseline(self, env_steps: int, progress: bool = False) -> None:
        """Train this run's baseline until it has taken ``env_steps`` environment steps."""
        if self.baseline is None:
            self.baseline = self.new_baseline()
        baseline = self.baseline
        done = min(baseline.env_steps or 0, env_steps)
        with tqdm(
            total=env_steps, initial=done, desc="pre-training", unit="step", disable=not progress
        ) as bar:
            while (baseline.env_steps or 0) < env_steps:
                metrics = baseline.train_iteration(self.baseline_iterations)
                self.baseline_iterations += 1
                self.baseline_return = metrics["mean_return"]
                bar.update(int(metrics["env_steps"]))

    def sample_tasks(self, seed: Any, count: int, held_out: bool = False) -> np.ndarray:
        """``count`` tasks of the distribution, drawn from ``seed`` alone; ``held_out``:
        from its test split where it has one (Meta-World's ``sample_held_out_tasks``)."""
        self.task_env.np_random = np.random.default_rng(seed)
        sample = getattr(self.task_env, "sample_held_out_tasks", None) if held_out else None
        return (sample or self.task_env.sample_tasks)(count)

    def rollouts(
        self,
        tasks: np.ndarray,
        theta: Params,
        steps: int,
        seed: list[int],
        rates: Sequence[float] | None = None,
        scored: int = 0,
    ) -> tuple[list[list[TaskEpisodes]], dict[str, np.ndarray], list[Params], int]:
        """Sample every task with θ, take an inner step on each task's episodes, sample
        again with the adapted parameters, and so on for ``steps`` steps, step j of size
        ``rates[j]`` (the last repeated; ``None``: the training's).

        Returns each sampling's episodes per task (``steps + 1`` lists), the mean
        ``return`` and ``success`` (the fraction of episodes whose success flag was set)
        per task and sampling (len(tasks), steps + 1) over the first ``scored`` episodes
        (0: all), each task's final parameters, and the environment steps taken. Sampling
        ``j`` is seeded by ``(*seed, j)``."""
        rates = rates or self.learner.maml.rates
        params = [theta] * len(tasks)
        bounds = np.linspace(0, len(tasks), self.config.sampler.shards + 1).astype(int)
        learner = self.config.learner
        episodes, returns, success, env_steps = [], [], [], 0
        scored = scored or None
        for step in range(steps + 1):
            sequence = np.random.SeedSequence([*seed, step])
            shard_seeds = [int(s) for s in sequence.generate_state(self.config.sampler.shards)]
            shards = [
                TaskShard(shard_seed, tasks[lo:hi], [on_cpu(p) for p in params[lo:hi]])
                for shard_seed, lo, hi in zip(shard_seeds, bounds[:-1], bounds[1:], strict=True)
                if hi > lo
            ]
            batches = split_tasks(self.sampler.sample(None, shards))
            episodes.append(
                [task_episodes(b, learner.gamma, learner.gae_lambda, self.device) for b in batches]
            )
            returns.append([b["returns"][:scored].mean() for b in batches])
            success.append([b["success"][:scored].mean() for b in batches])
            env_steps += int(sum(b["mask"].sum() for b in batches))
            if step < steps:
                rate = rates[min(step, len(rates) - 1)]
                pairs = zip(params, episodes[-1], strict=True)
                params = [self.learner.step(p, e, rate) for p, e in pairs]
        scores = {"return": np.array(returns).T, "success": np.array(success).T}
        return episodes, scores, params, env_steps

    def train_iteration(self, iteration: int) -> dict[str, float]:
        cfg = self.config
        tasks = self.sample_tasks([cfg.seed, iteration], cfg.env.meta_batch)
        # a copy: the update moves θ in place, and θ as sampled is the old policy of TRPO
        theta = {k: v.detach().clone() for k, v in self.policy.named_parameters()}
        steps = self.learner.steps_in_training
        episodes, scores, adapted, env_steps = self.rollouts(
            tasks, theta, steps, [cfg.seed, iteration]
        )
        if self.env_steps is not None:
            self.env_steps += env_steps
        inner = [[episodes[j][i] for j in range(steps)] for i in range(len(tasks))]
        stats = self.learner.update(inner, episodes[steps], adapted)
        by_step = scores["return"].mean(0)
        metrics = {
            "mean_return": float(by_step[-1]),
            "pre_return": float(by_step[0]),
            "env_steps": float(env_steps),
            **{f"return_step{j}": float(r) for j, r in enumerate(by_step)},
        }
        if cfg.env.success_flag:
            solved = scores["success"].mean(0)
            metrics |= {"success_rate": float(solved[-1]), "pre_success_rate": float(solved[0])}
        if stats:  # a TRPO step (Reptile's update reports nothing)
            metrics |= {"loss": stats["loss_after"], "kl": stats["kl"]}
            metrics["line_search_steps"] = stats["line_search_steps"]
        if steps and cfg.eval.pretrain_in_train and self.env_steps is not None:
            began = time.perf_counter()
            self.pretrain_baseline(self.env_steps)
            metrics["pretrained_return"] = self.baseline_return
            metrics["pretrain_seconds"] = time.perf_counter() - began
        return metrics

    def adaptation_curve(
        self, policy_state: dict[str, torch.Tensor], tasks: np.ndarray, steps: int
    ) -> dict[str, np.ndarray]:
        """Mean return and success rate per task (len(tasks), steps + 1) before and after
        each inner policy-gradient step from the parameters ``policy_state`` (step sizes
        ``eval.inner_lr``), sampling ``episodes_per_task`` episodes per step as in training
        and scoring the first ``eval.scored_episodes``."""
        # the policy has no buffers; a checkpoint's state may come from another device
        theta = {k: v.detach().to(self.device) for k, v in policy_state.items()}
        ev = self.config.eval
        return self.rollouts(tasks, theta, steps, [ev.seed], ev.inner_lr, ev.scored_episodes)[1]

    def pretrained_state(self) -> tuple[dict[str, torch.Tensor], int]:
        """The multi-task pre-trained policy and the environment steps it trained with: from
        ``eval.pretrained_run``, or trained for ``eval.pretrain_iterations``, by default (0)
        this run's own, trained (on) until it has taken as many environment steps as this
        meta-learner."""
        cfg = self.config
        if cfg.eval.pretrained_run:
            path = Path(cfg.eval.pretrained_run)
            trained = runs.read_run_config(path)
            if trained.get("learner", {}).get("algorithm") != "pretrain":
                raise UsageError(f"eval.pretrained_run {path} is not a 'pretrain' run")
            checkpoint = runs.load_checkpoint(path)
            return checkpoint["agent"]["policy"], int(checkpoint["env_steps"])
        if iterations := cfg.eval.pretrain_iterations:
            baseline = self.new_baseline()
            for iteration in tqdm(range(iterations), desc="pre-training", unit="it"):
                baseline.train_iteration(iteration)
            return baseline.policy.state_dict(), int(baseline.env_steps or 0)
        if self.env_steps is None:
            raise UsageError(
                "this run's checkpoint does not record its environment steps, so the "
                "pre-trained baseline cannot match them: set eval.pretrain_iterations=N"
            )
        self.pretrain_baseline(self.env_steps, progress=True)
        assert self.baseline is not None
        return self.baseline.policy.state_dict(), int(self.baseline.env_steps or 0)

    @property
    def eval_workers(self) -> int:
        """``eval.workers``, 0 resolved to this machine's CPUs."""
        return self.config.eval.workers or usable_cpus()

    @contextlib.contextmanager
    def evaluation_sampler(self) -> Iterator[None]:
        """This agent and its baseline sample on ``eval.workers`` Ray actors inside the
        block, when the run samples in-process and more than one is asked for."""
        workers = self.eval_workers
        if self.config.sampler.backend != "local" or workers == 1:
            yield
            return
        ray_sampler = dataclasses.replace(self.config.sampler, backend="ray", workers=workers)
        kept, self.sampler = (
            self.sampler,
            make_sampler(ray_sampler, self.worker_kwargs, EpisodeWorker),
        )
        try:
            if self.baseline is not None:  # the baseline shares its sampler
                self.baseline.sampler = self.sampler
            yield
        finally:
            self.sampler.close()
            self.sampler = kept
            if self.baseline is not None:  # perhaps made inside the block
                self.baseline.sampler = kept

    def evaluate(self, episodes: int) -> dict[str, Any]:
        """Return (success rate on Meta-World) after 0..``eval.steps`` gradient steps on
        held-out tasks, for the agent, the fine-tuned pre-trained policy and PPO from
        scratch with as many env steps; per baseline the paired per-task difference at step
        k (``value_after_steps``), and the agent's per-task gain of each step over step 0.
        A Meta-World report also holds the return curves (``return_curve``)."""
        from metarl.eval.ppo_baseline import ppo_scratch_curve

        cfg = self.config
        tasks = self.sample_tasks([cfg.eval.seed], episodes, held_out=True)
        steps = cfg.eval.steps
        with self.evaluation_sampler():
            pretrained, pretrained_env_steps = self.pretrained_state()
            scores = {
                "agent": self.adaptation_curve(self.policy.state_dict(), tasks, steps),
                "pretrained_finetuned": self.adaptation_curve(pretrained, tasks, steps),
            }
        measure = "success" if cfg.env.success_flag else "return"
        curves = {name: score[measure] for name, score in scores.items()}
        if cfg.eval.ppo_tasks:
            curves["ppo_scratch"] = ppo_scratch_curve(
                self.make_env,
                list(tasks[: cfg.eval.ppo_tasks]),
                steps_per_point=cfg.env.episodes_per_task * cfg.env.horizon,
                points=steps,
                eval_episodes=cfg.env.episodes_per_task,
                seed=cfg.eval.seed,
                workers=self.eval_workers,
            )
        k = min(cfg.learner.inner_steps, steps)
        value, ci95 = mean_ci95(curves["agent"][:, k])
        measured = [("pre_adaptation", curves["agent"][:, 0])]
        measured += [(name, c[:, k]) for name, c in curves.items() if name != "agent"]
        baselines, baselines_ci, comparisons = {}, {}, {}
        for name, values in measured:
            baselines[name], baselines_ci[name] = mean_ci95(values)
            # PPO trains on the first ppo_tasks tasks only: paired on those
            agent = curves["agent"][: len(values), k]
            comparisons[name] = paired(agent, values, higher_is_better=True)
        report = {
            "metric": "success_rate" if cfg.env.success_flag else "return",
            "higher_is_better": True,
            "value": value,
            "ci95": ci95,
            "episodes": len(tasks),
            "baselines": baselines,
            "baselines_ci95": baselines_ci,
            "paired": comparisons,
            **per_task(curves["agent"][:, k], task_fingerprint(tasks)),
            "gains": gains(curves["agent"], list(range(1, steps + 1))),
            "env_steps": {"agent": self.env_steps, "pretrained": pretrained_env_steps},
            "curve": {"x": list(range(steps + 1))}
            | {name: c.mean(0).tolist() for name, c in curves.items()},
            "curve_of": "gradient_steps",
            "value_after_steps": k,
            "env_steps_per_step": cfg.env.episodes_per_task * cfg.env.horizon,
        }
        if cfg.env.success_flag:
            report["scored_episodes"] = cfg.eval.scored_episodes or cfg.env.episodes_per_task
            report["return_curve"] = {"x": list(range(steps + 1))} | {
                name: score["return"].mean(0).tolist() for name, score in scores.items()
            }
        return report

    def state_dict(self) -> dict[str, Any]:
        state = {"policy": self.policy.state_dict(), "env_steps": self.env_steps}
        if self.baseline is not None:
            state["baseline"] = self.baseline.state_dict() | {
                "iterations": self.baseline_iterations,
                "return": self.baseline_return,
            }
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.policy.load_state_dict(state["policy"])
        self.env_steps = state.get("env_steps")
        if "baseline" in state:
            self.baseline = self.baseline or self.new_baseline()
            self.baseline.load_state_dict(state["baseline"])
            self.baseline_iterations = state["baseline"]["iterations"]
            self.baseline_return = state["baseline"]["return"]

    def close(self) -> None:
        if self.baseline is not None:
            self.baseline.close()
        if self.owns_sampler:
            self.sampler.close()
        self.task_env.close()


def build(config: Config) -> MetaPGAgent:
    return MetaPGAgent(config)
