"""Santoro et al.'s online few-shot protocol for black-box learners (MANN, LSTM, SNAIL).

An episode is a sequence of images from N classes, each shown several times in random order,
with the class-to-label mapping drawn afresh. At step t the learner sees x_t and the *previous*
image's label y_{t-1} (none at t = 0), and must predict y_t: the first instance of a class is
a guess, later ones test what the learner bound to its label. The sequence model is any
:class:`metarl.backbones.SequenceBackbone`, the very classes the RL agents use as policies.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from metarl.backbones import SequenceBackbone
from metarl.config import require_positive
from metarl.fewshot.episodes import rank_within_class


def shifted_labels(labels: Tensor, ways: int) -> Tensor:
    """One-hot y_{t-1} for every step (B, T, ways), all zero at t = 0."""
    onehot = F.one_hot(labels, ways).float()
    return F.pad(onehot, (0, 0, 1, 0))[:, :-1]


def accuracy_by_instance(logits: Tensor, labels: Tensor, ways: int) -> Tensor:
    """Accuracy (instances,) of predictions at the 1st, 2nd, ... showing of each class,
    pooled over episodes; an instance no episode reached is NaN."""
    correct = (logits.argmax(-1) == labels).float().flatten()
    instance = rank_within_class(labels, ways).flatten()
    count = torch.bincount(instance).float()
    hits = torch.bincount(instance, weights=correct)
    return hits / count


class SequenceClassifier(nn.Module):
    """An image encoder, a sequence backbone over (embedding, y_{t-1}) and a linear head.

    Args:
        encoder: maps images (..., C, H, W) to embeddings (..., embedding_size), each image
            on its own (no batch norm in training), so that step t sees no later image.
        backbone: reads inputs of width ``embedding_size + max_ways``; causal, as every
            :class:`SequenceBackbone` is.
        max_ways: most classes per episode: the width of the label input and the output.
    """

    def __init__(self, encoder: nn.Module, backbone: SequenceBackbone, max_ways: int) -> None:
        super().__init__()
        require_positive("SequenceClassifier", "max_ways", max_ways)
        self.encoder, self.backbone, self.max_ways = encoder, backbone, max_ways
        self.head = nn.Linear(backbone.output_size, max_ways)

    def forward(self, images: Tensor, labels: Tensor, ways: int) -> Tensor:
        """Logits (B, T, ways) for every step of episodes ``images`` (B, T, C, H, W) whose
        labels (B, T) are shown one step late."""
        if images.dim() != 5 or labels.shape != images.shape[:2]:
            raise ValueError(
                "expected images (B, T, C, H, W) and labels (B, T), got shapes "
                f"{tuple(images.shape)} and {tuple(labels.shape)}"
            )
        if not 1 <= ways <= self.max_ways or labels.min() < 0 or labels.max() >= ways:
            raise ValueError(
                f"labels must lie in 0..ways-1 with ways <= {self.max_ways}, got ways={ways}, "
                f"labels {int(labels.min())}..{int(labels.max())}"
            )
        inputs = torch.cat([self.encoder(images), shifted_labels(labels, self.max_ways)], -1)
        return self.head(self.backbone(inputs))[..., :ways]
