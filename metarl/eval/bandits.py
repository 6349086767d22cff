"""Evaluation on held-out bandit tasks: the agent and every baseline face the same tasks and
the same reward tape (common random numbers), so each comparison is paired per task."""

from __future__ import annotations

import numpy as np

from metarl.eval.bandit_baselines import BASELINES, run_baseline
from metarl.eval.paired import versus_baselines


def bandit_report(
    agent_rewards: np.ndarray, tasks: np.ndarray, uniforms: np.ndarray, seed: int
) -> dict:
    """``eval.json``'s fields for per-pull rewards (tasks, horizon) of the agent on ``tasks``
    and their reward tape ``uniforms`` (:func:`metarl.eval.bandit_baselines.bandit_trials`),
    with every baseline run on the same trials (its own randomness seeded by ``[seed, j]``):
    cumulative reward per trial, the per-pull curve, the constants each baseline played with,
    and per baseline the paired per-task difference agent minus baseline
    (:func:`metarl.eval.paired.paired`)."""
    horizon = agent_rewards.shape[1]
    curve: dict[str, list] = {
        "x": list(range(1, horizon + 1)),
        "agent": agent_rewards.mean(axis=0).round(5).tolist(),
    }
    totals, settings = {}, {}
    for j, (name, make) in enumerate(BASELINES.items(), start=1):
        policy = make()
        rewards = run_baseline(policy, tasks, uniforms, np.random.SeedSequence([seed, j]))
        totals[name] = rewards.sum(axis=1)
        curve[name] = rewards.mean(axis=0).round(5).tolist()
        if policy.settings():
            settings[name] = policy.settings()
    return {
        "metric": "cumulative_reward",
        "higher_is_better": True,
        **versus_baselines(
            agent_rewards.sum(axis=1), totals, higher_is_better=True, tasks=(tasks, uniforms)
        ),
        "episodes": len(tasks),
        "baseline_settings": settings,
        "curve": curve,
    }
