"""A measured model of one meta-RL iteration's cost at 8, 64 and 256 Ray rollout workers.

    python benchmarks/ray_scaling_model.py [--experiment maml-halfcheetah-vel]

Measures on this machine: the policy's weight bytes and one iteration's batch bytes (from the
experiment's config), a worker's env steps/s in-process, the Ray cost of one actor call, and
the object store's driver-side throughput (weights put and fetched by an actor; a batch-sized
result gathered). Then models an iteration with ``n`` workers as

    update + ceil(episodes / n) * episode_time        (sampling, an episode is indivisible)
           + n * W / bandwidth                        (broadcast: each node pulls the weights)
           + B / bandwidth + n * call                 (gather of every batch into the driver)

with ``bandwidth`` the driver node's network (an assumption, ``--gbit``, 10 Gbit/s by
default) and the update time passed in (``--update-s``, the driver's TRPO step measured in
issue 4). Assumptions: one worker per core; workers as fast as the measured one; the driver
pulls every batch and serves every weight copy itself (no tree broadcast), the worst case.
"""

from __future__ import annotations

import argparse
import math
import time

import numpy as np
import ray

from agents.maml_rl import MetaPGAgent
from metarl.trainer import build_config, resolve_config


@ray.remote(num_cpus=0)
class Echo:
    """An actor that fetches what it is given, or returns arrays of a given size."""

    def touch(self, weights: dict) -> int:
        return len(weights)

    def batch(self, floats: int) -> np.ndarray:
        return np.ones(floats, dtype=np.float32)


def timed(call, repeats: int = 20) -> float:
    call()
    start = time.perf_counter()
    for _ in range(repeats):
        call()
    return (time.perf_counter() - start) / repeats


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--experiment", default="maml-halfcheetah-vel")
    parser.add_argument("--gbit", type=float, default=10.0, help="driver network, Gbit/s")
    parser.add_argument("--update-s", type=float, default=15.2, help="driver update time")
    args = parser.parse_args()

    config = resolve_config(build_config(args.experiment))
    agent = MetaPGAgent(config)
    weights = {k: v.detach().clone() for k, v in agent.policy.state_dict().items()}
    weight_bytes = sum(v.numel() * v.element_size() for v in weights.values())
    chosen = agent.sample_tasks([0], 2)
    theta = {k: v.detach() for k, v in agent.policy.named_parameters()}
    agent.rollouts(chosen, theta, 0, [0])
    start = time.perf_counter()
    steps = agent.rollouts(chosen, theta, 0, [1])[3]
    rate = steps / (time.perf_counter() - start)
    agent.close()
    env = config.env
    episodes = env.meta_batch * env.episodes_per_task
    iteration_steps = episodes * env.horizon * 2  # before and after the inner step
    obs, actions = agent.policy.body[0].in_features, agent.policy.log_std.numel()
    floats_per_step = obs + actions + 4  # observation, action, reward, done, logp, value
    batch_bytes = iteration_steps * floats_per_step * 4

    ray.init(address="local", include_dashboard=False, log_to_driver=False)
    echo = Echo.remote()
    call = timed(lambda: ray.get(echo.touch.remote({})))
    put = timed(lambda: ray.get(echo.touch.remote(ray.put(weights))))
    shard_floats = batch_bytes // 4 // 16
    gather = timed(lambda: ray.get(echo.batch.remote(shard_floats)), repeats=5)
    local_bandwidth = shard_floats * 4 / max(gather - call, 1e-9)
    ray.shutdown()

    bandwidth = args.gbit * 1e9 / 8
    episode_time = env.horizon / rate
    print(f"weights {weight_bytes / 1e3:.1f} kB, batch {batch_bytes / 1e6:.1f} MB per iteration")
    print(f"worker rate {rate:,.0f} env steps/s, episode {episode_time * 1e3:.0f} ms")
    print(f"actor call {call * 1e3:.2f} ms, weights put+fetch {put * 1e3:.2f} ms")
    print(f"object store, same node: {local_bandwidth / 1e9:.2f} GB/s; network: {args.gbit} Gbit/s")
    print(f"{'workers':>8s} {'sample s':>9s} {'broadcast s':>12s} {'gather s':>9s} {'total s':>8s}")
    for n in (1, 2, 8, 64, 256):
        rounds = math.ceil(2 * episodes / n)
        sample = rounds * episode_time
        broadcast = n * weight_bytes / bandwidth
        gather_s = batch_bytes / bandwidth + n * call
        total = args.update_s + sample + broadcast + gather_s
        print(f"{n:8d} {sample:9.2f} {broadcast:12.4f} {gather_s:9.3f} {total:8.2f}")


if __name__ == "__main__":
    main()
