"""Wall time of a default ``metarl eval`` of every shipped experiment.

    python benchmarks/eval_times.py [--data-dir DATA_DIR] [--only NAME ...] [--json FILE]

Each experiment is trained for ``--iterations`` iterations (the cost of evaluation does not
grow with training: the ``maml-*`` RL experiments train their equal-budget baseline during
``train``), then evaluated with its config's defaults, as ``metarl eval RUN`` would. Prints
one row per experiment: evaluation wall and CPU seconds (this process and its children).
"""

from __future__ import annotations

import argparse
import json
import resource
import tempfile
import time
from pathlib import Path

import metarl
from metarl.config import config_names


def cpu_seconds() -> float:
    own = resource.getrusage(resource.RUSAGE_SELF)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", help="the Omniglot folder (default $METARL_DATA)")
    parser.add_argument("--only", nargs="*", help="these experiments only")
    parser.add_argument("--iterations", type=int, default=1)
    parser.add_argument("--json", help="also write the rows to this file")
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.only or config_names():
            overrides = {"train.iterations": args.iterations}
            data = {"data_dir": args.data_dir} if "omniglot" in name else {}
            run = metarl.train(
                name, out=Path(tmp) / name, overrides=overrides, progress=False, **data
            )
            wall, cpu = time.perf_counter(), cpu_seconds()
            report = metarl.evaluate(run.path)
            row = {
                "experiment": name,
                "eval_wall_s": round(time.perf_counter() - wall, 1),
                "eval_cpu_s": round(cpu_seconds() - cpu, 1),
                "episodes": report["episodes"],
                "trained_env_steps": run.summary.get("env_steps"),
            }
            rows.append(row)
            print(
                f"{name:24s} {row['eval_wall_s']:8.1f} s wall {row['eval_cpu_s']:8.1f} s CPU "
                f"({row['episodes']} held-out tasks)",
                flush=True,
            )
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=2) + "\n")


if __name__ == "__main__":
    main()
