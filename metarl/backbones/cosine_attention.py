"""Content-based attention by cosine similarity: the read of MANN's memory (Santoro et al.
2016), MetaNet's fast-weight memory (Munkhdalai & Yu 2017) and Matching Networks' support
set (Vinyals et al. 2016), which differ only in what the weights then average."""

from __future__ import annotations

from torch import Tensor

EPS = 1e-12  # F.normalize's floor on a norm


def cosine_attention(queries: Tensor, keys: Tensor, scale: float | Tensor = 1.0) -> Tensor:
    """Weights ``a[b, m, s] = softmax_s(scale * cos(queries[b, m], keys[b, s]))``: queries
    (B, M, D) and keys (B, S, D) to (B, M, S), each row summing to 1. A zero vector has
    cosine 0 with everything.

    ``scale`` sharpens the softmax, since cosines alone lie in [-1, 1]: one number (Matching
    Networks' cosine scale), or one per query (B, M) (MANN's key strength β).

    The dot products are divided by the norms, rather than the vectors normalised first: the
    same numbers, with the division (and its backward) on the (B, M, S) products instead of
    the (B, S, D) keys, which for MANN's memory is ten times fewer elements at every step.
    """
    dots = queries @ keys.transpose(-2, -1)
    query_norms = queries.norm(dim=-1).clamp_min(EPS)
    key_norms = keys.norm(dim=-1).clamp_min(EPS)
    if isinstance(scale, Tensor):
        scale = scale.unsqueeze(-1)
    return (dots * (scale / query_norms.unsqueeze(-1)) / key_norms.unsqueeze(-2)).softmax(-1)
