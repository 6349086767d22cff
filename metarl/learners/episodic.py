"""The interface of episodic few-shot classifiers: support set in, query logits out.

An episode holds ``N`` classes (``ways``) with ``K`` labelled images each (``shots``) in the
support set and ``M`` unlabelled query images. Every metric-based learner (ProtoNet,
Matching Networks, Relation Networks) and every black-box one (SNAIL) maps a batch of
episodes to query logits, so one training loop and one evaluation protocol serve them all.
"""

from __future__ import annotations

import abc

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from metarl.config import require_positive


def check_episode(support_x: Tensor, support_y: Tensor, query_x: Tensor, ways: int) -> None:
    """Raise ValueError unless the arguments form a batch of episodes as
    :meth:`EpisodicClassifier.forward` takes it, every class with at least one support image
    (a class without one could never be predicted, and its prototype would be 0/0)."""
    require_positive("episode", "ways", ways)
    if support_x.dim() != 5 or query_x.dim() != 5:
        raise ValueError(
            "support_x and query_x must be image batches (B, n, C, H, W), got shapes "
            f"{tuple(support_x.shape)} and {tuple(query_x.shape)}"
        )
    if query_x.shape[0] != support_x.shape[0] or query_x.shape[2:] != support_x.shape[2:]:
        raise ValueError(
            f"query_x must hold B={support_x.shape[0]} episodes of images of shape "
            f"{tuple(support_x.shape[2:])} like support_x, got shape {tuple(query_x.shape)}"
        )
    if support_y.shape != support_x.shape[:2]:
        raise ValueError(
            f"support_y must have shape (B, N*K) = {tuple(support_x.shape[:2])} to label "
            f"support_x, got {tuple(support_y.shape)}"
        )
    if support_y.numel() == 0:
        raise ValueError(f"the support set is empty: support_x has shape {tuple(support_x.shape)}")
    if support_y.dtype != torch.int64:
        raise ValueError(f"support_y must hold int64 labels, got dtype {support_y.dtype}")
    low, high = (int(v) for v in torch.aminmax(support_y))
    if low < 0 or high >= ways:
        raise ValueError(
            f"support_y labels must lie in 0..{ways - 1} for ways={ways}, found {low}..{high}"
        )
    missing = F.one_hot(support_y, ways).sum(dim=1) == 0
    if missing.any():
        episode, label = (int(v) for v in missing.nonzero()[0])
        raise ValueError(
            f"every class 0..{ways - 1} needs a support image: episode {episode} has none "
            f"of class {label}"
        )


class EpisodicClassifier(nn.Module, abc.ABC):
    """A model that classifies query images given a labelled support set."""

    @abc.abstractmethod
    def forward(self, support_x: Tensor, support_y: Tensor, query_x: Tensor, ways: int) -> Tensor:
        """Query logits of a batch of episodes.

        Args:
            support_x: support images (B, N*K, C, H, W).
            support_y: their labels (B, N*K), int64 in ``0..ways-1``.
            query_x: query images (B, M, C, H, W).
            ways: number of classes N.

        Returns:
            logits (B, M, N); their argmax is the predicted label.
        """

    def loss(self, logits: Tensor, query_y: Tensor) -> Tensor:
        """The training loss of ``forward``'s logits against query labels (B, M):
        cross-entropy unless the learner's paper says otherwise."""
        return F.cross_entropy(logits.flatten(0, 1), query_y.flatten())
