"""MANN's training cost: one forward and backward of ``mann-omniglot``'s batch, eager against
``compile_step`` (``torch.compile`` of the step), interleaved so that both see the same load.

The batch is the recipe's: 16 sequences of 50 steps, each input 20 × 20 pixels plus 5 label
bits, a 200-unit LSTM controller and a 128 × 40 memory read by 4 heads. Prints the time to
compile, then the median and the lowest wall and CPU milliseconds per update of each mode;
``--profile`` adds torch's profile of the compiled mode, by operation.

Run (from the repository root, on quiet cores):

    python benchmarks/mann_update.py
    python benchmarks/mann_update.py --threads 1 --repeats 30 --profile
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
from torch.profiler import ProfilerActivity, profile

from metarl.backbones import MANN


def update(model: MANN, inputs: torch.Tensor, weights: torch.Tensor) -> tuple[float, float]:
    """Wall and CPU seconds of one forward and backward."""
    wall, cpu = time.perf_counter(), time.process_time()
    model.zero_grad()
    (model(inputs) * weights).sum().backward()
    return time.perf_counter() - wall, time.process_time() - cpu


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--steps", type=int, default=50)
    parser.add_argument("--profile", action="store_true")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    models = {"eager": MANN(405, args.steps), "compiled": MANN(405, args.steps, compile_step=True)}
    models["compiled"].load_state_dict(models["eager"].state_dict())
    inputs = torch.rand(args.batch, args.steps, 405)
    weights = torch.randn(args.batch, args.steps, models["eager"].output_size)
    for name, model in models.items():  # the first updates compile, the second warms caches
        start = time.perf_counter()
        update(model, inputs, weights)
        update(model, inputs, weights)
        print(f"{name}: first two updates {time.perf_counter() - start:.1f} s")
    times: dict[str, list[tuple[float, float]]] = {name: [] for name in models}
    for _ in range(args.repeats):
        for name, model in models.items():
            times[name].append(update(model, inputs, weights))
    print("mode      wall ms (median, lowest)   CPU ms (median, lowest)")
    for name, pairs in times.items():
        wall, cpu = ([1000 * p[i] for p in pairs] for i in (0, 1))
        print(
            f"{name:9} {statistics.median(wall):7.1f} {min(wall):7.1f}"
            f"            {statistics.median(cpu):7.1f} {min(cpu):7.1f}"
        )
    if args.profile:
        with profile(activities=[ProfilerActivity.CPU]) as prof:
            for _ in range(5):
                update(models["compiled"], inputs, weights)
        print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=15))


if __name__ == "__main__":
    main()
