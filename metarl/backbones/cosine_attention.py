"""Content-based attention by cosine similarity: the read of MANN's memory (Santoro et al.
2016), MetaNet's fast-weight memory (Munkhdalai & Yu 2017) and Matching Networks' support
set (Vinyals et al. 2016), which differ only in what the weights then average."""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor


def cosine_attention(queries: Tensor, keys: Tensor, scale: float | Tensor = 1.0) -> Tensor:
    """Weights ``a[b, m, s] = softmax_s(scale * cos(queries[b, m], keys[b, s]))``: queries
    (B, M, D) and keys (B, S, D) to (B, M, S), each row summing to 1. A zero vector has
    cosine 0 with everything.

    ``scale`` sharpens the softmax, since cosines alone lie in [-1, 1]: one number (Matching
    Networks' cosine scale), or one per query (B, M) (MANN's key strength β).
    """
    cosine = F.normalize(queries, dim=-1) @ F.normalize(keys, dim=-1).transpose(-2, -1)
    if isinstance(scale, Tensor):
        scale = scale.unsqueeze(-1)
    return (scale * cosine).softmax(dim=-1)
