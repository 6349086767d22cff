"""Step-wise SNAIL inference: cached ``step()`` against recomputing the prefix with ``forward()``.

Acting runs one step at a time on a batch of tasks. With the cache a step costs O(1) per
convolution and O(t) per attention block; without it, step t reruns ``forward`` on the
whole prefix. For the default SNAIL (the paper's bandit policy network; input width 12, as
for 10 arms), this prints:

- a trial of ``--steps`` steps at ``--recompute-batch`` tasks, both ways (recomputing at
  batch 1000 and n = 500 would take hours, so the comparison runs at a smaller batch);
- the cached trial at ``--batch`` tasks;
- one cached step at ``--batch`` tasks with n = 10 (the bandit policy's trial length), and
  the trial both ways.

Run (from the repository root):

    python benchmarks/snail_step.py
    python benchmarks/snail_step.py --threads 1 --steps 100 --recompute-batch 4
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import torch
from torch import Tensor

from metarl.backbones import SNAIL

Trial = Callable[[SNAIL, Tensor], tuple[float, Tensor]]


def cached_trial(model: SNAIL, inputs: Tensor) -> tuple[float, Tensor]:
    """Seconds to act through a trial with ``step``, and the last step's features."""
    start = time.perf_counter()
    state = model.initial_state(inputs.shape[0], inputs.shape[1])
    for t in range(inputs.shape[1]):
        features, state = model.step(inputs[:, t], state)
    return time.perf_counter() - start, features


def recomputed_trial(model: SNAIL, inputs: Tensor) -> tuple[float, Tensor]:
    """Seconds to act through a trial with ``forward`` on each prefix, and the last features."""
    start = time.perf_counter()
    for t in range(inputs.shape[1]):
        features = model(inputs[:, : t + 1])[:, -1]
    return time.perf_counter() - start, features


def timed(trial: Trial, model: SNAIL, inputs: Tensor, repeats: int) -> list[float]:
    """Seconds of each of ``repeats`` trials; checks the features against ``forward``."""
    times = []
    for _ in range(repeats):
        seconds, last = trial(model, inputs)
        times.append(seconds)
    rows = slice(0, 8)
    error = (last[rows] - model(inputs[rows])[:, -1]).abs().max().item()
    if error > 1e-4:
        raise RuntimeError(f"{trial.__name__} disagrees with forward by {error:.3g}")
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=500, help="trial length n (default 500)")
    parser.add_argument("--batch", type=int, default=1000, help="tasks acting together")
    parser.add_argument("--recompute-batch", type=int, default=16, help="batch of the n-step race")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    parser.add_argument("--input-size", type=int, default=12, help="width of one input vector")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, float32, no_grad")

    with torch.no_grad():
        n = args.steps
        model = SNAIL(args.input_size, n).eval()
        print(f"n={n} (SNAIL output_size={model.output_size})")
        inputs = torch.randn(args.recompute_batch, n, args.input_size)
        (cached,) = timed(cached_trial, model, inputs, 1)
        (recomputed,) = timed(recomputed_trial, model, inputs, 1)
        print(
            f"  trial at batch {args.recompute_batch}: cached {cached:.2f} s, "
            f"recomputed {recomputed:.2f} s, speed-up x{recomputed / cached:.0f}"
        )
        inputs = torch.randn(args.batch, n, args.input_size)
        cached = min(timed(cached_trial, model, inputs, 2))
        print(
            f"  trial at batch {args.batch}: cached {cached:.2f} s = {1e3 * cached / n:.2f} "
            f"ms/step, {args.batch * n / cached:,.0f} steps/s"
        )

        n = 10
        model = SNAIL(args.input_size, n).eval()
        print(f"n={n} (SNAIL output_size={model.output_size})")
        inputs = torch.randn(args.batch, n, args.input_size)
        cached_times = timed(cached_trial, model, inputs, 30)
        step = statistics.median(cached_times) / n
        print(
            f"  one cached step at batch {args.batch}: {1e3 * step:.2f} ms (median of 30 "
            f"trials; fastest {1e3 * min(cached_times) / n:.2f} ms), {args.batch / step:,.0f} "
            "steps/s"
        )
        recomputed = min(timed(recomputed_trial, model, inputs, 3))
        print(
            f"  trial at batch {args.batch}: cached {1e3 * min(cached_times):.1f} ms, recomputed "
            f"{1e3 * recomputed:.1f} ms, speed-up x{recomputed / min(cached_times):.1f}"
        )


if __name__ == "__main__":
    main()
