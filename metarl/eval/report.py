"""``metarl eval``: measure a run on held-out tasks, write ``eval.json`` and ``eval.png``."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from metarl import runs
from metarl.config import set_key
from metarl.errors import UsageError
from metarl.eval.paired import paired
from metarl.eval.plots import plot_report, plot_sweep
from metarl.eval.sweeps import SWEEP, aggregate, is_sweep
from metarl.experiment import (
    apply_fewshot_options,
    for_evaluation,
    resolve_config,
    thread_policy,
)
from metarl.registry import get_recipe


def evaluate_run(
    path: str | Path,
    episodes: int | None = None,
    *,
    ways: int | None = None,
    shots: int | None = None,
    data_dir: str | Path | None = None,
    overrides: Sequence[str] = (),
    device: str | None = None,
) -> dict[str, Any]:
    """Evaluate the run in ``path`` on held-out tasks and write its report.

    Args:
        path: a run folder written by ``metarl train``.
        episodes: held-out tasks (default: the config's ``eval.episodes``).
        ways, shots: few-shot runs only: the test setting (default: the config's).
        data_dir: few-shot runs only: where the dataset is (default: the config's).
        overrides: ``eval.KEY=VALUE`` settings of this evaluation (``--set``); other
            sections describe the trained run and are refused.
        device: where the model evaluates (``--device``; default: the run's
            ``train.device``); a checkpoint from any device loads onto it.

    Returns:
        the ``eval.json`` dictionary (schema in DESIGN.md). Few-shot runs also keep a copy
        per setting, ``eval-5w1s.json`` and the like, so the four settings sit side by side.
    """
    path = Path(path)
    if is_sweep(path):
        return _evaluate_sweep(path, episodes, ways, shots, data_dir, overrides, device)
    raw = for_evaluation(runs.read_run_config(path), device)
    raw = apply_fewshot_options(raw, ways=ways, shots=shots, data_dir=data_dir)
    for assignment in overrides:
        if not assignment.strip().startswith("eval."):
            raise UsageError(f"--set {assignment}: eval takes only eval.KEY=VALUE settings")
        set_key(raw, assignment)
    config = resolve_config(raw)
    episodes = episodes if episodes is not None else config.eval.episodes
    if episodes < 2:
        raise UsageError(f"--episodes must be at least 2, got {episodes}")
    lock = runs.RunLock(path)
    lock.check()
    checkpoint = runs.load_checkpoint(path)
    with thread_policy(config):
        agent = get_recipe(config.agent).build(config)
        try:
            agent.load_state_dict(checkpoint["agent"])
            report = {"experiment": config.name, **agent.evaluate(episodes)}
        finally:
            agent.close()
    report["trained_iterations"] = checkpoint["iteration"]
    if "shots" in report and (path / runs.METRICS).is_file():
        report["minutes_to_validation"] = minutes_to(runs.read_metrics(path), (0.95, 0.97))
    with lock:
        runs.write_json(path / "eval.json", report)
        if "shots" in report:
            runs.write_json(path / f"eval-{report['ways']}w{report['shots']}s.json", report)
        plot_report(report, path)
    return report


def compare_runs(first: str | Path, second: str | Path) -> dict[str, Any]:
    """The paired difference ``first`` minus ``second`` of two evaluations on the same
    held-out tasks (:func:`metarl.eval.paired.paired`), each a run folder (its ``eval.json``)
    or an evaluation file such as ``RUN/eval-5w5s.json``. UsageError unless both hold
    per-task scores of the same metric on the same tasks (test episodes, for few-shot runs;
    evaluations keep them since ``metarl compare`` exists)."""
    reports = []
    for given in (first, second):
        path = Path(given)
        run, file = (path.parent, path) if path.suffix == ".json" else (path, path / "eval.json")
        if not file.is_file():
            raise UsageError(f"{file} does not exist: run metarl eval {run} first")
        report = runs.read_json(file)
        if "scores" not in report or "tasks_crc32" not in report:
            raise UsageError(
                f"{file} keeps no per-task scores (evaluations made before metarl compare "
                f"existed): run metarl eval {run} again"
            )
        reports.append(report)
    a, b = reports
    if (a["metric"], a["tasks_crc32"]) != (b["metric"], b["tasks_crc32"]):
        raise UsageError(
            f"{first} and {second} were not evaluated on the same tasks "
            f"({a['metric']} on tasks {a['tasks_crc32']}, {b['metric']} on {b['tasks_crc32']}); "
            "evaluate both with the same --ways, --shots, --episodes and eval settings"
        )
    return paired(np.asarray(a["scores"]), np.asarray(b["scores"]), a["higher_is_better"])


def minutes_to(rows: list[dict[str, float]], levels: Sequence[float]) -> dict[str, float | None]:
    """Training wall-clock minutes until the validation accuracy (``metrics.csv``, the
    run's eval setting) first reached each level; ``None`` where it never did."""
    measured = [(r["wall_time"], r["val_accuracy"]) for r in rows if r["val_accuracy"] >= 0]
    return {
        f"{level:g}": next((round(t / 60, 2) for t, a in measured if a >= level), None)
        for level in levels
    }


def _evaluate_sweep(
    path: Path,
    episodes: int | None,
    ways: int | None,
    shots: int | None,
    data_dir: str | Path | None,
    overrides: Sequence[str],
    device: str | None,
) -> dict[str, Any]:
    """Evaluate every finished trial of a sweep; aggregate by configuration."""
    sweep = runs.read_json(path / SWEEP)
    reports = []
    for trial in sweep["trials"]:
        if not (Path(trial["path"]) / runs.CHECKPOINT).is_file():
            continue  # a failed trial
        report = evaluate_run(
            trial["path"],
            episodes,
            ways=ways,
            shots=shots,
            data_dir=data_dir,
            overrides=overrides,
            device=device,
        )
        reports.append((trial, report))
    if not reports:
        raise UsageError(f"no trial of the sweep in {path} has a checkpoint to evaluate")
    first = reports[0][1]
    report = {
        "experiment": sweep["experiment"],
        "metric": first["metric"],
        "higher_is_better": first["higher_is_better"],
        "episodes": first["episodes"],
        "curve_of": first.get("curve_of", ""),
        "configs": aggregate(reports),
    }
    runs.write_json(path / "eval.json", report)
    plot_sweep(report, path)
    return report
