"""Bandit env steps per second with the SNAIL policy acting, local backend vs Ray.

    python benchmarks/sampling_throughput.py [--tasks 1000] [--horizon 10] [--repeats 20]

A batch of ``--tasks`` tasks is sampled (one trial each) ``--repeats`` times; the local
backend runs it as one shard in this process, Ray as one shard per worker.
"""

from __future__ import annotations

import argparse
import time

from agents.rl2_bandit import Config, RL2BanditAgent
from metarl.config import SamplerConfig
from metarl.rollout.worker import Shard, shard_seeds


def steps_per_second(backend: str, workers: int, tasks: int, horizon: int, repeats: int) -> float:
    shards = 1 if backend == "local" else workers
    config = Config(
        name="throughput",
        agent="rl2-bandit",
        trials_per_iteration=tasks,
        sampler=SamplerConfig(backend=backend, workers=workers, shards=shards),
    )
    config.env.horizon = horizon
    agent = RL2BanditAgent(config)
    weights = agent.policy.state_dict()
    try:
        work = [Shard(seed, tasks // shards) for seed in shard_seeds(0, 0, shards)]
        agent.sampler.sample(weights, work)  # warm-up: actor start, env and cache allocation
        start = time.perf_counter()
        for _ in range(repeats):
            agent.sampler.sample(weights, work)
        elapsed = time.perf_counter() - start
    finally:
        agent.close()
    return repeats * tasks * horizon / elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=1000)
    parser.add_argument("--horizon", type=int, default=10)
    parser.add_argument("--repeats", type=int, default=20)
    args = parser.parse_args()
    for backend, workers in (("local", 1), ("ray", 1), ("ray", 2)):
        rate = steps_per_second(backend, workers, args.tasks, args.horizon, args.repeats)
        print(
            f"{backend:5s} workers={workers}  {rate:10,.0f} env steps/s "
            f"({args.tasks} tasks x {args.horizon} pulls)"
        )


if __name__ == "__main__":
    main()
