"""A sweep folder's trials, aggregated by configuration for ``metarl eval SWEEP``."""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Any

import numpy as np

from metarl.eval.stats import mean_ci95

SWEEP = "sweep.json"


def is_sweep(path: str | Path) -> bool:
    """Whether ``path`` is a sweep folder (it holds ``sweep.json``)."""
    return (Path(path) / SWEEP).is_file()


def aggregate(reports: list[tuple[dict[str, Any], dict[str, Any]]]) -> list[dict[str, Any]]:
    """Per configuration, from (trial, eval report) pairs: the value and the agent's curve,
    mean and 95% CI across seeds."""
    out = []
    ordered = sorted(reports, key=lambda pair: pair[0]["label"])
    for label, group in itertools.groupby(ordered, key=lambda pair: pair[0]["label"]):
        group = list(group)
        curves = np.array([report["curve"]["agent"] for _, report in group])
        value, ci95 = mean_ci95(np.array([report["value"] for _, report in group]))
        points = [mean_ci95(column) for column in curves.T]
        out.append(
            {
                "label": label,
                "overrides": group[0][0]["overrides"],
                "seeds": [trial["seed"] for trial, _ in group],
                "value": value,
                "ci95": ci95,
                "curve": {
                    "x": group[0][1]["curve"]["x"],
                    "mean": [m for m, _ in points],
                    "ci95": [c for _, c in points],
                },
            }
        )
    return out
