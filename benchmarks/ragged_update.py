"""Cost of an RL² PPO update on trials of unequal length: grouped by length against padded.

Maze trials end when the goal is found twice, so a batch of 250 holds trials of ~30 steps
padded to its longest (100-200). ``RL2.update`` cuts each minibatch to its longest trial
and runs the backbone in groups of similar length (``SequenceBackbone.forward_ragged``);
the padded update runs the backbone on the whole minibatch, as before. Both start from the
run's weights and optimiser state on the same sampled batch, alternating, one thread; the
median of ``--repeats`` is reported, with the largest weight difference between the two.
The sampling time printed is one iteration's, whose policy steps only the trials still running
once half of a shard's have ended (``RolloutWorker``).

Run (from the repository root) on a trained run folder, e.g. one of README's maze runs:

    python benchmarks/ragged_update.py runs/lstm-maze runs/snail-maze
"""

from __future__ import annotations

import argparse
import copy
import statistics
import time
from pathlib import Path

import torch

from agents.rl2_agent import RL2Agent
from metarl import runs
from metarl.experiment import for_evaluation, resolve_config
from metarl.registry import get_recipe
from metarl.rollout.worker import concat_batches


def timed_update(
    agent: RL2Agent, batch: dict[str, torch.Tensor], padded: bool
) -> tuple[float, list[torch.Tensor]]:
    """Seconds of one update from the agent's state (left unchanged) and the weights after."""
    policy = copy.deepcopy(agent.policy)
    learner = type(agent.learner)(policy, agent.learner.config)
    learner.load_state_dict(agent.learner.state_dict())
    if padded:
        backbone = policy.backbone
        backbone.forward_ragged = lambda x, lengths: backbone(x)
    start = time.perf_counter()
    learner.update(batch, torch.Generator().manual_seed(0), iteration=0)
    return time.perf_counter() - start, [p.detach() for p in policy.parameters()]


def measure(run: Path, repeats: int) -> None:
    config = resolve_config(for_evaluation(runs.read_run_config(run)))
    agent = get_recipe(config.agent).build(config)
    try:
        checkpoint = runs.load_checkpoint(run)
        agent.load_state_dict(checkpoint["agent"])
        iteration = checkpoint["iteration"]
        shards = agent.iteration_shards(iteration)  # the next iteration's, as training has
        start = time.perf_counter()
        sampled = concat_batches(agent.sampler.sample(agent.policy.state_dict(), shards))
        sampling = time.perf_counter() - start
        batch = {k: torch.as_tensor(v) for k, v in sampled.items()}
        for key in ("mask", "dones", "rewards"):
            batch[key] = batch[key].float()
        lengths = batch["mask"].sum(1)
        times: dict[bool, list[float]] = {False: [], True: []}
        weights: dict[bool, list[torch.Tensor]] = {}
        for _ in range(repeats):
            for padded in (False, True):
                seconds, weights[padded] = timed_update(agent, batch, padded)
                times[padded].append(seconds)
        gap = max(
            (a - b).abs().max().item() for a, b in zip(weights[False], weights[True], strict=True)
        )
        grouped, padded = (statistics.median(times[k]) for k in (False, True))
        print(
            f"{run} ({config.name}, iteration {iteration}): {len(lengths)} trials, "
            f"{batch['mask'].shape[1]} steps padded, {lengths.mean():.1f} on average; "
            f"sampling {sampling:.2f} s; update grouped {grouped:.2f} s, padded {padded:.2f} s "
            f"({padded / grouped:.2f}x); largest weight difference {gap:.2g}"
        )
    finally:
        agent.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+", type=Path, help="run folders with a checkpoint")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    torch.set_num_threads(1)
    for run in args.runs:
        measure(run, args.repeats)


if __name__ == "__main__":
    main()
