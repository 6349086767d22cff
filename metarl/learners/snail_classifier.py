"""SNAIL as a few-shot classifier (Mishra et al. 2018, section 5.1).

The support set is read as a sequence of (image embedding, one-hot label) pairs, then one
query with an all-zero label; the SNAIL features at the last step predict the query's
label. The sequence model is :class:`metarl.backbones.SNAIL`, the very class the bandit
agents use as their policy backbone.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from metarl.backbones import SNAIL, BlockSpec
from metarl.config import require_positive
from metarl.learners.episodic import EpisodicClassifier, check_episode


class SNAILClassifier(EpisodicClassifier):
    """An image encoder followed by SNAIL over support-then-query sequences.

    Every query gets its own sequence (support, then that query), so queries never see
    each other; the support images are encoded, and their steps computed, once per episode
    (:meth:`SNAIL.forward_last`).

    Args:
        encoder: maps images (..., C, H, W) to embeddings (..., embedding_size).
        embedding_size: width of the encoder's output.
        max_ways: most classes an episode may have: the width of the label input and of
            the output layer.
        max_shots: most support images per class; with ``max_ways`` it sets the longest
            sequence, ``max_ways * max_shots + 1``, and so the depth of the TC blocks.
        blocks: SNAIL's TC and attention blocks, in order.
        projection_size: optional linear projection of the inputs before the blocks.
    """

    def __init__(
        self,
        encoder: nn.Module,
        embedding_size: int,
        max_ways: int,
        max_shots: int,
        blocks: Sequence[BlockSpec],
        projection_size: int | None = None,
    ) -> None:
        super().__init__()
        for name, value in (("max_ways", max_ways), ("max_shots", max_shots)):
            require_positive("SNAILClassifier", name, value)
        self.encoder = encoder
        self.max_ways, self.max_shots = max_ways, max_shots
        self.snail = SNAIL(
            input_size=embedding_size + max_ways,
            max_len=max_ways * max_shots + 1,
            blocks=blocks,
            projection_size=projection_size,
        )
        self.head = nn.Linear(self.snail.output_size, max_ways)

    def forward(self, support_x: Tensor, support_y: Tensor, query_x: Tensor, ways: int) -> Tensor:
        check_episode(support_x, support_y, query_x, ways)
        batch, size = support_y.shape
        if ways > self.max_ways or size > self.max_ways * self.max_shots:
            raise ValueError(
                f"this SNAIL classifier reads at most {self.max_ways}-way "
                f"{self.max_shots}-shot episodes, got {ways} ways and {size} support images"
            )
        support = torch.cat(
            [self.encoder(support_x), F.one_hot(support_y, self.max_ways).float()], -1
        )
        query = self.encoder(query_x)
        query = torch.cat([query, query.new_zeros(*query.shape[:-1], self.max_ways)], -1)
        features = self.snail.forward_last(support, query)  # the support read once per episode
        return self.head(features)[..., :ways]
