"""Few-shot Omniglot classifiers: ProtoNet, Matching Networks, Relation Networks, SNAIL,
MAML, Proto-MAML, Reptile, MetaNet and the fine-tune baseline, all on the Conv4 encoder.

``learner.kind`` picks the learner; its options class (:data:`LEARNERS`) holds that kind's
keys, builds its classifier and chooses its training update, once. The configs are
``KIND-omniglot`` for each kind (``fomaml-omniglot``: MAML, first order).
Meta-learners train on episodes of the training classes; the fine-tune baseline trains an
ordinary classifier over all of them instead, and fits a new head on each test episode.
"""

from __future__ import annotations

import contextlib
import dataclasses
import typing
from collections.abc import Callable
from typing import Any, ClassVar

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from metarl.allocator import keep_freed_memory
from metarl.amp import MixedPrecision, check_amp
from metarl.backbones import Conv4, parse_block
from metarl.backbones.conv4 import DOWNSAMPLING, prefer_channels_last
from metarl.config import TrainConfig as BaseTrainConfig
from metarl.config import is_positive_int, require, require_positive_ints
from metarl.devices import torch_threads, usable_cpus
from metarl.errors import ConfigError, UsageError
from metarl.fewshot.episodes import Episodes, EpisodeSampler, to_float
from metarl.fewshot.omniglot import Splits, load_omniglot
from metarl.fewshot.protocol import (
    FewShotEvalConfig,
    episode_accuracy,
    evaluate_classifier,
)
from metarl.learners.episodic import EpisodicClassifier
from metarl.learners.finetune import FineTuneClassifier
from metarl.learners.maml import Params, Reptile
from metarl.learners.maml_classifier import EpisodeThreads, MAMLClassifier
from metarl.learners.matchingnet import MatchingNet
from metarl.learners.metanet import MetaNet
from metarl.learners.protonet import ProtoNet
from metarl.learners.relationnet import RelationNet
from metarl.learners.reptile_classifier import ReptileClassifier, TaskThreads
from metarl.learners.snail_classifier import SNAILClassifier


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
        require_positive_ints(self, "data", ("val_characters",))
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
class LearnerOptions:
    """What every learner has: its kind and a Conv4 encoder. Each kind's options class adds
    its own keys and builds its classifier; a config's ``learner`` section holds ``kind`` and
    that kind's keys only, and so does a run's ``config.yaml``.

    Attributes:
        kind: the learner, a key of :data:`LEARNERS`.
        channels: Conv4 width."""

    kind: str
    channels: int = 64

    step_unit: ClassVar[str] = "episodes"  # what a training update counts (metrics.csv)

    def __post_init__(self) -> None:
        kinds = [kind for kind, options in LEARNERS.items() if options is type(self)]
        require(self.kind in kinds, "learner.kind", self.kind, " or ".join(kinds))
        hints = typing.get_type_hints(type(self))
        counts = tuple(f.name for f in dataclasses.fields(self) if hints[f.name] is int)
        require_positive_ints(self, "learner", counts)  # every integer option is a count

    def build(self, image_size: int, train_classes: int) -> EpisodicClassifier:
        """A fresh classifier for images of side ``image_size`` (``train_classes``: the
        classes of pre-training, used by the fine-tune baseline only)."""
        raise NotImplementedError

    def check_setting(self, ways: int, shots: int) -> None:
        """UsageError when the classifier cannot read ``ways``-way ``shots``-shot episodes."""

    def channels_last(self) -> bool:
        """Whether the classifier runs channels-last on the CPU (:func:`prefer_channels_last`):
        faster wherever no second-order gradient flows through Conv4."""
        return True

    def update(self, agent: FewShotAgent) -> Update:
        """The training update: the query loss's gradient on episodes, unless overridden."""
        return EpisodeUpdate(agent)


@dataclasses.dataclass
class ProtoNetOptions(LearnerOptions):
    """Prototypical Networks (Snell et al. 2017): no options beyond the encoder."""

    kind: str = "protonet"

    def build(self, image_size: int, train_classes: int) -> EpisodicClassifier:
        return ProtoNet(Conv4(hidden=self.channels))


@dataclasses.dataclass
class MatchingNetOptions(LearnerOptions):
    """Matching Networks (Vinyals et al. 2016).

    Attributes:
        fce: Full Context Embeddings on or off.
        fce_steps: processing steps of the attention LSTM over the support set.
        cosine_scale: factor on cosine similarities (1 in the paper)."""

    kind: str = "matchingnet"
    fce: bool = True
    fce_steps: int = 5
    cosine_scale: float = 1.0

    def __post_init__(self) -> None:
        super().__post_init__()
        require(self.cosine_scale > 0, "learner.cosine_scale", self.cosine_scale, "> 0")

    def build(self, image_size: int, train_classes: int) -> EpisodicClassifier:
        encoder = Conv4(hidden=self.channels)
        size = encoder.out_features(image_size)
        return MatchingNet(encoder, size, self.fce, self.fce_steps, self.cosine_scale)


@dataclasses.dataclass
class RelationNetOptions(LearnerOptions):
    """Relation Networks (Sung et al. 2018) on a Conv4 pooling in its first 2 blocks.

    Attributes:
        relation_hidden: width of the relation module's hidden layer."""

    kind: str = "relationnet"
    relation_hidden: int = 8

    def build(self, image_size: int, train_classes: int) -> EpisodicClassifier:
        encoder = Conv4(hidden=self.channels, pooled_blocks=2)
        return RelationNet(encoder, image_size, self.relation_hidden)


@dataclasses.dataclass
class SNAILOptions(LearnerOptions):
    """SNAIL as a few-shot classifier (Mishra et al. 2018).

    Attributes:
        blocks: its blocks, each ``"tc FILTERS"`` or ``"attention KEY VALUE"``.
        max_ways, max_shots: the largest episodes it reads (its label width and sequence
            length)."""

    kind: str = "snail"
    blocks: list[str] = dataclasses.field(
        default_factory=lambda: ["attention 64 32", "tc 128", "attention 256 128", "tc 128"]
    )
    max_ways: int = 5
    max_shots: int = 5

    def __post_init__(self) -> None:
        super().__post_init__()
        for i, text in enumerate(self.blocks):
            try:
                parse_block(text)
            except ValueError:
                require(False, f"learner.blocks[{i}]", text, "'tc N' or 'attention KEY VALUE'")

    def build(self, image_size: int, train_classes: int) -> EpisodicClassifier:
        encoder = Conv4(hidden=self.channels)
        size = encoder.out_features(image_size)
        blocks = [parse_block(b) for b in self.blocks]
        return SNAILClassifier(encoder, size, self.max_ways, self.max_shots, blocks)

    def check_setting(self, ways: int, shots: int) -> None:
        if ways > self.max_ways or shots > self.max_shots:
            raise UsageError(
                f"this SNAIL classifier reads at most {self.max_ways}-way "
                f"{self.max_shots}-shot episodes, got {ways}-way {shots}-shot"
            )


@dataclasses.dataclass
class FineTuneOptions(LearnerOptions):
    """The fine-tune baseline: pre-train a classifier over all training classes, then fit a
    new linear head on each test episode's support set.

    Attributes:
        pretrain_batch: images per pre-training update.
        head_steps, head_lr: Adam steps and learning rate of each episode's head."""

    kind: str = "finetune"
    pretrain_batch: int = 128
    head_steps: int = 100
    head_lr: float = 0.01

    step_unit: ClassVar[str] = "images"

    def __post_init__(self) -> None:
        super().__post_init__()
        require(self.head_lr > 0, "learner.head_lr", self.head_lr, "a positive number")

    def build(self, image_size: int, train_classes: int) -> EpisodicClassifier:
        encoder = Conv4(hidden=self.channels)
        size = encoder.out_features(image_size)
        return FineTuneClassifier(encoder, size, train_classes, self.head_steps, self.head_lr)

    def update(self, agent: FewShotAgent) -> Update:
        return PretrainUpdate(agent, self.pretrain_batch)


@dataclasses.dataclass
class InnerLoopOptions(LearnerOptions):
    """What the learners that adapt a Conv4 and a linear head by SGD share.

    Attributes:
        max_ways: outputs of the learned head.
        inner_lr, inner_steps: the inner step size and number of steps.
        downsample: how each Conv4 block halves its maps: ``pool`` (2x2 max-pooling, as
            the other learners) or ``stride`` (a strided convolution, as Finn et al. 2017
            and Nichol et al. 2018 ran Omniglot)."""

    max_ways: int = 5
    inner_lr: float = 0.4
    inner_steps: int = 1
    downsample: str = "pool"

    proto_head: ClassVar[bool] = False

    def __post_init__(self) -> None:
        super().__post_init__()
        require(self.inner_lr > 0, "learner.inner_lr", self.inner_lr, "a positive number")
        require(
            self.downsample in DOWNSAMPLING,
            "learner.downsample",
            self.downsample,
            " or ".join(DOWNSAMPLING),
        )

    def encoder(self) -> Conv4:
        """The Conv4 these options describe."""
        return Conv4(hidden=self.channels, downsample=self.downsample)

    def classifier(
        self, image_size: int, first_order: bool, zero_head: bool = False
    ) -> MAMLClassifier:
        """The Conv4 and linear head, adapted by these inner steps."""
        encoder = self.encoder()
        return MAMLClassifier(
            encoder,
            encoder.out_features(image_size),
            self.max_ways,
            self.inner_lr,
            self.inner_steps,
            first_order,
            proto_head=self.proto_head,
            zero_head=zero_head,
        )

    def check_setting(self, ways: int, shots: int) -> None:
        if not self.proto_head and ways > self.max_ways:
            raise UsageError(f"this classifier's head has {self.max_ways} outputs, got {ways} ways")


@dataclasses.dataclass
class MAMLOptions(InnerLoopOptions):
    """MAML (Finn et al. 2017).

    Attributes:
        first_order: drop the second-order terms (first-order MAML).
        zero_head: start every episode's head at zero instead of a learned one (Kao et al.
            2022's zeroing trick; the learned head's weights stay unused)."""

    kind: str = "maml"
    first_order: bool = False
    zero_head: bool = False

    def __post_init__(self) -> None:
        super().__post_init__()
        require(
            not (self.zero_head and self.proto_head),
            "learner.zero_head",
            self.zero_head,
            "false for Proto-MAML, whose head starts from the prototypes",
        )

    def build(self, image_size: int, train_classes: int) -> EpisodicClassifier:
        return self.classifier(image_size, self.first_order, self.zero_head)

    def update(self, agent: FewShotAgent) -> Update:
        """Episode by episode on ``train.threads`` threads on the CPU (where the classifier
        loops over episodes: :class:`EpisodeByEpisodeUpdate`), else the batched gradient."""
        return EpisodeByEpisodeUpdate(agent, agent.config.train.threads or usable_cpus())

    def channels_last(self) -> bool:
        return self.first_order  # second order: 5% slower channels-last on the CPU


@dataclasses.dataclass
class ProtoMAMLOptions(MAMLOptions):
    """Proto-MAML (Triantafillou et al. 2020): MAML whose head starts from the support
    prototypes (``max_ways`` then only sizes a learned head it never uses)."""

    kind: str = "protomaml"

    proto_head: ClassVar[bool] = True


@dataclasses.dataclass
class ReptileOptions(InnerLoopOptions):
    """Reptile (Nichol et al. 2018): an inner loop on each task's images, then θ moves
    toward the adapted weights.

    Attributes:
        outer_lr: β, scaled by the learning-rate schedule (``optim.schedule: linear``
            anneals it to 0 as the paper does).
        inner_optimizer: ``adam`` (β₁ = 0, on minibatches, its state kept across tasks: the
            paper's final version) or ``sgd`` (full batch; at test time it adapts as
            first-order MAML does).
        inner_batch: images per inner iteration in training (null: all the task's).
        test_steps: inner iterations at test time with ``adam`` (null: ``inner_steps``).
        test_batch: support images per test iteration with ``adam`` (null: all).
        task_threads: with ``adam``, the meta-batch's tasks adapted on this many threads at
            once, each with its own Adam, their states averaged after every meta-batch
            (:class:`TaskThreads`); 1: one Adam carried from task to task, as the paper."""

    kind: str = "reptile"
    outer_lr: float = 1.0
    inner_optimizer: str = "sgd"
    inner_batch: int | None = None
    test_steps: int | None = None
    test_batch: int | None = None
    task_threads: int = 1

    def __post_init__(self) -> None:
        super().__post_init__()
        require(self.outer_lr > 0, "learner.outer_lr", self.outer_lr, "a positive number")
        require(
            self.inner_optimizer in ("adam", "sgd"),
            "learner.inner_optimizer",
            self.inner_optimizer,
            "adam or sgd",
        )
        for key in ("inner_batch", "test_steps", "test_batch"):
            value = getattr(self, key)
            require(value is None or value >= 1, f"learner.{key}", value, "null or a count")
        if self.inner_optimizer == "sgd":
            require(
                self.inner_batch is None
                and self.test_steps is None
                and self.test_batch is None
                and self.task_threads == 1,
                "learner.inner_optimizer",
                self.inner_optimizer,
                "adam when inner_batch, test_steps or test_batch is set, or task_threads > 1",
            )

    def build(self, image_size: int, train_classes: int) -> EpisodicClassifier:
        if self.inner_optimizer == "sgd":
            return self.classifier(image_size, first_order=True)  # Reptile's φ is first-order
        encoder = self.encoder()
        return ReptileClassifier(
            encoder,
            encoder.out_features(image_size),
            self.max_ways,
            self.inner_lr,
            self.inner_steps,
            self.inner_batch,
            self.test_steps or self.inner_steps,
            self.test_batch,
        )

    def update(self, agent: FewShotAgent) -> Update:
        return ReptileUpdate(agent, self)


@dataclasses.dataclass
class MetaNetOptions(LearnerOptions):
    """Meta Networks (Munkhdalai & Yu 2017).

    Attributes:
        max_ways: outputs of the base learner.
        base_hidden: the base learner's hidden augmented layer.
        key_size: memory key width (the representation function u's output).
        generator_hidden: width of the fast-weight generators m and d."""

    kind: str = "metanet"
    max_ways: int = 5
    base_hidden: int = 64
    key_size: int = 64
    generator_hidden: int = 20

    def build(self, image_size: int, train_classes: int) -> EpisodicClassifier:
        encoder = Conv4(hidden=self.channels)
        return MetaNet(
            encoder,
            Conv4(hidden=self.channels),
            encoder.out_features(image_size),
            self.max_ways,
            self.base_hidden,
            self.key_size,
            self.generator_hidden,
        )

    def check_setting(self, ways: int, shots: int) -> None:
        if ways > self.max_ways:
            raise UsageError(f"this MetaNet has {self.max_ways} outputs, got {ways} ways")


LEARNERS: dict[str, type[LearnerOptions]] = {
    options.kind: options
    for options in (
        ProtoNetOptions,
        MatchingNetOptions,
        RelationNetOptions,
        SNAILOptions,
        FineTuneOptions,
        MAMLOptions,
        ProtoMAMLOptions,
        ReptileOptions,
        MetaNetOptions,
    )
}
"""The options class of each ``learner.kind``."""


def _section_fields() -> list[tuple[str, Any, Any]]:
    """Every kind's keys, each optional: ``None`` stands for a key the YAML does not give."""
    hints: dict[str, Any] = {}
    for options in LEARNERS.values():
        types = typing.get_type_hints(options)
        for field in dataclasses.fields(options):
            hints.setdefault(field.name, types[field.name])
    return [(name, hint | None, None) for name, hint in hints.items()]


LearnerSection = dataclasses.make_dataclass("LearnerSection", _section_fields())
LearnerSection.__doc__ = """The ``learner`` section as read from YAML, with the keys of every
kind, before :func:`resolve_learner` keeps those of its ``kind``."""


def resolve_learner(section: Any) -> LearnerOptions:
    """The options of the kind named by ``section.kind`` (ProtoNet when none is given), from
    the keys ``section`` gives; ConfigError naming a key that belongs to another kind."""
    given = {k: v for k, v in dataclasses.asdict(section).items() if v is not None}
    kind = given.get("kind", ProtoNetOptions.kind)
    require(kind in LEARNERS, "learner.kind", kind, " or ".join(LEARNERS))
    names = [field.name for field in dataclasses.fields(LEARNERS[kind])]
    for key in given:
        if key not in names:
            raise ConfigError(
                f"config key 'learner.{key}' is not an option of learner.kind {kind!r}; "
                f"its keys: {', '.join(names)}"
            )
    return LEARNERS[kind](**given)


@dataclasses.dataclass
class OptimConfig:
    """Adam, with the learning rate multiplied by ``decay`` every ``decay_every`` updates
    (``schedule: step``) or falling linearly to 0 over ``train.iterations`` (``linear``).

    Attributes:
        lr: initial learning rate.
        schedule: ``step`` or ``linear``.
        decay_every: updates between decays (``step``).
        decay: the factor (``step``)."""

    lr: float = 1e-3
    schedule: str = "step"
    decay_every: int = 2000
    decay: float = 0.5

    def __post_init__(self) -> None:
        require(self.lr > 0, "optim.lr", self.lr, "a positive number")
        require(
            self.schedule in ("step", "linear"), "optim.schedule", self.schedule, "step or linear"
        )
        require_positive_ints(self, "optim", ("decay_every",))
        require(0 < self.decay <= 1, "optim.decay", self.decay, "a number in (0, 1]")


@dataclasses.dataclass
class EvalConfig(FewShotEvalConfig):
    """:class:`~metarl.fewshot.protocol.FewShotEvalConfig` and:

    Attributes:
        shots: support images per class of a test episode (``metarl eval --shots``).
        queries: query images per class.
        transductive: batch norm at test time over all queries at once; false: over the
            support images and one query at a time (Reptile with ``inner_optimizer: adam``
            only, the paper's non-transductive setting).
        workers: threads of ``metarl eval``, each measuring test episodes on its own copy
            of the model with one torch thread (0: one per CPU of this process on the CPU,
            one on an accelerator). Results do not depend on it; validation during
            training keeps to the run's threads.
        inner_steps: inner steps at test time for MAML, first-order MAML and Proto-MAML
            (null: as trained); the trained step sizes, the last repeated. Finn et al. test
            Omniglot with 3.
    """

    shots: int = 1
    queries: int = 15
    transductive: bool = True
    workers: int = 0
    inner_steps: int | None = None

    def __post_init__(self) -> None:
        super().__post_init__()
        require_positive_ints(self, "eval", ("shots", "queries"))
        require(
            is_positive_int(self.workers) or self.workers == 0,
            "eval.workers",
            self.workers,
            "an integer >= 0",
        )
        require(
            self.inner_steps is None or is_positive_int(self.inner_steps),
            "eval.inner_steps",
            self.inner_steps,
            "null or an integer >= 1",
        )


@dataclasses.dataclass
class TrainConfig(BaseTrainConfig):
    """:class:`metarl.config.TrainConfig` and:

    Attributes:
        amp: mixed precision of the training updates (:mod:`metarl.amp`): ``off``, ``bf16``,
            or ``fp16`` (a GPU only, with a gradient scaler); evaluation runs in float32.
            YAML reads a bare ``off`` as false, which means ``off`` here too.
    """

    amp: str | bool = "off"

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.amp is False:
            self.amp = "off"
        check_amp(self.amp, self.torch_device)


@dataclasses.dataclass
class Config:
    """A few-shot Omniglot experiment.

    Attributes:
        name: experiment name.
        agent: ``fewshot-omniglot``.
        seed: seeds the weights and every iteration's episodes.
        learner: read as a :class:`LearnerSection`, then held as the
            :class:`LearnerOptions` of its kind.
    """

    name: str
    agent: str
    seed: int = 0
    data: DataConfig = dataclasses.field(default_factory=DataConfig)
    episodes: EpisodeConfig = dataclasses.field(default_factory=EpisodeConfig)
    learner: LearnerSection = dataclasses.field(default_factory=ProtoNetOptions)
    optim: OptimConfig = dataclasses.field(default_factory=OptimConfig)
    train: TrainConfig = dataclasses.field(default_factory=TrainConfig)
    eval: EvalConfig = dataclasses.field(default_factory=EvalConfig)

    def __post_init__(self) -> None:
        if not isinstance(self.learner, LearnerOptions):
            self.learner = resolve_learner(self.learner)
        require(  # Reptile moves the weights itself: no gradient for a scaler to unscale
            not (self.learner.kind == "reptile" and self.train.amp == "fp16"),
            "train.amp",
            self.train.amp,
            "off or bf16 for learner.kind 'reptile'",
        )
        threads = getattr(self.learner, "task_threads", 1)
        require(  # the tasks' threads split the CPU's cores; on a GPU they only contend
            threads == 1 or self.train.torch_device.type == "cpu",
            "learner.task_threads",
            threads,
            "1 on a GPU (its tasks run on CPU threads)",
        )
        adam_reptile = getattr(self.learner, "inner_optimizer", None) == "adam"
        require(
            self.eval.transductive or adam_reptile,
            "eval.transductive",
            self.eval.transductive,
            "true, unless learner.kind is reptile with inner_optimizer adam",
        )


Update = Callable[[np.random.Generator], tuple[float, float, int]]
"""One training update, drawing its data from the iteration's generator: it leaves the
gradient for Adam (or moves the weights itself) and returns the loss, the accuracy and how
many of the learner's ``step_unit`` (episodes, or images) it consumed."""


class EpisodeUpdate:
    """The gradient of the query loss of a meta-batch of training episodes."""

    def __init__(self, agent: FewShotAgent) -> None:
        self.model, self.episodes = agent.model, agent.config.episodes
        self.backward = agent.precision.backward
        ways, shots, queries = self.episodes.ways, self.episodes.shots, self.episodes.queries
        self.sampler = EpisodeSampler(agent.images["train"], ways, shots, queries, "train")

    def sample(self, rng: np.random.Generator) -> Episodes:
        """A meta-batch; with ``vary_shots``, of K drawn from 1..shots."""
        episodes = self.episodes
        shots = int(rng.integers(1, episodes.shots + 1)) if episodes.vary_shots else None
        return self.sampler.sample(rng, episodes.meta_batch, shots)

    def __call__(self, rng: np.random.Generator) -> tuple[float, float, int]:
        batch = self.sample(rng)
        logits = self.model(batch.support_x, batch.support_y, batch.query_x, batch.ways)
        loss = self.model.loss(logits, batch.query_y)
        self.backward(loss)
        accuracy = float(episode_accuracy(logits, batch.query_y).mean())
        return loss.item(), accuracy, self.episodes.meta_batch


class EpisodeByEpisodeUpdate(EpisodeUpdate):
    """MAML's update: where the classifier loops over episodes (the CPU), the meta-gradient
    episode by episode on ``threads`` threads (:class:`EpisodeThreads`, made on first use),
    else :class:`EpisodeUpdate`'s one backward through the task-batched meta-batch. The
    choice follows the classifier's ``batched`` at each call; the gradients are equal."""

    def __init__(self, agent: FewShotAgent, threads: int) -> None:
        super().__init__(agent)
        self.device, self.autocast = agent.device, agent.precision.autocast
        self.thread_count = threads
        self.threads: EpisodeThreads | None = None

    def __call__(self, rng: np.random.Generator) -> tuple[float, float, int]:
        if self.model.batches_on(self.device):
            return super().__call__(rng)
        if self.threads is None:
            self.threads = EpisodeThreads(self.model, self.thread_count, self.autocast)
        batch = self.sample(rng)
        loss, logits = self.threads.backward(
            batch.support_x, batch.support_y, batch.query_x, batch.query_y, batch.ways
        )
        return loss, float(episode_accuracy(logits, batch.query_y).mean()), len(logits)

    def close(self) -> None:
        """Stop the threads, if any were made."""
        if self.threads is not None:
            self.threads.close()


class ReptileUpdate(EpisodeUpdate):
    """Reptile: adapt to all of each task's images, move θ toward the mean result, with β
    following the learning-rate schedule. Adam gets no gradient."""

    def __init__(self, agent: FewShotAgent, options: ReptileOptions) -> None:
        super().__init__(agent)
        self.reptile = Reptile(
            agent.model.net, options.inner_lr, options.inner_steps, options.outer_lr
        )
        self.outer_lr, self.schedule = options.outer_lr, agent.schedule
        self.initial_lr = agent.config.optim.lr
        self.thread_count = options.task_threads
        self.threads: TaskThreads | None = None

    def adapt(self, x: Tensor, y: Tensor, ways: int) -> tuple[Params, Tensor]:
        """φ of one task by SGD on all its images ``x`` (labels ``y``), and the task's
        (loss, accuracy) after adaptation."""
        forward = self.model.maml
        phi = self.reptile.adapt(lambda p: F.cross_entropy(forward(p, x)[:, :ways], y))
        with torch.no_grad():
            logits = forward(phi, x)[:, :ways]
            return phi, torch.stack([F.cross_entropy(logits, y), episode_accuracy(logits, y)])

    def __call__(self, rng: np.random.Generator) -> tuple[float, float, int]:
        batch = self.sample(rng)
        x = torch.cat([batch.support_x, batch.query_x], 1)
        y = torch.cat([batch.support_y, batch.query_y], 1)
        if isinstance(self.model, ReptileClassifier):
            # Adam: each task's fit is taken over its inner minibatches (no extra pass)
            if self.threads is None:
                self.threads = TaskThreads(self.model, self.thread_count)
            adapted, fits = self.threads.adapt(x, y, batch.ways, rng)
        else:
            pairs = [self.adapt(xi, yi, batch.ways) for xi, yi in zip(x, y, strict=True)]
            adapted, fits = [phi for phi, _ in pairs], torch.stack([fit for _, fit in pairs])
        loss, accuracy = fits.mean(0).tolist()
        self.reptile.outer_lr = self.outer_lr * (self.schedule.get_last_lr()[0] / self.initial_lr)
        self.reptile.update(adapted)
        return loss, accuracy, len(x)

    def close(self) -> None:
        """Stop the task threads, if any were made."""
        if self.threads is not None:
            self.threads.close()


class PretrainUpdate:
    """The fine-tune baseline's update: cross-entropy over all training classes on a batch
    of ``batch`` images."""

    def __init__(self, agent: FewShotAgent, batch: int) -> None:
        self.model, self.images, self.batch = agent.model, agent.images["train"], batch
        self.backward = agent.precision.backward

    def __call__(self, rng: np.random.Generator) -> tuple[float, float, int]:
        images, size = self.images, self.batch
        classes, drawings = (
            torch.as_tensor(rng.integers(n, size=size), device=images.device)
            for n in images.shape[:2]
        )
        x = to_float(images[classes, drawings]).unsqueeze(1)
        y = classes
        logits = self.model.pretrain_logits(x)
        loss = F.cross_entropy(logits, y)
        self.backward(loss)
        return loss.item(), float(episode_accuracy(logits, y)), size


class TrainedClassifier:
    """What every Omniglot classifier agent holds: the splits (and their images on the
    run's device, put there once), the model, Adam with a step learning-rate schedule, the
    last validation accuracy, and their checkpoint.

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
        self.device = config.train.torch_device
        self.images = {  # episodes are gathered on the device, by index
            name: torch.as_tensor(getattr(self.splits, name), device=self.device)
            for name in ("train", "val", "test")
        }
        torch.manual_seed(config.seed)
        self.model = build(self.splits).to(self.device)
        self.optimizer = torch.optim.Adam(self.model.parameters(), lr=config.optim.lr)
        optim = config.optim
        self.schedule: torch.optim.lr_scheduler.LRScheduler = (
            torch.optim.lr_scheduler.LinearLR(self.optimizer, 1.0, 0.0, config.train.iterations)
            if optim.schedule == "linear"
            else torch.optim.lr_scheduler.StepLR(self.optimizer, optim.decay_every, optim.decay)
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
        keep_freed_memory()  # training steps page-faulted their activations back in each time
        learner, image_size = config.learner, config.data.image_size

        def build(splits: Splits) -> torch.nn.Module:
            model = learner.build(image_size, len(splits.train))
            if not learner.channels_last():
                return model
            return prefer_channels_last(model, config.train.torch_device)

        super().__init__(config, build, progress)
        self.precision = MixedPrecision(config.train.amp, self.device)
        self.update = learner.update(self)
        self.step_unit = learner.step_unit  # the trainer's name for the count of an update
        self._validation_checked = False

    def train_iteration(self, iteration: int) -> dict[str, float]:
        cfg = self.config
        if not self._validation_checked:  # validation comes far into training: check it now
            ev = cfg.eval
            EpisodeSampler(self.splits.val, ev.ways, ev.shots, ev.queries, "validation")
            self._validation_checked = True
        self.model.train()
        self.optimizer.zero_grad()
        with self.precision.autocast():
            loss, accuracy, count = self.update(np.random.default_rng([cfg.seed, iteration]))
        self.precision.step(self.optimizer)
        self.schedule.step()
        if (iteration + 1) % cfg.eval.val_every == 0:
            self.val_accuracy = self._validate()
        return {
            "accuracy": accuracy,
            self.step_unit: count,
            "loss": loss,
            "val_accuracy": self.val_accuracy,
            "lr": self.schedule.get_last_lr()[0],
        }

    def close(self) -> None:
        if isinstance(self.update, EpisodeByEpisodeUpdate | ReptileUpdate):
            self.update.close()

    def state_dict(self) -> dict[str, Any]:
        return {**super().state_dict(), "scaler": self.precision.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        super().load_state_dict(state)
        self.precision.load_state_dict(state.get("scaler", {}))

    def _validate(self) -> float:
        """Accuracy on the validation episodes, measured on as many threads as Reptile's
        tasks train on (the same report for any count; more than one only on the CPU,
        which the config enforces)."""
        ev = self.config.eval
        workers = getattr(self.config.learner, "task_threads", 1)
        with torch_threads(1 if workers > 1 else 0):
            report = evaluate_classifier(
                self.model,
                self.images["val"],
                ways=ev.ways,
                shots=ev.shots,
                queries=ev.queries,
                episodes=ev.val_episodes,
                seed=ev.seed,  # the same validation episodes every time
                curve_episodes=0,
                workers=workers,
            )
        return report["value"]

    def evaluate(self, episodes: int) -> dict[str, Any]:
        """Accuracy on test episodes of the ``eval`` setting, with the baselines."""
        ev = self.config.eval
        self.config.learner.check_setting(ev.ways, ev.shots)
        if isinstance(self.model, ReptileClassifier):
            self.model.transductive = ev.transductive
        steps = contextlib.nullcontext()
        if ev.inner_steps is not None:
            model = self.model
            require(
                isinstance(model, MAMLClassifier) and not isinstance(model, ReptileClassifier),
                "eval.inner_steps",
                ev.inner_steps,
                "null: only MAML, first-order MAML and Proto-MAML take it "
                "(Reptile tests with learner.test_steps)",
            )
            steps = model.maml.steps_at_test(ev.inner_steps)
        workers = ev.workers or (usable_cpus() if self.device.type == "cpu" else 1)
        with torch_threads(1 if workers > 1 else 0), steps:
            return evaluate_classifier(
                self.model,
                self.images["test"],
                ways=ev.ways,
                shots=ev.shots,
                queries=ev.queries,
                episodes=episodes,
                seed=ev.seed,
                workers=workers,
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
