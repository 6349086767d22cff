"""``online-omniglot``: Santoro et al. 2016's one-shot protocol, labels shown one step late.

Each episode shows ``ways`` Omniglot classes ``instances`` times each, in random order, with
labels drawn afresh; the learner is an image encoder (Conv4 with layer norm, so that no
step sees a later image; or the paper's flattened pixels), a sequence backbone
(``model.backbone``: MANN, LSTM or SNAIL, the same classes as the RL agents' policies) and
a linear head, trained by cross-entropy on every step.
``mann-omniglot`` is its config; its LSTM baseline is ``--set model.backbone=lstm``.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from agents.fewshot_omniglot import DataConfig, OptimConfig, TrainedClassifier
from metarl.backbones import Conv4
from metarl.backbones.config import ModelConfig
from metarl.config import TrainConfig, require, require_positive_ints
from metarl.errors import UsageError
from metarl.eval.paired import per_task, task_fingerprint
from metarl.eval.stats import mean_ci95
from metarl.fewshot.episodes import EpisodeSampler
from metarl.fewshot.protocol import FewShotEvalConfig
from metarl.learners.sequence_classifier import SequenceClassifier, accuracy_by_instance

REPORTED_INSTANCES = (1, 2, 3, 4, 5, 10)  # the columns of Santoro et al.'s Table 1
ENCODERS = ("conv4", "pixels")


@dataclasses.dataclass
class EpisodeConfig:
    """Attributes:
    ways: classes per episode (5 or 15 in the paper); also the label width.
    instances: showings of each class per episode (10 in the paper).
    meta_batch: episodes per update."""

    ways: int = 5
    instances: int = 10
    meta_batch: int = 16

    def __post_init__(self) -> None:
        require_positive_ints(self, "episodes", ("ways", "instances", "meta_batch"))


@dataclasses.dataclass
class EvalConfig(FewShotEvalConfig):
    """:class:`~metarl.fewshot.protocol.FewShotEvalConfig` with ``ways`` at most
    ``episodes.ways`` (the model's label width), validating (2nd-instance accuracy) every 250
    updates."""

    val_every: int = 250


@dataclasses.dataclass
class Config:
    """An online few-shot Omniglot experiment.

    Attributes:
        name: experiment name.
        agent: ``online-omniglot``.
        seed: seeds the weights and every iteration's episodes.
        encoder: ``conv4`` or ``pixels`` (each image's pixels flattened, as Santoro et al.
            fed 20 x 20 images: set ``data.image_size: 20``).
        channels: Conv4 encoder width.
    """

    name: str
    agent: str
    seed: int = 0
    encoder: str = "conv4"
    channels: int = 64
    data: DataConfig = dataclasses.field(default_factory=DataConfig)
    episodes: EpisodeConfig = dataclasses.field(default_factory=EpisodeConfig)
    model: ModelConfig = dataclasses.field(default_factory=lambda: ModelConfig(backbone="mann"))
    optim: OptimConfig = dataclasses.field(default_factory=OptimConfig)
    train: TrainConfig = dataclasses.field(default_factory=TrainConfig)
    eval: EvalConfig = dataclasses.field(default_factory=EvalConfig)

    def __post_init__(self) -> None:
        require(self.encoder in ENCODERS, "encoder", self.encoder, " or ".join(ENCODERS))
        require_positive_ints(self, "", ("channels",))
        require(
            self.eval.ways <= self.episodes.ways,
            "eval.ways",
            self.eval.ways,
            f"at most episodes.ways ({self.episodes.ways}), the model's label width",
        )


def build_model(config: Config) -> SequenceClassifier:
    """The encoder, the configured backbone over (embedding, previous label), a linear head.

    The Conv4 encoder normalises each image on its own (layer norm, ``Conv4(norm="layer")``):
    batch norm in training would normalise over every image of the sequence, so the
    prediction at step t would depend on images not yet shown (look-ahead), and running
    statistics alone would leave training unnormalised. Per-image normalisation is causal,
    and the same in training and at test."""
    size = config.data.image_size
    encoder: nn.Module
    if config.encoder == "pixels":
        encoder, width = nn.Flatten(start_dim=-3), size * size
    else:
        conv = Conv4(hidden=config.channels, norm="layer")
        encoder, width = conv, conv.out_features(size)
    ways, length = config.episodes.ways, config.episodes.ways * config.episodes.instances
    return SequenceClassifier(encoder, config.model.build(width + ways, length), ways)


class OnlineOmniglotAgent(TrainedClassifier):
    """Trains on episodes of the training classes, validates on held-out characters and is
    measured on the test classes."""

    headline = "accuracy_2nd"
    step_unit = "episodes"  # what a training update counts (metrics.csv), as in the paper

    def __init__(self, config: Config, progress: bool = True) -> None:
        super().__init__(config, lambda splits: build_model(config), progress)
        episodes = config.episodes
        self.sampler = self._sampler(self.images["train"], episodes.ways, "train")
        self._sampler(self.images["val"], config.eval.ways, "validation")  # fail now, not later

    def _sampler(self, images: torch.Tensor, ways: int, split: str) -> EpisodeSampler:
        return EpisodeSampler(images, ways, self.config.episodes.instances, 0, split)

    def train_iteration(self, iteration: int) -> dict[str, float]:
        cfg = self.config
        rng = np.random.default_rng([cfg.seed, iteration])
        batch = self.sampler.sample(rng, cfg.episodes.meta_batch)
        self.model.train()
        logits = self.model(batch.support_x, batch.support_y, batch.ways)
        loss = F.cross_entropy(logits.flatten(0, 1), batch.support_y.flatten())
        self.optimizer.zero_grad()
        loss.backward()
        self.optimizer.step()
        self.schedule.step()
        by_instance = accuracy_by_instance(logits.detach(), batch.support_y, batch.ways)
        if (iteration + 1) % cfg.eval.val_every == 0:
            accuracy, _ = self._accuracy(self.images["val"], cfg.eval.val_episodes)
            self.val_accuracy = accuracy[:, 1].mean()
        return {
            "accuracy": float(by_instance[1:].mean()),
            "accuracy_1st": float(by_instance[0]),
            "accuracy_2nd": float(by_instance[1]),
            "val_accuracy": float(self.val_accuracy),
            self.step_unit: len(batch.support_y),
            "loss": loss.item(),
            "lr": self.schedule.get_last_lr()[0],
        }

    @torch.no_grad()
    def _accuracy(self, images: torch.Tensor, episodes: int) -> tuple[np.ndarray, int]:
        """Per-episode accuracy by instance (episodes, instances) on seeded episodes, and
        the episodes' :func:`task_fingerprint` (of their images and labels, in order)."""
        ways = self.config.eval.ways
        sampler = self._sampler(images, ways, "test")
        rng = np.random.default_rng(self.config.eval.seed)
        self.model.eval()
        rows, fingerprint = [], 0
        for start in range(0, episodes, 50):
            batch = sampler.sample(rng, min(50, episodes - start))
            fingerprint = task_fingerprint(
                batch.support_x.cpu().numpy(), batch.support_y.cpu().numpy(), start=fingerprint
            )
            logits = self.model(batch.support_x, batch.support_y, ways)
            rows += [
                accuracy_by_instance(lg[None], y[None], ways).cpu().numpy()
                for lg, y in zip(logits, batch.support_y, strict=True)
            ]
        return np.stack(rows), fingerprint

    def evaluate(self, episodes: int) -> dict[str, Any]:
        """Accuracy by instance on test episodes; ``value`` is the 2nd instance's."""
        ev, instances = self.config.eval, self.config.episodes.instances
        if ev.ways > self.config.episodes.ways:
            raise UsageError(
                f"this model reads at most {self.config.episodes.ways} classes, got {ev.ways}"
            )
        accuracy, fingerprint = self._accuracy(self.images["test"], episodes)
        scores = accuracy[:, 1] if instances > 1 else accuracy[:, 0]
        value, ci95 = mean_ci95(scores)
        x = [i for i in REPORTED_INSTANCES if i <= instances]
        return {
            "metric": "accuracy",
            "higher_is_better": True,
            "value": value,
            "ci95": ci95,
            "episodes": episodes,
            "ways": ev.ways,
            "instances": instances,
            "curve_of": "instance",
            "baselines": {"chance": 1.0 / ev.ways},
            "curve": {
                "x": x,
                "agent": [float(accuracy[:, i - 1].mean()) for i in x],
                "chance": [1.0 / ev.ways] * len(x),
            },
            **per_task(scores, fingerprint),  # per test episode: metarl compare
        }


def build(config: Config) -> OnlineOmniglotAgent:
    return OnlineOmniglotAgent(config)
