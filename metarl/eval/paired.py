"""The paired comparisons of ``eval.json``: the agent against each baseline on the same
tasks, and an adaptation curve's gain over its first point, task by task.

Pairing removes the spread between tasks that two separate confidence intervals both carry;
a claim that the agent beats a baseline means that the paired interval excludes zero.
"""

from __future__ import annotations

import zlib
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from metarl.eval.stats import mean_ci95, paired_diff_ci


def paired(agent: np.ndarray, baseline: np.ndarray, higher_is_better: bool) -> dict[str, Any]:
    """Mean per-task difference ``agent - baseline`` (one value per task, the same tasks in
    the same order), its 95% half-width, the number of tasks, and the verdict: ``"better"``
    or ``"worse"`` when the interval excludes zero (on the side ``higher_is_better`` names),
    else ``"tie"``."""
    diff, half = paired_diff_ci(agent, baseline)
    sign = 1.0 if higher_is_better else -1.0
    verdict = "better" if sign * diff > half else "worse" if -sign * diff > half else "tie"
    return {"diff": diff, "ci95": half, "tasks": len(np.asarray(agent)), "verdict": verdict}


def gains(curve: np.ndarray, x: Sequence[Any]) -> dict[str, list]:
    """The gain of each later point of an adaptation curve over its first, task by task:
    for ``curve`` (tasks, points), the mean and 95% half-width of ``curve[:, j] - curve[:, 0]``
    for j >= 1; ``x`` labels those later points."""
    curve = np.asarray(curve, dtype=np.float64)
    if curve.ndim != 2 or curve.shape[1] != len(x) + 1:
        raise ValueError(
            f"curve must be (tasks, {len(x) + 1}) for {len(x)} later points, got {curve.shape}"
        )
    pairs = [paired_diff_ci(curve[:, j], curve[:, 0]) for j in range(1, curve.shape[1])]
    return {"x": list(x), "mean": [m for m, _ in pairs], "ci95": [h for _, h in pairs]}


def task_fingerprint(*arrays: np.ndarray, start: int = 0) -> int:
    """CRC-32 of the arrays' values in order, continuing from ``start``: equal for equal
    held-out tasks (and noise tapes), so that ``metarl compare`` pairs only evaluations made
    on the same ones."""
    for array in arrays:
        start = zlib.crc32(np.ascontiguousarray(array).tobytes(), start)
    return start


def per_task(scores: np.ndarray, fingerprint: int) -> dict[str, Any]:
    """``eval.json``'s fields that ``metarl compare`` pairs: the agent's score on each
    held-out task, in order, and the tasks' :func:`task_fingerprint`."""
    return {
        "scores": [round(float(s), 6) for s in np.asarray(scores)],
        "tasks_crc32": f"{fingerprint:08x}",
    }


def versus_baselines(
    agent: np.ndarray,
    baselines: Mapping[str, np.ndarray],
    higher_is_better: bool,
    tasks: Sequence[np.ndarray],
) -> dict[str, Any]:
    """``eval.json``'s comparison fields for one value per task of the agent and of each
    baseline on the same tasks: the agent's mean (``value``) and its 95% half-width
    (``ci95``), each baseline's (``baselines``, ``baselines_ci95``), per baseline the
    paired difference agent minus baseline (``paired``, :func:`paired`), and the agent's
    :func:`per_task` scores on ``tasks`` (the arrays that define them)."""
    value, ci95 = mean_ci95(agent)
    means, halves = {}, {}
    for name, values in baselines.items():
        means[name], halves[name] = mean_ci95(values)
    return {
        "value": value,
        "ci95": ci95,
        "baselines": means,
        "baselines_ci95": halves,
        "paired": {
            name: paired(agent, values, higher_is_better) for name, values in baselines.items()
        },
        **per_task(agent, task_fingerprint(*tasks)),
    }
