"""Prototypical Networks (Snell et al. 2017, "Prototypical Networks for Few-shot Learning").

Each class is represented by its prototype, the mean embedding of its support images; a
query's logits are its negative squared Euclidean distances to the prototypes (eq. 1-2).
The helpers are shared with the other metric learners (and Proto-MAML's output layer).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from metarl.learners.episodic import EpisodicClassifier, check_episode


def encode_episode(
    encode: Callable[[Tensor], Tensor], support_x: Tensor, query_x: Tensor
) -> tuple[Tensor, Tensor]:
    """Encode support (B, S, C, H, W) and query (B, M, C, H, W) images in one call of
    ``encode`` on a flat (B*(S+M), C, H, W) batch, as Snell et al.'s code does: one pass,
    and batch norm normalises the whole episode. Returns (B, S, ...) and (B, M, ...)."""
    batch, shots = support_x.shape[:2]
    images = torch.cat([support_x, query_x], dim=1)
    features = encode(images.flatten(0, 1))
    features = features.reshape(batch, images.shape[1], *features.shape[1:])
    return features[:, :shots], features[:, shots:]


def prototypes(embeddings: Tensor, labels: Tensor, ways: int) -> Tensor:
    """Class means (B, N, D) of support embeddings (B, S, D) labelled (B, S) in 0..ways-1.

    Any number of shots per class; every class needs at least one (see ``check_episode``).
    """
    onehot = F.one_hot(labels, ways).to(embeddings.dtype)  # (B, S, N)
    sums = onehot.transpose(1, 2) @ embeddings
    return sums / onehot.sum(dim=1).unsqueeze(-1)


def squared_distances(a: Tensor, b: Tensor) -> Tensor:
    """Squared Euclidean distances (..., M, N) between rows of a (..., M, D) and b (..., N, D).

    Expanded as |a|^2 - 2 a.b + |b|^2, a matrix product rather than an (M, N, D) tensor of
    differences; clamped at 0 against rounding.
    """
    squared = (
        a.pow(2).sum(-1, keepdim=True)
        - 2 * a @ b.transpose(-1, -2)
        + b.pow(2).sum(-1).unsqueeze(-2)
    )
    return squared.clamp_min(0)


class ProtoNet(EpisodicClassifier):
    """Prototypical Networks: logits are negative squared distances to class prototypes.

    Args:
        encoder: maps images (n, C, H, W) to embeddings (n, D); the paper's is ``Conv4()``.
    """

    def __init__(self, encoder: nn.Module) -> None:
        super().__init__()
        self.encoder = encoder

    def forward(self, support_x: Tensor, support_y: Tensor, query_x: Tensor, ways: int) -> Tensor:
        """Query logits (B, M, N): -|f(x) - c_n|^2 for the prototypes c_n."""
        check_episode(support_x, support_y, query_x, ways)
        support, query = encode_episode(self.encoder, support_x, query_x)
        return -squared_distances(query, prototypes(support, support_y, ways))
