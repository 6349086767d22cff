"""Few-shot Omniglot classifiers: ProtoNet, Matching Networks, Relation Networks, SNAIL,
MetaNet and the fine-tune baseline, all on the Conv4 encoder, trained episode by episode.

``learner.kind`` picks the learner; ``protonet-omniglot``, ``matchingnet-omniglot``,
``relationnet-omniglot``, ``snail-omniglot``, ``metanet-omniglot`` and
``finetune-omniglot`` are its configs.
Meta-learners train on episodes of the training classes; the fine-tune baseline trains an
ordinary classifier over all of them instead, and fits a new head on each test episode.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from metarl.backbones import Conv4, parse_block
from metarl.config import TrainConfig, require, require_positive_ints
from metarl.errors import UsageError
from metarl.fewshot.episodes import Episodes, EpisodeSampler, to_float
from metarl.fewshot.omniglot import Splits, load_omniglot
from metarl.fewshot.protocol import episode_accuracy, evaluate_classifier
from metarl.learners.episodic import EpisodicClassifier
from metarl.learners.finetune import FineTuneClassifier
from metarl.learners.maml import Reptile
from metarl.learners.maml_classifier import MAMLClassifier
from metarl.learners.matchingnet import MatchingNet
from metarl.learners.metanet import MetaNet
from metarl.learners.protonet import ProtoNet
from metarl.learners.relationnet import RelationNet
from metarl.learners.snail_classifier import SNAILClassifier

LEARNERS = (
    "protonet",
    "matchingnet",
    "relationnet",
    "snail",
    "finetune",
    "maml",
    "protomaml",
    "reptile",
    "metanet",
)


@dataclasses.dataclass
class DataConfig:
    """Attributes:
    dir: data folder (``null``: ``$METARL_DATA``, else the user cache); ``--data-dir``.
    protocol: ``vinyals`` (1,200 training characters, rotations as classes) or ``lake``
        (background vs evaluation alphabets).
    val_characters: training characters held out for validation.
    image_size: side of the resized images."""

    dir: str | None = None
    protocol: str = "vinyals"
    val_characters: int = 100
    image_size: int = 28

    def __post_init__(self) -> None:
        require(
            self.protocol in ("vinyals", "lake"), "data.protocol", self.protocol, "vinyals or lake"
        )
        require(self.val_characters >= 1, "data.val_characters", self.val_characters, ">= 1")
        require(self.image_size >= 16, "data.image_size", self.image_size, "an integer >= 16")


@dataclasses.dataclass
class EpisodeConfig:
    """Training episodes (unused by ``finetune``).

    Attributes:
        ways, shots, queries: N classes, K support and Q query images per class.
        meta_batch: episodes per update.
        vary_shots: draw each update's K uniformly from 1..shots, so that one model
            serves every shot count up to ``shots``."""

    ways: int = 60
    shots: int = 5
    queries: int = 5
    meta_batch: int = 1
    vary_shots: bool = False

    def __post_init__(self) -> None:
        require_positive_ints(self, "episodes", ("ways", "shots", "queries", "meta_batch"))


@dataclasses.dataclass
class LearnerConfig:
    """The classifier: a Conv4 encoder and the learner named by ``kind``.

    Attributes:
        kind: protonet, matchingnet, relationnet, snail, finetune, maml, protomaml,
            reptile or metanet.
        channels: Conv4 width.
        fce: Matching Networks' Full Context Embeddings on or off.
        fce_steps: processing steps of the attention LSTM over the support set.
        cosine_scale: Matching Networks' factor on cosine similarities (1 in the paper).
        relation_hidden: width of the Relation Network's hidden layer.
        blocks: SNAIL's blocks, each ``"tc FILTERS"`` or ``"attention KEY VALUE"``.
        max_ways, max_shots: largest episodes SNAIL reads (its label width, sequence length);
            ``max_ways`` is also the width of MAML's learned head and MetaNet's output layer.
        inner_lr, inner_steps, first_order: the inner step size, the number of steps, and
            MAML's first-order switch (maml, protomaml, reptile).
        outer_lr: Reptile's β, scaled by the learning-rate schedule.
        pretrain_batch: images per update of the fine-tune baseline's pre-training.
        head_steps, head_lr: the fine-tune baseline's per-episode head fitting.
        base_hidden, key_size, generator_hidden: MetaNet's hidden augmented layer of the base
            learner, memory key width (u's output) and width of the generators m and d."""

    kind: str = "protonet"
    channels: int = 64
    fce: bool = True
    fce_steps: int = 5
    cosine_scale: float = 1.0
    relation_hidden: int = 8
    blocks: list[str] = dataclasses.field(
        default_factory=lambda: ["attention 64 32", "tc 128", "attention 256 128", "tc 128"]
    )
    max_ways: int = 5
    max_shots: int = 5
    pretrain_batch: int = 128
    head_steps: int = 100
    head_lr: float = 0.01
    inner_lr: float = 0.4
    inner_steps: int = 1
    first_order: bool = False
    outer_lr: float = 1.0
    base_hidden: int = 64
    key_size: int = 64
    generator_hidden: int = 20

    def __post_init__(self) -> None:
        require(self.kind in LEARNERS, "learner.kind", self.kind, " or ".join(LEARNERS))
        require_positive_ints(
            self,
            "learner",
            ("channels", "fce_steps", "relation_hidden", "max_ways", "max_shots")
            + ("pretrain_batch", "head_steps", "inner_steps")
            + ("base_hidden", "key_size", "generator_hidden"),
        )
        require(self.cosine_scale > 0, "learner.cosine_scale", self.cosine_scale, "> 0")
        require(self.inner_lr > 0, "learner.inner_lr", self.inner_lr, "a positive number")
        require(self.outer_lr > 0, "learner.outer_lr", self.outer_lr, "a positive number")
        for i, text in enumerate(self.blocks):
            try:
                parse_block(text)
            except ValueError:
                require(False, f"learner.blocks[{i}]", text, "'tc N' or 'attention KEY VALUE'")


@dataclasses.dataclass
class OptimConfig:
    """Adam, with the learning rate multiplied by ``decay`` every ``decay_every`` updates.

    Attributes:
        lr: initial learning rate.
        decay_every: updates between decays.
        decay: the factor."""

    lr: float = 1e-3
    decay_every: int = 2000
    decay: float = 0.5

    def __post_init__(self) -> None:
        require(self.lr > 0, "optim.lr", self.lr, "a positive number")
        require(self.decay_every >= 1, "optim.decay_every", self.decay_every, ">= 1")
        require(0 < self.decay <= 1, "optim.decay", self.decay, "a number in (0, 1]")


@dataclasses.dataclass
class EvalConfig:
    """Attributes:
    episodes: test episodes (``metarl eval --episodes``).
    ways, shots: the test setting (``metarl eval --ways --shots``).
    queries: query images per class.
    seed: seeds the test episodes: every run is measured on the same ones.
    val_every: updates between validation measurements during training.
    val_episodes: episodes per validation measurement."""

    episodes: int = 1000
    ways: int = 5
    shots: int = 1
    queries: int = 15
    seed: int = 2_147_483_647
    val_every: int = 500
    val_episodes: int = 100

    def __post_init__(self) -> None:
        keys = ("episodes", "ways", "shots", "queries", "val_every", "val_episodes")
        require_positive_ints(self, "eval", keys)
        require(self.episodes >= 2, "eval.episodes", self.episodes, "an integer >= 2")


@dataclasses.dataclass
class Config:
    """A few-shot Omniglot experiment.

    Attributes:
        name: experiment name.
        agent: ``fewshot-omniglot``.
        seed: seeds the weights and every iteration's episodes.
    """

    name: str
    agent: str
    seed: int = 0
    data: DataConfig = dataclasses.field(default_factory=DataConfig)
    episodes: EpisodeConfig = dataclasses.field(default_factory=EpisodeConfig)
    learner: LearnerConfig = dataclasses.field(default_factory=LearnerConfig)
    optim: OptimConfig = dataclasses.field(default_factory=OptimConfig)
    train: TrainConfig = dataclasses.field(default_factory=TrainConfig)
    eval: EvalConfig = dataclasses.field(default_factory=EvalConfig)


def build_model(learner: LearnerConfig, image_size: int, train_classes: int) -> EpisodicClassifier:
    """The classifier named by ``learner.kind`` on a fresh Conv4 encoder."""
    width = learner.channels
    if learner.kind == "relationnet":
        return RelationNet(
            Conv4(hidden=width, pooled_blocks=2), image_size, learner.relation_hidden
        )
    encoder = Conv4(hidden=width)
    size = encoder.out_features(image_size)
    if learner.kind == "protonet":
        return ProtoNet(encoder)
    if learner.kind == "matchingnet":
        return MatchingNet(
            encoder, size, learner.fce, learner.fce_steps, cosine_scale=learner.cosine_scale
        )
    if learner.kind in ("maml", "protomaml", "reptile"):  # Reptile adapts as MAML does
        return MAMLClassifier(
            encoder,
            size,
            learner.max_ways,
            learner.inner_lr,
            learner.inner_steps,
            learner.first_order or learner.kind == "reptile",
            proto_head=learner.kind == "protomaml",
        )
    if learner.kind == "metanet":
        return MetaNet(
            encoder,
            Conv4(hidden=width),
            size,
            learner.max_ways,
            learner.base_hidden,
            learner.key_size,
            learner.generator_hidden,
        )
    if learner.kind == "snail":
        blocks = [parse_block(b) for b in learner.blocks]
        return SNAILClassifier(encoder, size, learner.max_ways, learner.max_shots, blocks)
    return FineTuneClassifier(encoder, size, train_classes, learner.head_steps, learner.head_lr)


class TrainedClassifier:
    """What every Omniglot classifier agent holds: the splits, the model, Adam with a step
    learning-rate schedule, the last validation accuracy, and their checkpoint.

    Args:
        config: the experiment, with ``data``, ``optim`` and ``seed``.
        build: makes the model (after seeding torch) from the loaded splits.
        progress: show the loader's progress bar.
    """

    def __init__(
        self, config: Any, build: Callable[[Splits], torch.nn.Module], progress: bool
    ) -> None:
        self.config = config
        data = config.data
        self.splits = load_omniglot(
            data.dir,
            protocol=data.protocol,
            val_characters=data.val_characters,
            image_size=data.image_size,
            progress=progress,
        )
        torch.manual_seed(config.seed)
        self.model = build(self.splits)
        self.optimizer = torch.optim.Adam(self.model.parameters(), lr=config.optim.lr)
        self.schedule = torch.optim.lr_scheduler.StepLR(
            self.optimizer, config.optim.decay_every, config.optim.decay
        )
        self.val_accuracy = float("nan")

    def state_dict(self) -> dict[str, Any]:
        return {
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "schedule": self.schedule.state_dict(),
            "val_accuracy": self.val_accuracy,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.schedule.load_state_dict(state["schedule"])
        self.val_accuracy = state["val_accuracy"]

    def close(self) -> None:
        pass


class FewShotAgent(TrainedClassifier):
    """Trains a few-shot classifier on Omniglot's training classes, validates on held-out
    training characters and is measured on the test classes."""

    headline = "accuracy"

    def __init__(self, config: Config, progress: bool = True) -> None:
        image_size = config.data.image_size
        super().__init__(
            config,
            lambda splits: build_model(config.learner, image_size, len(splits.train)),
            progress,
        )
        episodes = config.episodes
        if config.learner.kind != "finetune":
            self.sampler = EpisodeSampler(
                self.splits.train, episodes.ways, episodes.shots, episodes.queries, "train"
            )
        self._validation_checked = False
        if config.learner.kind == "reptile":
            learner = config.learner
            self.reptile = Reptile(
                self.model.net, learner.inner_lr, learner.inner_steps, learner.outer_lr
            )

    def train_iteration(self, iteration: int) -> dict[str, float]:
        cfg = self.config
        if not self._validation_checked:  # validation comes far into training: check it now
            ev = cfg.eval
            EpisodeSampler(self.splits.val, ev.ways, ev.shots, ev.queries, "validation")
            self._validation_checked = True
        rng = np.random.default_rng([cfg.seed, iteration])
        self.model.train()
        if cfg.learner.kind == "finetune":
            loss, accuracy, samples = self._pretrain_step(rng)
        else:
            episodes = cfg.episodes
            shots = int(rng.integers(1, episodes.shots + 1)) if episodes.vary_shots else None
            batch = self.sampler.sample(rng, episodes.meta_batch, shots)
            samples = episodes.meta_batch
        if cfg.learner.kind == "reptile":
            loss, accuracy = self._reptile_step(batch)
        elif cfg.learner.kind != "finetune":
            logits = self.model(batch.support_x, batch.support_y, batch.query_x, batch.ways)
            loss = self.model.loss(logits, batch.query_y)
            accuracy = float(episode_accuracy(logits, batch.query_y).mean())
        self.optimizer.zero_grad()
        if cfg.learner.kind != "reptile":  # Reptile moved θ itself; Adam sees no gradient
            loss.backward()
        self.optimizer.step()
        self.schedule.step()
        if (iteration + 1) % cfg.eval.val_every == 0:
            self.val_accuracy = self._validate()
        return {
            "accuracy": accuracy,
            "env_steps": samples,
            "loss": loss.item(),
            "val_accuracy": self.val_accuracy,
            "lr": self.schedule.get_last_lr()[0],
        }

    def _reptile_step(self, batch: Episodes) -> tuple[torch.Tensor, float]:
        """Reptile: adapt to all of each task's images, move θ toward the mean result; the
        step size β follows the learning-rate schedule. Returns the adapted loss, accuracy."""
        x = torch.cat([batch.support_x, batch.query_x], 1)
        y = torch.cat([batch.support_y, batch.query_y], 1)
        forward, ways = self.model.maml, batch.ways
        adapted, losses, hits = [], [], []
        for xi, yi in zip(x, y, strict=True):
            phi = self.reptile.adapt(
                lambda p, xi=xi, yi=yi: F.cross_entropy(forward(p, xi)[:, :ways], yi)
            )
            adapted.append(phi)
            with torch.no_grad():
                logits = forward(phi, xi)[:, :ways]
                losses.append(F.cross_entropy(logits, yi))
                hits.append((logits.argmax(-1) == yi).float().mean())
        self.reptile.outer_lr = self.config.learner.outer_lr * (
            self.schedule.get_last_lr()[0] / self.config.optim.lr
        )
        self.reptile.update(adapted)
        return torch.stack(losses).mean(), float(torch.stack(hits).mean())

    def _pretrain_step(self, rng: np.random.Generator) -> tuple[torch.Tensor, float, int]:
        """One supervised update over all training classes (the fine-tune baseline)."""
        images = self.splits.train
        size = self.config.learner.pretrain_batch
        classes = rng.integers(len(images), size=size)
        x = to_float(images[classes, rng.integers(images.shape[1], size=size)]).unsqueeze(1)
        y = torch.from_numpy(classes)
        logits = self.model.pretrain_logits(x)
        accuracy = float((logits.argmax(-1) == y).float().mean())
        return torch.nn.functional.cross_entropy(logits, y), accuracy, size

    def _validate(self) -> float:
        ev = self.config.eval
        report = evaluate_classifier(
            self.model,
            self.splits.val,
            ways=ev.ways,
            shots=ev.shots,
            queries=ev.queries,
            episodes=ev.val_episodes,
            seed=ev.seed,  # the same validation episodes every time
            curve_episodes=0,
        )
        return report["value"]

    def evaluate(self, episodes: int) -> dict[str, Any]:
        """Accuracy on test episodes of the ``eval`` setting, with the baselines."""
        ev, learner = self.config.eval, self.config.learner
        if learner.kind == "snail" and (ev.ways > learner.max_ways or ev.shots > learner.max_shots):
            raise UsageError(
                f"this SNAIL classifier reads at most {learner.max_ways}-way "
                f"{learner.max_shots}-shot episodes, got {ev.ways}-way {ev.shots}-shot"
            )
        if learner.kind == "metanet" and ev.ways > learner.max_ways:
            raise UsageError(f"this MetaNet has {learner.max_ways} outputs, got {ev.ways} ways")
        return evaluate_classifier(
            self.model,
            self.splits.test,
            ways=ev.ways,
            shots=ev.shots,
            queries=ev.queries,
            episodes=episodes,
            seed=ev.seed,
        )


def build(config: Config) -> FewShotAgent:
    return FewShotAgent(config)


def load_classifier(config: Config, state: dict[str, Any]) -> EpisodicClassifier:
    """The trained classifier of a checkpoint's agent ``state`` (for ``metarl.classify``)."""
    weights = state["model"]
    classes = weights["classifier.weight"].shape[0] if "classifier.weight" in weights else 0
    model = config.learner.build(config.data.image_size, classes)
    model.load_state_dict(weights)
    return model
