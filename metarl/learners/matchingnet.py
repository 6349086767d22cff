"""Matching Networks (Vinyals et al. 2016, "Matching Networks for One Shot Learning").

A query is classified by attention over the support set: P(y | x̂, S) = Σ_i a(x̂, x_i) y_i
with a the softmax over the support set of the cosine similarity c(f(x̂), g(x_i)) (eq. 1-2).
Full context embeddings (FCE, appendix A) make both embeddings depend on the whole support
set: g is a bidirectional LSTM over the support embeddings, f an LSTM that attends to g(S)
for K processing steps.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from metarl.backbones.cosine_attention import cosine_attention
from metarl.config import require_positive
from metarl.learners.episodic import EpisodicClassifier, check_episode
from metarl.learners.protonet import encode_episode


class MatchingNet(EpisodicClassifier):
    """Matching Networks, with or without full context embeddings.

    The logits are log P(y | x̂, S), so the default cross-entropy loss is the paper's
    negative log-likelihood.

    Args:
        encoder: maps images (n, C, H, W) to embeddings (n, embedding_size): the paper's
            g' = f' (``Conv4()``, 64 features on 28x28 Omniglot).
        embedding_size: width D of the encoder's embeddings, and of the FCE LSTMs' states.
        fce: use full context embeddings; otherwise f = g = encoder.
        fce_steps: processing steps K of the attention LSTM f.
        cosine_scale: multiplies the cosine similarities before the softmax. The paper's
            1 caps the attention's sharpness: with FCE, whose LSTM outputs can be negative,
            cosines lie in [-1, 1] and no support image can take more than
            e^2 / (e^2 + S - 1) of the attention; without FCE, ReLU embeddings (Conv4's)
            keep cosines in [0, 1] and the cap is e / (e + S - 1).
    """

    def __init__(
        self,
        encoder: nn.Module,
        embedding_size: int,
        fce: bool = True,
        fce_steps: int = 5,
        cosine_scale: float = 1.0,
    ) -> None:
        super().__init__()
        require_positive("MatchingNet", "embedding_size", embedding_size)
        require_positive("MatchingNet", "fce_steps", fce_steps)
        self.encoder = encoder
        self.embedding_size = int(embedding_size)
        self.fce = bool(fce)
        self.fce_steps = int(fce_steps)
        if not cosine_scale > 0:
            raise ValueError(f"MatchingNet: cosine_scale must be positive, got {cosine_scale!r}")
        self.cosine_scale = float(cosine_scale)
        if self.fce:
            size = self.embedding_size
            self.support_lstm = nn.LSTM(size, size, batch_first=True, bidirectional=True)
            # Input [f'(x̂), r_{k-1}] and hidden h_{k-1}: the same gates as the appendix's
            # LSTM(f'(x̂), [h_{k-1}, r_{k-1}], c_{k-1}).
            self.query_lstm = nn.LSTMCell(2 * size, size)

    def attention(self, support_x: Tensor, support_y: Tensor, query_x: Tensor, ways: int) -> Tensor:
        """Attention weights a(x̂, x_i) (B, M, S) of each query on the support set."""
        check_episode(support_x, support_y, query_x, ways)
        support, query = encode_episode(self.encoder, support_x, query_x)
        if support.shape[-1] != self.embedding_size:
            raise ValueError(
                f"MatchingNet: the encoder gives {support.shape[-1]} features, but "
                f"embedding_size={self.embedding_size}"
            )
        if self.fce:
            support = self._embed_support(support)
            query = self._embed_query(query, support)
        return cosine_attention(query, support, self.cosine_scale)

    def forward(self, support_x: Tensor, support_y: Tensor, query_x: Tensor, ways: int) -> Tensor:
        """Query log-probabilities (B, M, N): log Σ_i a(x̂, x_i) onehot(y_i).

        No clamp is needed: every class has a support image and cosine attention is at least
        e^(-2 * cosine_scale) / S, so each probability is far from 0.
        """
        attention = self.attention(support_x, support_y, query_x, ways)
        return (attention @ F.one_hot(support_y, ways).to(attention.dtype)).log()

    def _embed_support(self, support: Tensor) -> Tensor:
        """g(x_i, S) = h_fwd_i + h_bwd_i + g'(x_i) for support embeddings g' (B, S, D)."""
        forward, backward = self.support_lstm(support)[0].chunk(2, dim=-1)
        return forward + backward + support

    def _embed_query(self, query: Tensor, support: Tensor) -> Tensor:
        """f(x̂, S) = h_K (B, M, D) for query embeddings f' (B, M, D) and g(S) (B, S, D).

        h_k = LSTM(f'(x̂), [h_{k-1}, r_{k-1}], c_{k-1}) + f'(x̂) with the read
        r_{k-1} = Σ_i softmax_i(h_{k-1}·g(x_i)) g(x_i), from h_0 = c_0 = 0. All queries of all
        episodes step together, as rows of one (B*M, D) batch.
        """
        batch, queries, size = query.shape
        inputs = query.reshape(-1, size)
        h = torch.zeros_like(inputs)
        c = torch.zeros_like(inputs)
        for _ in range(self.fce_steps):
            scores = h.view(batch, queries, size) @ support.transpose(1, 2)
            read = (scores.softmax(dim=-1) @ support).reshape(-1, size)
            h, c = self.query_lstm(torch.cat([inputs, read], dim=-1), (h, c))
            h = h + inputs
        return h.view(batch, queries, size)
