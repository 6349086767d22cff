"""The pre-train-then-fine-tune baseline (Vinyals et al. 2016's baseline classifier;
Chen et al. 2019, "A Closer Look at Few-shot Classification", *Baseline*).

The encoder is trained as an ordinary classifier over every training class. On a new
episode it is frozen and a fresh linear head is fitted to the support set's features by
gradient descent; nothing is meta-learned, which is what the meta-learners must beat.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from metarl.config import require_positive
from metarl.learners.episodic import EpisodicClassifier, check_episode


class FineTuneClassifier(EpisodicClassifier):
    """An encoder with a pre-training head over ``num_classes`` classes.

    Args:
        encoder: maps images (..., C, H, W) to embeddings (..., embedding_size).
        embedding_size: width of the encoder's output.
        num_classes: classes of the pre-training task (every training class).
        head_steps: Adam steps fitting each episode's head.
        head_lr: their learning rate.
    """

    def __init__(
        self,
        encoder: nn.Module,
        embedding_size: int,
        num_classes: int,
        head_steps: int = 100,
        head_lr: float = 0.01,
    ) -> None:
        super().__init__()
        require_positive("FineTuneClassifier", "head_steps", head_steps)
        self.encoder = encoder
        self.classifier = nn.Linear(embedding_size, num_classes)
        self.head_steps, self.head_lr = head_steps, head_lr

    def pretrain_logits(self, images: Tensor) -> Tensor:
        """Logits over the pre-training classes, for ordinary supervised training."""
        return self.classifier(self.encoder(images))

    def forward(self, support_x: Tensor, support_y: Tensor, query_x: Tensor, ways: int) -> Tensor:
        check_episode(support_x, support_y, query_x, ways)
        with torch.no_grad():
            support, query = self.encoder(support_x), self.encoder(query_x)
        batch, _, size = support.shape
        weight = support.new_zeros(batch, size, ways, requires_grad=True)
        bias = support.new_zeros(batch, 1, ways, requires_grad=True)
        optimizer = torch.optim.Adam([weight, bias], lr=self.head_lr)
        with torch.enable_grad():  # evaluation runs under no_grad; the head still trains
            for _ in range(self.head_steps):
                logits = torch.baddbmm(bias, support, weight)
                # summed over episodes: each episode's head gets its own mean loss's gradient
                loss = F.cross_entropy(logits.transpose(1, 2), support_y, reduction="none")
                optimizer.zero_grad()
                loss.mean(1).sum().backward()
                optimizer.step()
        return torch.baddbmm(bias, query, weight).detach()
