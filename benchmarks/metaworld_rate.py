"""Raw Meta-World environment steps per second on one core (the ``metaworld`` extra).

    python benchmarks/metaworld_rate.py ML1 --task reach [--seconds 60]
    python benchmarks/metaworld_rate.py ML10

Steps one :class:`envs.metaworld.MetaWorldEnv` with uniform random actions through whole
500-step episodes, each on the next of 100 sampled train tasks, for ``--seconds`` seconds;
resets (and, for ML10 and ML45, switches between task classes) count in the time, building
the benchmark does not. README's Meta-World section records its figures.
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from envs.metaworld import HORIZON, make_metaworld_env


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("benchmark", choices=["ML1", "ML10", "ML45"])
    parser.add_argument("--task", default="reach", help="ML1's task")
    parser.add_argument("--seconds", type=float, default=60.0)
    args = parser.parse_args()
    env = make_metaworld_env(args.benchmark, HORIZON, args.task)
    env.reset(seed=0)
    tasks = env.sample_tasks(100)
    rng = np.random.default_rng(0)
    steps, episodes, began = 0, 0, time.perf_counter()
    while time.perf_counter() - began < args.seconds:
        env.reset(options={"task": tasks[episodes % len(tasks)]})
        for _ in range(HORIZON):
            env.step(rng.uniform(-1, 1, 4).astype(np.float32))
        steps, episodes = steps + HORIZON, episodes + 1
    elapsed = time.perf_counter() - began
    name = f"ML1-{args.task}" if args.benchmark == "ML1" else args.benchmark
    print(f"{name}: {steps / elapsed:,.0f} env steps/s ({steps} steps, {episodes} episodes)")


if __name__ == "__main__":
    main()
