"""Few-shot training throughput and Omniglot start-up times.

Prints, for ProtoNet on Conv4 (the ``protonet-omniglot`` recipe with the episode shape
given here, 60-way 5-shot 5 queries by default): training episodes per second over
``--iterations`` updates after a warm-up, the process's peak resident memory, and the
loader's first start-up (reading the npz bundle, resizing, writing the cache) against
its cached start-up.

Run (from the repository root, with the npz bundle in DATA):

    python benchmarks/fewshot_throughput.py --data-dir DATA
    python benchmarks/fewshot_throughput.py --data-dir DATA --threads 1 --ways 20
"""

from __future__ import annotations

import argparse
import resource
import shutil
import tempfile
import time
from pathlib import Path

import torch

from agents.fewshot_omniglot import Config, EpisodeConfig, FewShotAgent
from metarl.allocator import keep_freed_memory
from metarl.fewshot import load_omniglot


def startup_seconds(data: Path) -> tuple[float, float]:
    """Seconds of the first load (building the cache) and of a cached load, in a fresh
    folder holding links to the npz bundle."""
    folder = Path(tempfile.mkdtemp())
    try:
        for name in ("images_background.npz", "images_evaluation.npz"):
            (folder / name).symlink_to((data / name).resolve())
        times = []
        for _ in range(2):
            start = time.perf_counter()
            load_omniglot(folder, progress=False)
            times.append(time.perf_counter() - start)
        return times[0], times[1]
    finally:
        shutil.rmtree(folder)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", type=Path, required=True)
    parser.add_argument("--ways", type=int, default=60)
    parser.add_argument("--shots", type=int, default=5)
    parser.add_argument("--queries", type=int, default=5)
    parser.add_argument("--iterations", type=int, default=20)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    keep_freed_memory()  # as the few-shot recipe's agent does

    first, cached = startup_seconds(args.data_dir)
    print(f"Omniglot start-up: first {first:.2f} s (builds the cache), cached {cached:.3f} s")

    config = Config(
        name="protonet-omniglot",
        agent="fewshot-omniglot",
        episodes=EpisodeConfig(args.ways, args.shots, args.queries),
    )
    config.data.dir = str(args.data_dir)
    agent = FewShotAgent(config)
    for i in range(3):  # warm-up
        agent.train_iteration(i)
    start = time.perf_counter()
    for i in range(args.iterations):
        agent.train_iteration(3 + i)
    rate = args.iterations / (time.perf_counter() - start)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(
        f"ProtoNet {args.ways}-way {args.shots}-shot {args.queries} queries, "
        f"{args.threads} threads: {rate:.2f} training episodes/s, peak memory {peak:.0f} MiB"
    )


if __name__ == "__main__":
    main()
