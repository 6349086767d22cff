"""The random-MDP baselines on the held-out tasks of ``metarl eval``, for several trial lengths.

    python benchmarks/mdp_baselines.py [--episodes 10 25 50] [--tasks 1000]

For each n of ``--episodes``, plays every baseline of :mod:`metarl.eval.mdp_baselines` and the
oracle on the ``--tasks`` held-out MDPs and noise tape that ``snail-mdp``'s evaluation draws
(``eval.seed`` 2147483647), tuning their constants first where the cache has none, and prints
the mean return per trial with its 95% half-width, the tuned constants and the seconds taken.
A random agent stands in for the trained one (:func:`metarl.eval.mdps.mdp_report`'s ``value``).
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from metarl.eval.mdp_baselines import RandomPolicy, mdp_trials, run_baseline
from metarl.eval.mdps import mdp_report

EVAL_SEED = 2147483647  # eval.seed of the shipped *-mdp configs
S, A, H = 10, 5, 10


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--episodes", type=int, nargs="+", default=[10, 25, 50])
    parser.add_argument("--tasks", type=int, default=1000)
    args = parser.parse_args()
    for n in args.episodes:
        start = time.perf_counter()
        seed = np.random.SeedSequence(EVAL_SEED)
        tasks, tape, players = mdp_trials(seed, args.tasks, S, A, n * H)
        stand_in = run_baseline(RandomPolicy(), tasks, tape, players, S, A, H)
        report = mdp_report(stand_in, tasks, tape, players, S, A, H)
        cells = ", ".join(
            f"{name} {value:.1f} ± {report['baselines_ci95'][name]:.1f}"
            for name, value in report["baselines"].items()
        )
        print(f"n = {n}: {cells}; constants {report['baseline_settings']}")
        print(f"  ({time.perf_counter() - start:.1f} s, tuning included where not cached)")


if __name__ == "__main__":
    main()
