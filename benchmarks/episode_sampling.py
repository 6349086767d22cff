"""Meta-RL sampling throughput: env steps per second of the episode worker, the policy of an
experiment acting, on the local backend and on Ray actors.

    python benchmarks/episode_sampling.py [--experiment maml-halfcheetah-vel] [--tasks 8]

Each measurement samples ``--tasks`` tasks of ``env.episodes_per_task`` episodes
(``--repeats`` times, after a warm-up), one shard per worker, and fits the baseline and
advantages as training does; the load average is printed, since the figure depends on what
else the machine runs.
"""

from __future__ import annotations

import argparse
import os
import time

from agents.maml_rl import MetaPGAgent
from metarl.config import SamplerConfig
from metarl.trainer import build_config, resolve_config


def steps_per_second(
    experiment: str, backend: str, workers: int, tasks: int, repeats: int
) -> float:
    config = resolve_config(build_config(experiment))
    config.sampler = SamplerConfig(backend=backend, workers=workers, shards=workers)
    agent = MetaPGAgent(config)
    try:
        chosen = agent.sample_tasks([0], tasks)
        theta = {k: v.detach() for k, v in agent.policy.named_parameters()}
        agent.rollouts(chosen, theta, 0, [0])  # warm-up: actor start, env creation
        start = time.perf_counter()
        steps = sum(agent.rollouts(chosen, theta, 0, [i])[3] for i in range(repeats))
        return steps / (time.perf_counter() - start)
    finally:
        agent.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--experiment", default="maml-halfcheetah-vel")
    parser.add_argument("--tasks", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=4)
    args = parser.parse_args()
    for backend, workers in (("local", 1), ("ray", 1), ("ray", 2)):
        rate = steps_per_second(args.experiment, backend, workers, args.tasks, args.repeats)
        load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
        print(f"{backend:5s} workers={workers}  {rate:8,.0f} env steps/s  (load average {load})")


if __name__ == "__main__":
    main()
