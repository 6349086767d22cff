"""Relation Networks (Sung et al. 2018, "Learning to Compare: Relation Network for Few-Shot
Learning").

An embedding module maps images to feature maps; a class is represented by the element-wise
mean of its support maps (the paper sums them, training one model per shot count; the mean
equals the sum at one shot and lets one model serve every K); a learned relation module g
scores each (class, query) pair from the channel concatenation of their maps with a relation
score in [0, 1] (eq. 1-2), trained by regression onto 1 for the matching class and 0
otherwise (eq. 3, mean squared error).
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn

from metarl.backbones.conv4 import Conv4, conv_block, conv_block_size
from metarl.config import require_positive
from metarl.learners.episodic import EpisodicClassifier, check_episode
from metarl.learners.protonet import encode_episode, prototypes

# Padding of the relation module's convolutions. With the encoder's padding 1 as well, 28x28
# Omniglot maps go 28 -> 14 -> 7 (encoder, two pooled blocks), then 7 -> 3 -> 1 here, and 84x84
# miniImageNet maps 21 -> 10 -> 5. Without padding 7x7 maps would vanish (7 -> 2 -> 0); the
# paper's code instead pads only some encoder convs, a variant Conv4 does not express.
RELATION_PADDING = 1


class RelationNet(EpisodicClassifier):
    """Relation Networks: relation scores in [0, 1] as logits, trained with MSE.

    The caller builds the embedding module, so its channels and padding stay visible: the
    paper's is ``Conv4(in_channels, pooled_blocks=2)``, four 64-channel blocks of which only
    the first two pool. The relation module is two conv blocks with the encoder's channel
    count (64 in the paper), each 3x3 conv (padding 1), batch norm, ReLU and 2x2 max-pool,
    then a ReLU layer of ``hidden`` units and a sigmoid unit.

    Args:
        encoder: the embedding module f_φ.
        image_size: side of the square input images (28 for Omniglot, 84 for miniImageNet);
            it fixes the width of the relation module's first linear layer.
        hidden: units of the relation module's hidden linear layer (8 in the paper).
    """

    def __init__(self, encoder: Conv4, image_size: int = 28, hidden: int = 8) -> None:
        super().__init__()
        require_positive("RelationNet", "image_size", image_size)
        require_positive("RelationNet", "hidden", hidden)
        self.encoder = encoder
        self.image_size = int(image_size)
        channels, size, _ = encoder.out_shape(self.image_size)
        try:
            for _ in range(2):
                size = conv_block_size(size, RELATION_PADDING, pool=True)
        except ValueError as error:
            raise ValueError(
                f"RelationNet: the encoder's feature maps of {image_size}x{image_size} images "
                f"are too small for the relation module ({error}); pool fewer encoder blocks, "
                "as the paper's Conv4(pooled_blocks=2)"
            ) from None
        self.relation = nn.Sequential(
            conv_block(2 * channels, channels, RELATION_PADDING, pool=True),
            conv_block(channels, channels, RELATION_PADDING, pool=True),
            nn.Flatten(),
            nn.Linear(channels * size * size, hidden),
            nn.ReLU(),
            nn.Linear(hidden, 1),
            nn.Sigmoid(),
        )

    def forward(self, support_x: Tensor, support_y: Tensor, query_x: Tensor, ways: int) -> Tensor:
        """Relation scores (B, M, N) in [0, 1] of each query with each class."""
        check_episode(support_x, support_y, query_x, ways)
        if support_x.shape[-2:] != (self.image_size, self.image_size):
            raise ValueError(
                f"RelationNet was built for {self.image_size}x{self.image_size} images, got "
                f"{support_x.shape[-2]}x{support_x.shape[-1]}"
            )
        support, query = encode_episode(self.encoder.feature_map, support_x, query_x)
        batch, queries = query.shape[:2]
        classes = prototypes(support.flatten(2), support_y, ways).view(
            batch, ways, *support.shape[2:]
        )
        # The first convolution is linear, so conv([class, query]) = conv_c(class) +
        # conv_q(query): N + M convolutions instead of one per (class, query) pair.
        conv, rest = self.relation[0][0], nn.Sequential(*self.relation[0][1:], *self.relation[1:])
        w_class, w_query = conv.weight.chunk(2, dim=1)
        by_class = F.conv2d(classes.flatten(0, 1), w_class, padding=conv.padding)
        by_query = F.conv2d(query.flatten(0, 1), w_query, padding=conv.padding)
        pairs = by_query.view(batch, queries, 1, *by_query.shape[1:]) + by_class.view(
            batch, 1, ways, *by_class.shape[1:]
        )
        return rest(pairs.flatten(0, 2)).view(batch, queries, ways)

    def loss(self, logits: Tensor, query_y: Tensor) -> Tensor:
        """Mean squared error of the relation scores (B, M, N) against one-hot labels (B, M)."""
        if query_y.shape != logits.shape[:2]:
            raise ValueError(
                f"query_y must have shape {tuple(logits.shape[:2])} to match the scores, got "
                f"{tuple(query_y.shape)}"
            )
        return F.mse_loss(logits, F.one_hot(query_y, logits.shape[-1]).to(logits.dtype))
