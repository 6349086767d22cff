"""Random tabular MDP steps per second: TabularMDPVectorEnv with uniformly random actions.

    python benchmarks/mdp_throughput.py [--envs 1000] [--steps 2000] [--episodes 10]

Steps ``--envs`` trials of ``--episodes`` episodes at once for ``--steps`` steps, in one
process on one core, autoresets (and the fresh MDPs they draw) included; the actions are
drawn before the clock starts. Also times drawing one batch of ``--envs`` MDPs.
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from envs.tabular_mdp import TabularMDPVectorEnv, sample_tasks


def steps_per_second(envs: int, steps: int, episodes: int) -> float:
    env = TabularMDPVectorEnv(envs, episodes_per_trial=episodes)
    actions = np.random.default_rng(0).integers(env.num_actions, size=(steps, envs))
    env.reset(seed=0)
    start = time.perf_counter()
    for step_actions in actions:
        env.step(step_actions)
    return steps * envs / (time.perf_counter() - start)


def sampling_seconds(envs: int) -> float:
    start = time.perf_counter()
    sample_tasks(np.random.default_rng(0), envs, 10, 5)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--envs", type=int, default=1000)
    parser.add_argument("--steps", type=int, default=2000)
    parser.add_argument("--episodes", type=int, default=10)
    args = parser.parse_args()
    rate = steps_per_second(args.envs, args.steps, args.episodes)
    seconds = sampling_seconds(args.envs)
    print(
        f"{rate:12,.0f} env steps/s at batch {args.envs} (n = {args.episodes}); "
        f"{args.envs} MDPs drawn in {1000 * seconds:.1f} ms"
    )


if __name__ == "__main__":
    main()
