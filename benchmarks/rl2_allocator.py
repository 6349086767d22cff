"""Cost of an RL² PPO iteration under three settings of the memory allocator.

A long-trial PPO update allocates and frees tensors of tens to hundreds of MB. glibc hands
each one back to the kernel, so the next is faulted in again, 4 kB at a time: an hour of
``lstm-bandit`` at n = 100 spent 29% of its CPU time in the kernel (438 M minor faults).
The settings, each in fresh ``metarl train`` processes, alternating:

- ``plain``: glibc and torch as they come;
- ``huge pages``: ``THP_MEM_ALLOC_ENABLE=1``, torch's switch that aligns its allocations of
  2 MB or more to 2 MB and advises transparent huge pages (the kernel's setting must be
  ``madvise`` or ``always``): up to 512 times fewer faults, each page still zeroed;
- ``keep freed``: the RL² recipes' default, glibc's mmap and trim thresholds raised by
  ``metarl.allocator.keep_freed_memory``, so that freed blocks are reused without a fault.

The iterations after the first are timed (``metrics.csv``); the child's user and system CPU
time and minor faults come from ``wait4``.

Run (from the repository root, on quiet cores):

    python benchmarks/rl2_allocator.py
    python benchmarks/rl2_allocator.py --recipe snail-mdp --iterations 6
"""

from __future__ import annotations

import argparse
import csv
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

LONG_BANDIT = [
    "env.horizon=100",
    "env.num_arms=5",
    "trials_per_iteration=250",
    "ppo.epochs=2",
    "ppo.minibatches=2",
    "ppo.normalize_returns=true",
]
MODES = {
    "plain": {"METARL_KEEP_FREED_MEMORY": "0", "THP_MEM_ALLOC_ENABLE": "0"},
    "huge pages": {"METARL_KEEP_FREED_MEMORY": "0", "THP_MEM_ALLOC_ENABLE": "1"},
    "keep freed": {"METARL_KEEP_FREED_MEMORY": "1", "THP_MEM_ALLOC_ENABLE": "0"},
}


def run_once(recipe: str, iterations: int, overrides: list[str], mode: str) -> dict[str, float]:
    """Train ``iterations`` in a fresh process; its per-iteration wall time and CPU usage."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", **MODES[mode]}
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "run"
        command = [sys.executable, "-m", "metarl.cli", "train", recipe, "--out", str(out)]
        command += ["--no-progress", "--set", f"train.iterations={iterations}"]
        for assignment in overrides:
            command += ["--set", assignment]
        child = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL)
        _, status, usage = os.wait4(child.pid, 0)
        if status != 0:
            raise SystemExit(f"{' '.join(command)} exited with status {status}")
        with open(out / "metrics.csv") as f:
            walls = [float(row["wall_time"]) for row in csv.DictReader(f)]
    return {
        "iteration_s": (walls[-1] - walls[0]) / (len(walls) - 1),
        "user_s": usage.ru_utime,
        "system_s": usage.ru_stime,
        "minor_faults": usage.ru_minflt,
        "peak_mib": usage.ru_maxrss / 1024,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--recipe", default="lstm-bandit")
    parser.add_argument("--iterations", type=int, default=8, help="per process (first untimed)")
    parser.add_argument("--repeats", type=int, default=3, help="processes per setting")
    parser.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=None,
        help="config override (default: the n = 100 bandit recipe's, for the bandit recipes)",
    )
    args = parser.parse_args()
    overrides = args.overrides
    if overrides is None:
        overrides = LONG_BANDIT if args.recipe.endswith("-bandit") else []
    setting = Path("/sys/kernel/mm/transparent_hugepage/enabled")
    print(f"kernel: {setting.read_text().strip() if setting.exists() else 'no THP setting found'}")
    results: dict[str, list[dict[str, float]]] = {mode: [] for mode in MODES}
    for _ in range(args.repeats):
        for mode in MODES:
            results[mode].append(run_once(args.recipe, args.iterations, overrides, mode))
    print(f"{args.recipe} {' '.join(overrides)}: median of {args.repeats} processes")
    print("setting      s/iteration  user s  system s  minor faults  peak MiB")
    for mode, rows in results.items():
        med = {key: statistics.median(row[key] for row in rows) for key in rows[0]}
        print(
            f"{mode:11}  {med['iteration_s']:11.3f}  {med['user_s']:6.1f}  {med['system_s']:8.1f}"
            f"  {med['minor_faults']:12,.0f}  {med['peak_mib']:8.0f}"
        )


if __name__ == "__main__":
    main()
