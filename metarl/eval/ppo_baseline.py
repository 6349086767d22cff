"""The "PPO from scratch" baseline of the meta-RL adaptation curves.

A meta-learned policy is scored on held-out tasks by its mean return after 0, 1, 2, ...
policy-gradient steps of ``steps_per_point`` environment steps each (Finn et al. 2017,
figures 4-5). The baseline spends the same environment steps on Stable-Baselines3's PPO
(Schulman et al. 2017), trained from a fresh initialisation on each task: its point j is the
mean return of the PPO policy after j × ``steps_per_point`` training steps, so both curves
share the x-axis "environment steps on the new task".
"""

from __future__ import annotations

import functools
import multiprocessing
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from typing import Any

import gymnasium as gym
import numpy as np
import torch
from stable_baselines3 import PPO
from stable_baselines3.common.evaluation import evaluate_policy
from stable_baselines3.common.monitor import Monitor
from stable_baselines3.common.vec_env import DummyVecEnv
from tqdm.auto import tqdm

from metarl.config import require_positive
from metarl.devices import torch_threads

MAX_ROLLOUT = 2048  # SB3's default n_steps: the longest PPO rollout chosen automatically
MIN_ROLLOUT = 256  # below this, an automatic rollout would make PPO's updates too noisy
MAX_MINIBATCH = 64  # SB3's default batch_size
MIN_MINIBATCH = 8  # below this, a truncated last minibatch is the lesser evil


def _largest_divisor_at_most(n: int, cap: int) -> int:
    """The largest divisor of ``n`` that is at most ``cap``."""
    return next(d for d in range(min(n, cap), 0, -1) if n % d == 0)


def _rollout_length(steps_per_point: int) -> int:
    """PPO's ``n_steps``: the longest rollout up to :data:`MAX_ROLLOUT` that divides
    ``steps_per_point``, so that every curve point ends on a whole number of rollouts."""
    n_steps = _largest_divisor_at_most(steps_per_point, MAX_ROLLOUT)
    if n_steps < min(steps_per_point, MIN_ROLLOUT):
        raise ValueError(
            f"steps_per_point={steps_per_point} has no divisor in [{MIN_ROLLOUT}, {MAX_ROLLOUT}]"
            " to use as PPO's n_steps; pass n_steps explicitly or choose a rounder number"
        )
    return n_steps


def _minibatch_size(n_steps: int) -> int:
    """PPO's ``batch_size``: the largest divisor of ``n_steps`` up to :data:`MAX_MINIBATCH`,
    so that no minibatch is truncated, unless that divisor is tiny (``n_steps`` prime)."""
    size = _largest_divisor_at_most(n_steps, MAX_MINIBATCH)
    return size if size >= min(n_steps, MIN_MINIBATCH) else MAX_MINIBATCH


def ppo_scratch_curve(
    make_env: Callable[[], gym.Env],
    tasks: Sequence[Any],
    steps_per_point: int,
    points: int,
    eval_episodes: int,
    seed: int,
    progress: bool = False,
    workers: int = 1,
    **ppo_kwargs: Any,
) -> np.ndarray:
    """Mean returns of PPO trained from scratch on each task, shape (len(tasks), points + 1).

    Row i is task ``tasks[i]``; column j is the mean undiscounted return over
    ``eval_episodes`` episodes (stochastic actions) of the PPO policy after
    j × ``steps_per_point`` training steps, column 0 being the untrained policy.

    Args:
        make_env: builds a fresh single environment exposing ``set_task(task)``; called twice
            per task, for the training and the evaluation environment.
        tasks: the held-out tasks, each passed to ``set_task`` (a goal, a velocity, ...).
        steps_per_point: environment steps of training between two curve points (the
            meta-learner's samples per adaptation step, e.g. 20 episodes × 200 steps).
        points: curve points after the untrained one (the meta-learner's adaptation steps).
        eval_episodes: episodes per evaluation, on a separate environment of the same task.
        seed: task i seeds PPO (initialisation, action noise, training environment) with
            ``seed + i``, and the evaluation environment too, reseeded before every point so
            that all points of a task are scored from the same initial states.
        progress: show a progress bar over tasks.
        workers: processes training tasks at once (spawned; ``make_env`` and the tasks must
            pickle). Each row depends on its task and seed alone, so not on this.
        **ppo_kwargs: passed to :class:`stable_baselines3.PPO`, overriding its defaults and
            these: ``n_steps`` (environment steps per rollout) the largest divisor of
            ``steps_per_point`` up to 2048, so each point is a whole number of rollouts (it
            must divide ``steps_per_point`` if given); ``batch_size`` (transitions per
            minibatch) the largest divisor of ``n_steps`` up to 64 (64 if that divisor is
            below 8); ``device="cpu"``; ``verbose=0``. SB3's other defaults stand (learning
            rate 3e-4, 10 epochs, γ = 0.99, λ = 0.95, clip 0.2, a 64-64 tanh MLP, initial
            action std 1): untuned PPO, as a user would first run it. A learning-rate
            schedule restarts its progress at every point, as training runs in one ``learn``
            call per point.

    Torch runs on one thread during the call (tiny MLPs are slower with intra-op threads);
    the previous setting is restored afterwards.
    """
    for name, value in (
        ("steps_per_point", steps_per_point),
        ("points", points),
        ("eval_episodes", eval_episodes),
        ("workers", workers),
    ):
        require_positive("ppo_scratch_curve", name, value)
    if isinstance(seed, bool) or not isinstance(seed, int | np.integer):
        raise ValueError(f"seed must be an integer, got {seed!r}")
    if len(tasks) == 0:
        raise ValueError("tasks must be a non-empty sequence of tasks")
    for reserved in ("env", "policy"):
        if reserved in ppo_kwargs:
            raise ValueError(f"ppo_kwargs cannot set {reserved!r}: ppo_scratch_curve sets it")
    n_steps = ppo_kwargs.pop("n_steps", None)
    if n_steps is None:
        n_steps = _rollout_length(steps_per_point)
    require_positive("ppo_scratch_curve", "n_steps", n_steps)
    if steps_per_point % n_steps:
        raise ValueError(f"n_steps={n_steps} must divide steps_per_point={steps_per_point}")
    options = {
        "n_steps": n_steps,
        "batch_size": _minibatch_size(n_steps),
        "device": "cpu",
        "verbose": 0,
        **ppo_kwargs,
    }

    run = functools.partial(
        _task_curve,
        make_env,
        steps_per_point=steps_per_point,
        points=points,
        eval_episodes=eval_episodes,
        options=options,
    )
    jobs = [(task, seed + i) for i, task in enumerate(tasks)]
    bar = tqdm(total=len(tasks), desc="PPO from scratch", disable=not progress)
    rows = []
    if workers == 1:
        with torch_threads(1):
            for job in jobs:
                rows.append(run(*job))
                bar.update()
    else:  # spawned: a fork would copy the caller's threads (Ray's, torch's) half-alive
        context = multiprocessing.get_context("spawn")
        with ProcessPoolExecutor(min(workers, len(jobs)), mp_context=context) as pool:
            futures = [pool.submit(run, *job) for job in jobs]
            for _ in as_completed(futures):
                bar.update()
            rows = [future.result() for future in futures]
    bar.close()
    return np.stack(rows)


def _task_curve(
    make_env: Callable[[], gym.Env],
    task: Any,
    seed: int,
    *,
    steps_per_point: int,
    points: int,
    eval_episodes: int,
    options: dict[str, Any],
) -> np.ndarray:
    """One row of :func:`ppo_scratch_curve`: PPO seeded by ``seed`` on ``task``."""

    def task_env() -> gym.Env:
        env = make_env()
        env.get_wrapper_attr("set_task")(task)
        return env

    torch.set_num_threads(1)  # a worker process's own; the caller's is kept by torch_threads
    model = PPO("MlpPolicy", task_env(), seed=seed, **options)
    eval_env = DummyVecEnv([lambda: Monitor(task_env())])
    row = np.empty(points + 1)
    for j in range(points + 1):
        if j > 0:
            model.learn(steps_per_point, reset_num_timesteps=False)
        if model.num_timesteps != j * steps_per_point:
            raise RuntimeError(
                f"PPO took {model.num_timesteps} training steps for point {j},"
                f" expected {j * steps_per_point}"
            )
        eval_env.seed(seed)  # the same initial states at every point
        returns, _ = evaluate_policy(
            model, eval_env, n_eval_episodes=eval_episodes, deterministic=False
        )
        row[j] = returns
    model.get_env().close()
    eval_env.close()
    return row
