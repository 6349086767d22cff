"""CPU time of one few-shot training update with Conv4 in plain and in channels-last order.

For each recipe named, builds its agent (``FewShotAgent``, the real Omniglot episodes of
the recipe) and times its training updates with the model's weights in plain (NCHW) and
in channels-last memory order, alternating the two every update so that both see the
same load; prints the median CPU seconds per update after the first of each. On the CPU
``metarl train`` runs every learner channels-last but second-order MAML and Proto-MAML
(``LearnerOptions.channels_last``); this is the measurement behind that choice.

Run (from the repository root, with the npz bundle in DATA):

    python benchmarks/conv4_memory_format.py --data-dir DATA
    python benchmarks/conv4_memory_format.py --data-dir DATA --recipes maml-omniglot --updates 4
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import torch

from agents.fewshot_omniglot import Config, FewShotAgent
from metarl.config import from_dict, read_raw

RECIPES = (
    "protonet-omniglot",
    "matchingnet-omniglot",
    "relationnet-omniglot",
    "finetune-omniglot",
    "metanet-omniglot",
    "snail-omniglot",
    "fomaml-omniglot",
    "reptile-omniglot",
    "maml-omniglot",
)
FORMATS = {"plain": torch.contiguous_format, "channels-last": torch.channels_last}


def update_seconds(recipe: str, data: Path, updates: int) -> dict[str, float]:
    """Median CPU seconds of one training update of ``recipe`` in each memory format."""
    raw = read_raw(recipe)
    raw["data"]["dir"] = str(data)
    raw["eval"]["val_every"] = 10**9  # no validation inside the timed updates
    agent = FewShotAgent(from_dict(Config, raw), progress=False)
    times: dict[str, list[float]] = {name: [] for name in FORMATS}
    for update in range(updates + 1):
        for name, memory_format in FORMATS.items():
            agent.model.to(memory_format=memory_format)
            start = time.process_time()
            agent.train_iteration(update)
            times[name].append(time.process_time() - start)
    agent.close()
    return {name: statistics.median(seconds[1:]) for name, seconds in times.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", type=Path, required=True)
    parser.add_argument("--recipes", nargs="+", default=list(RECIPES))
    parser.add_argument("--updates", type=int, default=6)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print("| recipe | plain, s per update | channels-last | speed-up |")
    print("| --- | --- | --- | --- |")
    for recipe in args.recipes:
        seconds = update_seconds(recipe, args.data_dir, args.updates)
        plain, fast = seconds["plain"], seconds["channels-last"]
        print(f"| {recipe} | {plain:.3f} | {fast:.3f} | {plain / fast:.2f}x |", flush=True)


if __name__ == "__main__":
    main()
