"""Evaluation on held-out random tabular MDPs: the agent and every baseline play the same
tasks with the same noise tape (common random numbers), so each comparison is paired per task.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from metarl.eval.mdp_baselines import BASELINES, MDPPolicy, OraclePolicy, run_baseline
from metarl.eval.paired import gains, versus_baselines


def mdp_report(
    agent_returns: np.ndarray,
    tasks: np.ndarray,
    tape: np.ndarray,
    seed: int,
    num_states: int,
    num_actions: int,
    episode_length: int,
) -> dict[str, Any]:
    """``eval.json``'s fields for the agent's return of each episode (tasks, episodes) of
    its trials on ``tasks`` with their noise ``tape``
    (:func:`metarl.eval.mdp_baselines.mdp_trials`), with every baseline and the oracle played
    on the same trials (player j's own randomness seeded by ``[seed, j]``).

    The value is the return per trial (the sum over its episodes); the curve is the mean
    return of each episode of the trial; ``paired`` holds, per baseline, the per-task
    difference of trial returns, agent minus baseline (:func:`metarl.eval.paired.paired`);
    ``gains`` each later episode's per-task gain over the first, for the agent;
    ``fraction_of_oracle`` the agent's value over the oracle's."""
    x = list(range(1, agent_returns.shape[1] + 1))
    curve: dict[str, list] = {"x": x, "agent": agent_returns.mean(axis=0).round(4).tolist()}
    players: dict[str, MDPPolicy] = {name: make() for name, make in BASELINES.items()}
    players["oracle"] = OraclePolicy(tasks)
    totals, settings = {}, {}
    for j, (name, policy) in enumerate(players.items(), start=1):
        player_seed = np.random.SeedSequence([seed, j])
        returns = run_baseline(
            policy, tasks, tape, player_seed, num_states, num_actions, episode_length
        )
        totals[name] = returns.sum(axis=1)
        curve[name] = returns.mean(axis=0).round(4).tolist()
        if policy.settings():
            settings[name] = policy.settings()
    compared = versus_baselines(
        agent_returns.sum(axis=1), totals, higher_is_better=True, tasks=(tasks, tape)
    )
    return {
        "metric": "return",
        "higher_is_better": True,
        **compared,
        "episodes": len(tasks),
        "curve_of": "episode",
        "baseline_settings": settings,
        "gains": gains(agent_returns, x[1:]),
        "curve": curve,
        "fraction_of_oracle": compared["value"] / compared["baselines"]["oracle"],
    }
