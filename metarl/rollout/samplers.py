"""Samplers: run shards of rollout work in this process or on Ray actors.

Both return shard results in shard order, and a shard's result depends only on its seed and
the weights, so the local and Ray backends give the same batches for the same seed.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Callable
from typing import Any, Protocol

from metarl.config import SamplerConfig
from metarl.errors import UsageError
from metarl.rollout.worker import Batch, RolloutWorker


class Worker(Protocol):
    """What samplers run: :class:`RolloutWorker` (trials of a memory policy) or
    :class:`EpisodeWorker` (episodes of tasks, each with its own parameters)."""

    def sample(self, weights: dict[str, Any] | None, shards: list[Any]) -> list[Batch]: ...


class Sampler(Protocol):
    """Runs shards with the given policy weights (``None``: the shards carry their own)."""

    def sample(self, weights: dict[str, Any] | None, shards: list[Any]) -> list[Batch]: ...

    def close(self) -> None: ...


class LocalSampler:
    """One worker in this process, ``worker(**worker_kwargs)``."""

    def __init__(
        self, worker_kwargs: dict[str, Any], worker: Callable[..., Worker] = RolloutWorker
    ) -> None:
        self.worker = worker(**worker_kwargs)

    def sample(self, weights: dict[str, Any] | None, shards: list[Any]) -> list[Batch]:
        return self.worker.sample(weights, shards)

    def close(self) -> None:
        pass


def check_ray_address(address: str, timeout: float = 3.0) -> None:
    """Fail fast, with a one-line message, when a ``host:port`` Ray address does not answer."""
    if address in ("", "auto", "local"):
        return
    target = address.removeprefix("ray://")
    host, _, port = target.rpartition(":")
    if not host or not port.isdigit():
        raise UsageError(f"--ray-address {address!r}: expected 'auto' or HOST:PORT")
    try:
        socket.create_connection((host, int(port)), timeout=timeout).close()
    except OSError as err:
        raise UsageError(f"cannot reach a Ray cluster at {address}: {err}") from None


class RaySampler:
    """``workers`` worker actors; weights are put in the object store once per call and
    shards are dealt to the actors round-robin.

    Args:
        worker_kwargs: the worker's arguments (each actor builds its own).
        workers: number of actors.
        address: a running cluster's address; empty starts a local Ray instance.
        worker: the worker class, :class:`RolloutWorker` or :class:`EpisodeWorker`.
    """

    def __init__(
        self,
        worker_kwargs: dict[str, Any],
        workers: int,
        address: str = "",
        worker: Callable[..., Worker] = RolloutWorker,
    ) -> None:
        import ray

        check_ray_address(address)
        if not ray.is_initialized():
            try:
                if address:
                    ray.init(address=address, log_to_driver=False)
                else:
                    # Ray starts workers at niceness 15, below the driver: any other busy
                    # process then starves the rollout actors (measured: 0.7 s of CPU in
                    # 13 s of wall time per shard). Ours do the main work: niceness 0.
                    os.environ.setdefault("RAY_worker_niceness", "0")
                    ray.init(
                        num_cpus=max(workers, os.cpu_count() or 1),
                        include_dashboard=False,
                        log_to_driver=False,
                    )
            except (ConnectionError, RuntimeError) as err:
                raise UsageError(
                    f"cannot start or join Ray at {address or 'local'}: {str(err).splitlines()[0]}"
                ) from None
        actor = ray.remote(num_cpus=1)(worker)
        self.actors = [actor.remote(**worker_kwargs) for _ in range(workers)]

    def sample(self, weights: dict[str, Any] | None, shards: list[Any]) -> list[Batch]:
        import ray

        ref = ray.put(weights)
        n = len(self.actors)
        futures = [a.sample.remote(ref, shards[i::n]) for i, a in enumerate(self.actors)]
        per_actor = ray.get(futures)
        results: list[Batch] = [None] * len(shards)  # type: ignore[list-item]
        for i, batches in enumerate(per_actor):
            results[i::n] = batches
        return results

    def close(self) -> None:
        import ray

        for actor in self.actors:
            ray.kill(actor)
        self.actors = []


def make_sampler(
    config: SamplerConfig,
    worker_kwargs: dict[str, Any],
    worker: Callable[..., Worker] = RolloutWorker,
) -> Sampler:
    """The sampler for ``config.backend``, its workers ``worker(**worker_kwargs)``."""
    if config.backend == "ray":
        return RaySampler(worker_kwargs, config.workers, config.ray_address, worker)
    return LocalSampler(worker_kwargs, worker)
