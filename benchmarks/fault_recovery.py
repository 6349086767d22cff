"""Fault recovery of the Ray sampler: the time from a killed rollout worker to the iteration's
batch being complete, and the proof that each shard was used exactly once.

    python benchmarks/fault_recovery.py [--shards 16] [--trials 2000] [--kill-after 1.0]

Samples snail-bandit shards on 2 actors, kills one actor's process (SIGKILL) while the call
runs, and compares the batch with an undisturbed local call of the same shards: equal
arrays mean every shard's trials appear once, none lost or doubled.
"""

from __future__ import annotations

import argparse
import os
import signal
import threading
import time

import numpy as np
import ray

from agents.rl2_bandit import RL2BanditAgent
from metarl.rollout import Shard
from metarl.rollout.samplers import RaySampler
from metarl.trainer import build_config, resolve_config


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shards", type=int, default=16)
    parser.add_argument("--trials", type=int, default=2000, help="trials per shard")
    parser.add_argument("--kill-after", type=float, default=1.0, help="seconds into the call")
    args = parser.parse_args()
    agent = RL2BanditAgent(resolve_config(build_config("snail-bandit")))
    weights = agent.policy.state_dict()
    shards = [Shard(1000 + i, args.trials) for i in range(args.shards)]
    expected = agent.sampler.sample(weights, shards)
    sampler = RaySampler(agent.worker_kwargs, workers=2)
    sampler.sample(weights, shards[:2])  # warm-up: actors and envs exist
    start = time.perf_counter()
    sampler.sample(weights, shards)
    undisturbed = time.perf_counter() - start

    pid = ray.get(sampler.actors[0].__ray_call__.remote(lambda self: os.getpid()))
    killed_at: list[float] = []

    def kill() -> None:
        time.sleep(args.kill_after)
        killed_at.append(time.perf_counter())
        os.kill(pid, signal.SIGKILL)

    killer = threading.Thread(target=kill)
    start = time.perf_counter()
    killer.start()
    got = sampler.sample(weights, shards)
    done = time.perf_counter()
    killer.join()
    same = all(
        np.array_equal(a[key], b[key]) for a, b in zip(got, expected, strict=True) for key in b
    )
    trials = sum(len(b["returns"]) for b in got)
    print(f"undisturbed call: {undisturbed:.2f} s for {args.shards} shards")
    print(
        f"killed worker {args.kill_after:.2f} s into the call: batch complete after "
        f"{done - start:.2f} s, {done - killed_at[0]:.2f} s after the kill"
    )
    print(f"workers replaced {sampler.restarts}, shards sampled again {sampler.resampled}")
    print(
        f"trials in the batch {trials} = {args.shards} x {args.trials}: "
        f"{trials == args.shards * args.trials}; identical to the undisturbed batch: {same}"
    )
    sampler.close()


if __name__ == "__main__":
    main()
