"""Maze environment steps per second: MazeVectorEnv with uniformly random actions.

    python benchmarks/maze_throughput.py [--envs 1000] [--steps 2000]

Steps ``--envs`` trials at once for ``--steps`` steps, autoresets (and the generation of fresh
mazes they need) included; the actions are drawn before the clock starts. Also times
generating one batch of ``--envs`` tasks.
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from envs.mazes import MazeVectorEnv, sample_tasks


def steps_per_second(size: int, envs: int, steps: int) -> float:
    env = MazeVectorEnv(envs, size)
    actions = np.random.default_rng(0).integers(4, size=(steps, envs))
    env.reset(seed=0)
    start = time.perf_counter()
    for step_actions in actions:
        env.step(step_actions)
    return steps * envs / (time.perf_counter() - start)


def generation_seconds(size: int, envs: int) -> float:
    start = time.perf_counter()
    sample_tasks(np.random.default_rng(0), envs, size)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--envs", type=int, default=1000)
    parser.add_argument("--steps", type=int, default=2000)
    args = parser.parse_args()
    print(f"{'maze':>5s}  {'cap':>4s}  {'env steps/s':>12s}  {args.envs} tasks generated in")
    for size in (5, 9):
        rate = steps_per_second(size, args.envs, args.steps)
        seconds = generation_seconds(size, args.envs)
        cap = MazeVectorEnv(1, size).max_episode_steps
        print(f"{size}x{size:<3d}  {cap:4d}  {rate:12,.0f}  {1000 * seconds:.1f} ms")


if __name__ == "__main__":
    main()
