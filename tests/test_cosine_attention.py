"""The cosine attention read shared by MANN, MetaNet and Matching Networks, by hand."""

import math

import torch

from metarl.backbones.cosine_attention import cosine_attention

# keys: along x (cosine 1 with the first query), along y (cosine 0), and zero (cosine 0).
KEYS = torch.tensor([[[2.0, 0.0], [0.0, 3.0], [0.0, 0.0]]])  # (B=1, S=3, D=2)
QUERIES = torch.tensor(
    [[[5.0, 0.0], [-1.0, 0.0]]]
)  # (B=1, M=2, D=2): cosines (1, 0, 0), (-1, 0, 0)


def _softmax(logits: list[float]) -> list[float]:
    total = sum(math.exp(x) for x in logits)
    return [math.exp(x) / total for x in logits]


def test_weights_are_the_softmax_of_cosines():
    expected = torch.tensor([[_softmax([1.0, 0.0, 0.0]), _softmax([-1.0, 0.0, 0.0])]])
    torch.testing.assert_close(cosine_attention(QUERIES, KEYS), expected)


def test_a_number_scales_every_query_and_a_tensor_each_query():
    scaled = torch.tensor([[_softmax([3.0, 0.0, 0.0]), _softmax([-3.0, 0.0, 0.0])]])
    torch.testing.assert_close(cosine_attention(QUERIES, KEYS, 3.0), scaled)
    per_query = cosine_attention(QUERIES, KEYS, torch.tensor([[3.0, 0.5]]))
    expected = torch.tensor([[_softmax([3.0, 0.0, 0.0]), _softmax([-0.5, 0.0, 0.0])]])
    torch.testing.assert_close(per_query, expected)


def test_batches_are_read_independently():
    batch_q, batch_k = torch.randn(4, 5, 6), torch.randn(4, 7, 6)
    weights = cosine_attention(batch_q, batch_k, torch.rand(4, 5))
    assert weights.shape == (4, 5, 7)
    torch.testing.assert_close(weights.sum(-1), torch.ones(4, 5))
    torch.testing.assert_close(
        cosine_attention(batch_q[2:3], batch_k[2:3]), cosine_attention(batch_q, batch_k)[2:3]
    )
