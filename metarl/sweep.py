"""``metarl sweep``: a grid of configurations × seeds, run as parallel Ray Tune trials.

Each trial is an ordinary run (its own folder, ``metarl train`` semantics) inside
``SWEEP/LABEL-seedK``; ``sweep.json`` lists them, so ``metarl eval SWEEP`` can evaluate every
trial and aggregate the adaptation curves by configuration (mean and 95% CI across seeds).
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from metarl import runs
from metarl.config import is_positive_int
from metarl.errors import UsageError
from metarl.eval.stats import mean_ci95
from metarl.eval.sweeps import SWEEP


def parse_grid(assignments: Sequence[str]) -> dict[str, list[Any]]:
    """``["ppo.lr=1e-3,3e-3", "seed_offset=0"]`` -> ``{"ppo.lr": [0.001, 0.003], ...}``: each
    comma-separated value is read as YAML; a key without commas is a fixed override."""
    grid: dict[str, list[Any]] = {}
    for assignment in assignments:
        key, sep, values = assignment.partition("=")
        if not sep or not key.strip() or not values.strip():
            raise UsageError(f"--set {assignment!r}: expected KEY=V1,V2,...")
        if key in grid:
            raise UsageError(f"--set {key}: given twice; list all its values in one --set")
        grid[key.strip()] = [yaml.safe_load(v) for v in values.split(",")]
    return grid


def trial_grid(grid: dict[str, list[Any]], seeds: int, base_seed: int) -> list[dict[str, Any]]:
    """Every (configuration, seed) pair: its label, overrides, seed and folder name."""
    if not is_positive_int(seeds):
        raise UsageError(f"--seeds must be a positive integer, got {seeds}")
    trials = []
    for values in itertools.product(*grid.values()):
        overrides = dict(zip(grid, values, strict=True))
        swept = {k: v for k, v in overrides.items() if len(grid[k]) > 1}
        label = " ".join(f"{k}={v}" for k, v in swept.items()) or "default"
        for offset in range(seeds):
            folder = label.replace(" ", ",").replace("/", "_") + f"-seed{offset}"
            trials.append(
                {"label": label, "overrides": overrides, "seed": base_seed + offset, "dir": folder}
            )
    return trials


def trial_resources(config: Any) -> dict[str, float]:
    """What a trial asks Ray for: one CPU, and one GPU when its learner trains on CUDA (Ray
    then makes that GPU the trial's ``cuda:0``)."""
    cuda = config.train.torch_device.type == "cuda"
    return {"cpu": 1, "gpu": 1} if cuda else {"cpu": 1}


def _placement(params: dict[str, Any]) -> Any:
    """A trial's resources as Tune takes them from its parameters."""
    from ray import tune

    resources = params["trial"]["resources"]
    return tune.PlacementGroupFactory([{k.upper(): v for k, v in resources.items()}])


def _run_trial(trial: dict[str, Any]) -> dict[str, Any]:
    """A Tune trainable: one ordinary run into the trial's folder; returns its summary."""
    from metarl.trainer import train

    run = train(
        trial["experiment"],
        out=trial["path"],
        overrides=trial["overrides"],
        seed=trial["seed"],
        time_limit=trial["time_limit"],
        progress=False,
    )
    return run.summary


def sweep(
    experiment: str,
    assignments: Sequence[str],
    *,
    seeds: int = 1,
    out: str | Path | None = None,
    parallel: int | None = None,
    time_limit: float | None = None,
    ray_address: str = "",
    device: str | None = None,
) -> list[dict[str, Any]]:
    """Run the grid as Ray Tune trials, ``parallel`` at a time (default: one per CPU), and
    return one row per trial: label, seed, status, the final headline metric, wall time.
    ``device`` (``--device``) is every trial's ``train.device``; a trial on CUDA asks Ray
    for a GPU (:func:`trial_resources`)."""
    from ray import tune

    from metarl.experiment import build_config, resolve_config
    from metarl.rollout.samplers import init_ray

    config = resolve_config(build_config(experiment))  # fail now on a bad name
    grid = parse_grid(assignments)
    if device is not None:
        if "train.device" in grid:
            raise UsageError("--device and --set train.device: give only one")
        grid["train.device"] = [device]
    trials = trial_grid(grid, seeds, config.seed)
    for first in range(0, len(trials), seeds):  # every configuration resolves
        resources = trial_resources(
            resolve_config(build_config(experiment, trials[first]["overrides"]))
        )
        for trial in trials[first : first + seeds]:
            trial["resources"] = resources
    path = Path(out or runs.default_run_dir(f"{config.name}-sweep")).resolve()
    runs.check_new_run_dir(path)
    path.mkdir(parents=True)
    spec = experiment if not Path(experiment).is_file() else str(Path(experiment).resolve())
    for trial in trials:
        trial.update(experiment=spec, path=str(path / trial["dir"]), time_limit=time_limit)
    runs.write_json(path / SWEEP, {"experiment": config.name, "grid": grid, "trials": trials})
    init_ray(ray_address)
    tuner = tune.Tuner(
        tune.with_resources(lambda params: _run_trial(params["trial"]), _placement),
        param_space={"trial": tune.grid_search(trials)},
        tune_config=tune.TuneConfig(max_concurrent_trials=parallel),
        run_config=tune.RunConfig(storage_path=str(path / ".tune"), name="tune", verbose=0),
    )
    results = tuner.fit()
    rows = []
    for result in results:
        trial = result.config["trial"]
        summary = {} if result.error else result.metrics
        final = next((v for k, v in summary.items() if k.startswith("final_")), None)
        rows.append(
            {
                "label": trial["label"],
                "seed": trial["seed"],
                "status": summary.get("status", f"failed: {result.error}"),
                "final": final,
                "wall_time_s": summary.get("wall_time_s"),
            }
        )
    rows.sort(key=lambda r: (r["label"], r["seed"]))
    runs.write_json(path / "summary.json", {"experiment": config.name, "trials": rows})
    return rows


def summary_table(rows: list[dict[str, Any]]) -> str:
    """One line per configuration: seeds finished, the final headline metric (mean ± 95% CI
    across seeds) and the mean wall time."""
    lines = [f"{'configuration':40s} {'seeds':>5s} {'final (mean ± 95% CI)':>24s} {'wall s':>8s}"]
    for label, group in itertools.groupby(rows, key=lambda r: r["label"]):
        done = [r for r in group if r["final"] is not None]
        if not done:
            lines.append(f"{label:40s} {0:5d} {'failed':>24s}")
            continue
        mean, ci = mean_ci95(np.array([r["final"] for r in done]))
        wall = np.mean([r["wall_time_s"] for r in done])
        lines.append(f"{label:40s} {len(done):5d} {f'{mean:.4f} ± {ci:.4f}':>24s} {wall:8.1f}")
    return "\n".join(lines)
