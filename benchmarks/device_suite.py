"""The device suite: CUDA tests, then CPU and GPU speed side by side, in one command.

    python benchmarks/device_suite.py --data-dir DATA [--json device_suite.json]
    python benchmarks/device_suite.py --data-dir DATA --cpu-only    # quick, no GPU needed

About 8 minutes on one GPU. It runs the tests marked ``cuda`` (``pytest -m cuda``), then
times training iterations of the shipped recipes, built as ``metarl train`` builds them
(data on the device, the config's ``train.threads``), on the CPU (one short measurement:
a warm-up and a few seconds, or a single iteration where one takes longer) and on the GPU
(a warm-up, then iterations for ``--seconds``):

- second-order MAML, Omniglot 5-way 1-shot, meta-batch 32, 15 queries per class: seconds
  per update, episode by episode (loop) and task-batched (``vmap``);
- ProtoNet training episodes/s at 60-way 5-shot;
- SNAIL few-shot updates/s; MANN online-Omniglot updates/s;
- seconds of one ``snail-bandit`` PPO iteration at n=100 pulls;
- seconds of one ``maml-halfcheetah-vel`` iteration (sampling on the CPU included);

and, on the GPU only, the test accuracy (5-way 1-shot, 1,000 episodes) that ProtoNet and
MAML reach after 3 minutes of training each. To fit in 8 minutes, the two trainings run at
once, each in its own process, and the CPU column is measured meanwhile in a third (one
torch thread per row, as the configs ask, on otherwise idle cores). It prints one table
and writes one JSON with the date, the GPU's name, the load average and every figure.
``--cpu-only`` measures the CPU column alone, with small settings (a few seconds per row),
to check the suite where there is no GPU.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, NamedTuple

import torch

from metarl.experiment import build_config, resolve_config, thread_policy
from metarl.registry import get_recipe

ROOT = Path(__file__).resolve().parents[1]
MAML = {"episodes.ways": 5, "episodes.shots": 1, "episodes.queries": 15, "episodes.meta_batch": 32}


class Row(NamedTuple):
    """One measurement: a recipe's training iteration, with its settings.

    Attributes:
        label: what the table calls it.
        experiment: the shipped config.
        overrides: the measured setting (on top of the config).
        quick: ``--cpu-only``'s smaller setting, replacing keys of ``overrides``.
        per_iteration: units per iteration (episodes of a ProtoNet update), or 0 to report
            seconds per iteration instead of units per second.
        unit: the figure's unit.
        prepare: adjusts the built agent (the MAML path) before timing.
    """

    label: str
    experiment: str
    overrides: dict[str, Any]
    quick: dict[str, Any]
    per_iteration: float
    unit: str
    prepare: Callable[[Any], None] | None = None


def maml_path(batched: bool) -> Callable[[Any], None]:
    def prepare(agent: Any) -> None:
        agent.model.batched = batched

    return prepare


ROWS = [
    Row(
        "MAML 2nd order 5w1s mb32 q15, loop",
        "maml-omniglot",
        MAML,
        {"episodes.meta_batch": 2, "episodes.queries": 2, "learner.channels": 16},
        0,
        "s/update",
        maml_path(False),
    ),
    Row(
        "MAML 2nd order 5w1s mb32 q15, task-batched",
        "maml-omniglot",
        MAML,
        {"episodes.meta_batch": 2, "episodes.queries": 2, "learner.channels": 16},
        0,
        "s/update",
        maml_path(True),
    ),
    Row(
        "ProtoNet 60-way 5-shot",
        "protonet-omniglot",
        {"episodes.ways": 60, "episodes.shots": 5, "episodes.queries": 5},
        {"episodes.ways": 10, "learner.channels": 16},
        1,
        "episodes/s",
    ),
    Row("SNAIL few-shot", "snail-omniglot", {}, {"learner.channels": 16}, 1, "updates/s"),
    Row(
        "MANN online Omniglot",
        "mann-omniglot",
        {},
        {"episodes.meta_batch": 4, "channels": 8},
        1,
        "updates/s",
    ),
    Row(
        "snail-bandit PPO iteration, n=100",
        "snail-bandit",
        {"env.horizon": 100},
        {"trials_per_iteration": 64},
        0,
        "s/iteration",
    ),
    Row(
        "maml-halfcheetah-vel iteration",
        "maml-halfcheetah-vel",
        {},
        {"env.meta_batch": 2, "env.episodes_per_task": 2, "env.horizon": 20},
        0,
        "s/iteration",
    ),
]
ACCURACY = ("protonet-omniglot", "maml-omniglot")
CUDA = "@pytest.mark.cuda"


def row_config(row: Row, device: str, data_dir: str | None, quick: bool) -> Any:
    """The resolved config of a row on ``device``."""
    overrides = {**row.overrides, **(row.quick if quick else {}), "train.device": device}
    raw = build_config(row.experiment, overrides)
    if data_dir and "data" in raw:
        raw["data"] = {**raw["data"], "dir": data_dir}
    return resolve_config(raw)


def seconds_per_iteration(agent: Any, device: torch.device, budget: float) -> float:
    """Median seconds of a training iteration after a warm-up, iterating for ``budget``
    seconds; a warm-up longer than half the budget is the measurement itself."""

    def timed(iteration: int) -> float:
        start = time.perf_counter()
        agent.train_iteration(iteration)
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        return time.perf_counter() - start

    first = timed(0)
    if first > budget / 2:
        return first
    times, began = [], time.perf_counter()
    while not times or (time.perf_counter() - began < budget and len(times) < 200):
        times.append(timed(len(times) + 1))
    return statistics.median(times)


def measure(row: Row, device: str, data_dir: str | None, quick: bool, budget: float) -> float:
    """The row's figure on ``device``: units per second, or seconds per iteration, with
    the config's ``train.threads`` as ``metarl train`` runs it."""
    config = row_config(row, device, data_dir, quick)
    with thread_policy(config):
        agent = get_recipe(config.agent).build(config)
        try:
            if row.prepare is not None:
                row.prepare(agent)
            seconds = seconds_per_iteration(agent, config.train.torch_device, budget)
        finally:
            agent.close()
    return row.per_iteration / seconds if row.per_iteration else seconds


def cuda_tests() -> dict[str, Any]:
    """``pytest -m cuda`` over the test files that hold such tests (so that a GPU machine
    needs only the packages they import): its exit code and last line."""
    files = [str(f) for f in sorted((ROOT / "tests").glob("test_*.py")) if CUDA in f.read_text()]
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-m", "cuda", "-p", "no:cacheprovider", *files],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    lines = done.stdout.strip().splitlines()
    return {"exit_code": done.returncode, "summary": lines[-1] if lines else done.stderr[-300:]}


def accuracy_after(minutes: float, data_dir: str | None, folder: Path) -> dict[str, Any]:
    """Test accuracy of each :data:`ACCURACY` experiment after ``minutes`` of training on
    the GPU, the trainings running at once in separate processes."""
    cli = [sys.executable, "-m", "metarl.cli"]
    data = ["--data-dir", data_dir] if data_dir else []
    trainings = {
        name: subprocess.Popen(
            [*cli, "train", name, "--device", "cuda", "--time-limit", str(minutes)]
            + ["--out", str(folder / name), "--no-progress", *data],
            cwd=ROOT,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        for name in ACCURACY
    }
    results = {}
    for name, process in trainings.items():
        _, err = process.communicate()
        if process.returncode:
            results[name] = {"error": err.strip().splitlines()[-1:]}
            continue
        done = subprocess.run(
            [*cli, "eval", str(folder / name), "--device", "cuda", "--json", *data],
            cwd=ROOT,
            capture_output=True,
            text=True,
        )
        if done.returncode:
            results[name] = {"error": done.stderr.strip().splitlines()[-1:]}
            continue
        report = json.loads(done.stdout)
        summary = json.loads((folder / name / "summary.json").read_text())
        results[name] = {
            "accuracy": report["value"],
            "ci95": report["ci95"],
            "setting": f"{report['ways']}-way {report['shots']}-shot",
            "iterations": summary["iterations"],
            "minutes": minutes,
        }
    return results


def table(rows: list[dict[str, Any]], accuracy: dict[str, Any]) -> str:
    lines = [f"{'measurement':46s} {'unit':>12s} {'CPU':>10s} {'GPU':>10s} {'GPU/CPU':>8s}"]
    for row in rows:
        cpu, gpu = row["cpu"], row["gpu"]
        speedup = ""
        if cpu and gpu:
            speedup = f"{(gpu / cpu if row['unit'].endswith('/s') else cpu / gpu):.1f}x"
        cells = [f"{v:10.3g}" if v is not None else f"{'-':>10s}" for v in (cpu, gpu)]
        lines.append(f"{row['label']:46s} {row['unit']:>12s} {' '.join(cells)} {speedup:>8s}")
    for name, result in accuracy.items():
        if "accuracy" in result:
            value = f"{result['accuracy']:.4f} ± {result['ci95']:.4f}"
            where = f"({result['setting']}, {result['iterations']} updates)"
        else:
            value, where = "-", result.get("error") or result.get("note", "")
        lines.append(f"{name} accuracy after 3 min: {value} {where}")
    return "\n".join(lines)


def column(device: str, data_dir: str | None, quick: bool, budget: float) -> list[float]:
    """Every row's figure on ``device``, printed as it comes."""
    figures = []
    for row in ROWS:
        figures.append(measure(row, device, data_dir, quick, budget))
        print(f"  {device}: {row.label}: {figures[-1]:.3g} {row.unit}", flush=True)
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", help="Omniglot folder (default $METARL_DATA)")
    parser.add_argument("--json", default="device_suite.json", help="where to write the JSON")
    parser.add_argument("--cpu-only", action="store_true", help="quick CPU column, no GPU")
    parser.add_argument("--seconds", type=float, default=8.0, help="GPU budget per row")
    parser.add_argument("--cpu-seconds", type=float, default=3.0, help="CPU budget per row")
    parser.add_argument("--minutes", type=float, default=3.0, help="accuracy training time")
    parser.add_argument("--cpu-column", help=argparse.SUPPRESS)  # the CPU column's process
    args = parser.parse_args()
    if args.cpu_column:
        figures = column("cpu", args.data_dir, False, args.cpu_seconds)
        Path(args.cpu_column).write_text(json.dumps(figures))
        return
    quick = args.cpu_only
    if not quick and not torch.cuda.is_available():
        parser.error("no CUDA device here: run with --cpu-only for the quick CPU check")
    if args.data_dir:  # the Omniglot tests read it there, from their own working folders
        args.data_dir = str(Path(args.data_dir).resolve())
        os.environ.setdefault("METARL_TEST_DATA", args.data_dir)
    began = time.monotonic()
    result: dict[str, Any] = {
        "date": datetime.date.today().isoformat(),
        "gpu": None if quick else torch.cuda.get_device_name(0),
        "cpu": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores",
        "torch": torch.__version__,
        "mode": "cpu-only quick (small settings, not the labels')" if quick else "full",
        "tests": cuda_tests(),
    }
    print(f"pytest -m cuda: {result['tests']['summary']}", flush=True)
    if quick:
        cpu, gpu = column("cpu", args.data_dir, True, args.cpu_seconds), [None] * len(ROWS)
        accuracy = {name: {"note": "GPU only; skipped with --cpu-only"} for name in ACCURACY}
    else:
        gpu = column("cuda", args.data_dir, False, args.seconds)
        with tempfile.TemporaryDirectory() as folder:
            # the CPU column (one thread) runs beside the two GPU trainings, on idle cores
            figures = Path(folder) / "cpu.json"
            data = ["--data-dir", args.data_dir] if args.data_dir else []
            cpu_column = subprocess.Popen(
                [sys.executable, __file__, "--cpu-column", str(figures), *data]
                + ["--cpu-seconds", str(args.cpu_seconds)],
                cwd=ROOT,
            )
            accuracy = accuracy_after(args.minutes, args.data_dir, Path(folder))
            cpu_column.wait()
            cpu = json.loads(figures.read_text()) if figures.is_file() else [None] * len(ROWS)
    rows = [
        {"label": row.label, "unit": row.unit, "cpu": c, "gpu": g}
        for row, c, g in zip(ROWS, cpu, gpu, strict=True)
    ]
    result |= {"rows": rows, "accuracy": accuracy, "load_average": os.getloadavg()}
    result["wall_s"] = round(time.monotonic() - began, 1)
    Path(args.json).write_text(json.dumps(result, indent=2) + "\n")
    print(table(rows, accuracy))
    if quick:
        print("(--cpu-only: small settings, not the labels'; the figures check the suite only)")
    print(f"load average {result['load_average']}, {result['wall_s']} s; wrote {args.json}")


if __name__ == "__main__":
    main()
