"""Evaluation on held-out bandit tasks: the agent and every baseline face the same tasks."""

from __future__ import annotations

import numpy as np

from envs.bandits import BernoulliBanditVectorEnv
from metarl.eval.bandit_baselines import BASELINES, BanditPolicy
from metarl.eval.stats import mean_ci95


def run_baseline(policy: BanditPolicy, tasks: np.ndarray, horizon: int, seed: int) -> np.ndarray:
    """Rewards (tasks, horizon) of a baseline policy on fixed tasks, stepped through the env."""
    num_tasks, num_arms = tasks.shape
    env = BernoulliBanditVectorEnv(num_tasks, num_arms, horizon)
    env.reset(seed=seed, options={"tasks": tasks})
    # the policy's own stream: reusing ``seed`` would replay the env's reward draws
    policy.reset(num_tasks, num_arms, horizon, np.random.default_rng([seed, 1]))
    rewards = np.zeros((num_tasks, horizon))
    for t in range(horizon):
        actions = policy.act()
        _, rewards[:, t], *_ = env.step(actions)
        policy.observe(actions, rewards[:, t])
    return rewards


def bandit_report(agent_rewards: np.ndarray, tasks: np.ndarray, seed: int) -> dict:
    """``eval.json``'s fields for per-pull rewards (tasks, horizon) of the agent, with every
    baseline run on the same tasks: cumulative reward per trial and the per-pull curve."""
    horizon = agent_rewards.shape[1]
    value, ci95 = mean_ci95(agent_rewards.sum(axis=1))
    curve: dict[str, list] = {
        "x": list(range(1, horizon + 1)),
        "agent": agent_rewards.mean(axis=0).round(5).tolist(),
    }
    baselines, baselines_ci95 = {}, {}
    for name, make in BASELINES.items():
        rewards = run_baseline(make(), tasks, horizon, seed)
        baselines[name], baselines_ci95[name] = mean_ci95(rewards.sum(axis=1))
        curve[name] = rewards.mean(axis=0).round(5).tolist()
    return {
        "metric": "cumulative_reward",
        "higher_is_better": True,
        "value": value,
        "ci95": ci95,
        "episodes": len(tasks),
        "baselines": baselines,
        "baselines_ci95": baselines_ci95,
        "curve": curve,
    }
