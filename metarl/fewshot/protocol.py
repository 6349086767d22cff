"""The few-shot evaluation protocol: accuracy over fixed test episodes with a 95% interval.

Every learner is measured on the same episodes (drawn from ``seed``), beside two
baselines measured on those episodes too: chance (``1 / ways``) and a nearest neighbour
in pixel space. The adaptation curve, on the first ``curve_episodes`` episodes, is the
accuracy after 0, 1, ..., k inner gradient steps for learners that adapt by gradient steps
(those with a ``logits_by_step`` method), and otherwise the accuracy with 1, 2, ..., K
support images per class.
"""

from __future__ import annotations

import collections
import copy
import dataclasses
import threading
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

import numpy as np
import torch
from torch import Tensor

from metarl.config import EvalConfig, require_positive, require_positive_ints
from metarl.eval.paired import gains, paired, per_task, task_fingerprint
from metarl.eval.stats import mean_ci95
from metarl.fewshot.episodes import Episodes, EpisodeSampler
from metarl.learners.episodic import EpisodicClassifier


@dataclasses.dataclass
class FewShotEvalConfig(EvalConfig):
    """The evaluation settings of a few-shot experiment, adding to :class:`EvalConfig`:

    Attributes:
        ways: classes per test episode (``metarl eval --ways``).
        val_every: updates between validation measurements during training.
        val_episodes: episodes per validation measurement.
    """

    ways: int = 5
    val_every: int = 500
    val_episodes: int = 100

    def __post_init__(self) -> None:
        super().__post_init__()
        require_positive_ints(self, "eval", ("ways", "val_every", "val_episodes"))


def episode_accuracy(logits: Tensor, query_y: Tensor) -> Tensor:
    """Fraction of correctly labelled queries in each episode: (B, M, N), (B, M) -> (B,)."""
    return (logits.argmax(-1) == query_y).float().mean(-1)


def pixel_nn_logits(episodes: Episodes) -> Tensor:
    """Logits of the 1-nearest-neighbour classifier in pixel space (L2): the negative
    distance to the closest support image of each class."""
    support = episodes.support_x.flatten(2)
    distances = torch.cdist(episodes.query_x.flatten(2), support)  # (B, M, S)
    onehot = torch.nn.functional.one_hot(episodes.support_y, episodes.ways).bool()
    masked = distances.unsqueeze(-1).masked_fill(~onehot.unsqueeze(1), float("inf"))
    return -masked.amin(2)


@dataclasses.dataclass
class _Measured:
    """What one batch of test episodes gave: accuracies per inner step (B, steps + 1), or
    ``None`` outside the curve, and per shot count the agent's and pixel-NN's (B,)."""

    steps: Tensor | None
    agent: dict[int, Tensor]
    pixel: dict[int, Tensor]


def _measure(
    model: EpisodicClassifier, full: Episodes, in_curve: bool, shot_counts: list[int]
) -> _Measured:
    """Accuracies of one batch of episodes with all of its support images (``shots``), and
    inside the curve also with fewer, or after each inner step."""
    shots = full.shots
    every: list[Tensor] = []
    steps = None
    if in_curve and hasattr(model, "logits_by_step"):
        every = model.logits_by_step(full.support_x, full.support_y, full.query_x, full.ways)
        steps = torch.stack([episode_accuracy(x, full.query_y) for x in every], 1)
    agent, pixel = {}, {}
    for k in shot_counts:
        if k < shots and not in_curve:
            continue
        part = full.with_shots(k)
        # the curve's last point is the adapted model's output: not computed twice
        logits = (
            every[-1] if every else model(part.support_x, part.support_y, part.query_x, part.ways)
        )
        agent[k] = episode_accuracy(logits, part.query_y)
        pixel[k] = episode_accuracy(pixel_nn_logits(part), part.query_y)
    return _Measured(steps, agent, pixel)


@torch.no_grad()
def evaluate_classifier(
    model: EpisodicClassifier,
    images: np.ndarray | Tensor,
    *,
    ways: int,
    shots: int,
    queries: int,
    episodes: int,
    seed: int,
    batch: int | None = None,
    curve_episodes: int = 200,
    workers: int = 1,
) -> dict[str, Any]:
    """Accuracy of ``model`` and the baselines on ``episodes`` test episodes.

    Args:
        model: the classifier, evaluated in ``eval()`` mode.
        images: the test split, uint8 (classes, drawings, H, W), on the model's device
            (a NumPy array: the CPU).
        ways, shots, queries: the episodes' N, K and queries per class.
        episodes: number of test episodes.
        seed: seeds the episodes: equal seeds give every learner the same episodes.
        batch: episodes per forward pass (default: about 400 queries' worth, which keeps
            the (class, query) pairs of a Relation Network in memory).
        curve_episodes: episodes measured at every shot count (or inner step) for the
            adaptation curve.
        workers: threads measuring batches of episodes at once, each on its own copy of
            the model (torch runs operations outside Python's lock, so with one intra-op
            thread each they fill as many cores). The report does not depend on it: the
            batches, and what a model does with each, are the same.

    Returns:
        the fewshot fields of ``eval.json`` (DESIGN.md).
    """
    workers = require_positive("evaluate_classifier", "workers", workers)
    sampler = EpisodeSampler(images, ways, shots, queries, "test")
    batch = batch or max(1, 400 // (ways * queries))
    rng = np.random.default_rng(seed)
    by_step = hasattr(model, "logits_by_step")
    shot_counts = [shots] if by_step else list(range(1, shots + 1))
    was_training = model.training
    model.eval()
    copies = threading.local()

    def measure(full: Episodes, in_curve: bool) -> _Measured:
        if workers > 1 and not hasattr(copies, "model"):
            copies.model = copy.deepcopy(model)
        with torch.no_grad():  # grad mode is per thread
            return _measure(getattr(copies, "model", model), full, in_curve, shot_counts)

    results: list[_Measured] = []
    fingerprint = 0  # of the episodes' images and labels, in order: equal for equal tasks
    try:
        with ThreadPoolExecutor(workers) as pool:
            pending: collections.deque[Future[_Measured]] = collections.deque()
            for start in range(0, episodes, batch):
                full = sampler.sample(rng, min(batch, episodes - start))
                tensors = (full.support_x, full.support_y, full.query_x, full.query_y)
                for episode in zip(*(t.cpu().numpy() for t in tensors), strict=True):
                    fingerprint = task_fingerprint(*episode, start=fingerprint)
                pending.append(pool.submit(measure, full, start < curve_episodes))
                while len(pending) > 2 * workers:  # only a few batches drawn ahead
                    results.append(pending.popleft().result())
            results += [future.result() for future in pending]
    finally:
        model.train(was_training)
    steps = [r.steps for r in results if r.steps is not None]
    agent = {k: [r.agent[k] for r in results if k in r.agent] for k in shot_counts}
    pixel = {k: [r.pixel[k] for r in results if k in r.pixel] for k in shot_counts}
    agent_acc, pixel_acc = (torch.cat(s[shots]).cpu().numpy() for s in (agent, pixel))
    value, ci95 = mean_ci95(agent_acc)
    pixel_value, pixel_ci95 = mean_ci95(pixel_acc)

    def curve(series: dict[int, list[Tensor]]) -> list[float]:
        return [
            float(torch.cat(series[k])[:curve_episodes].mean()) if series[k] else float("nan")
            for k in shot_counts
        ]

    report = {
        "metric": "accuracy",
        "higher_is_better": True,
        "value": value,
        "ci95": ci95,
        "episodes": episodes,
        "ways": ways,
        "shots": shots,
        "queries": queries,
        "baselines": {"chance": 1.0 / ways, "pixel_nn": pixel_value},
        "baselines_ci95": {"chance": 0.0, "pixel_nn": pixel_ci95},
        "paired": {  # per test episode, agent minus baseline
            "chance": paired(agent_acc, np.full_like(agent_acc, 1.0 / ways), True),
            "pixel_nn": paired(agent_acc, pixel_acc, True),
        },
        **per_task(agent_acc, fingerprint),  # per test episode: metarl compare
        "curve_of": "shots",
        "curve": {
            "x": shot_counts,
            "agent": curve(agent),
            "pixel_nn": curve(pixel),
            "chance": [1.0 / ways] * shots,
        },
    }
    if steps:
        by_episode = torch.cat(steps)[:curve_episodes].cpu()
        points = by_episode.shape[1]
        x = list(getattr(model, "curve_steps", range(points)))  # the steps measured
        report["curve_of"] = "inner_steps"
        report["gains"] = gains(by_episode.numpy(), x[1:])
        report["curve"] = {
            "x": x,
            "agent": by_episode.mean(0).tolist(),
            "pixel_nn": curve(pixel) * points,
            "chance": [1.0 / ways] * points,
        }
    return report
