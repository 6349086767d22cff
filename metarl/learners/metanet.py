"""Meta Networks (Munkhdalai & Yu 2017, "Meta Networks", ICML).

Two learners, each with slow weights (trained across tasks by the optimiser) and fast
weights (generated within a task from loss gradients, the paper's meta information):

- the base learner b: a Conv4 encoder, then fully connected layers with the paper's layer
  augmentation: layer ℓ computes act(W_ℓ h + b_ℓ) + act(W*_ℓ h + b*_ℓ) with slow W and
  fast W*, act = ReLU in hidden layers and the identity in the output layer (the logits);
- the meta learner: a representation function u (its own Conv4 encoder, then one augmented
  linear layer with slow weights Q and task-level fast weights Q*) and the fast-weight
  generators m and d.

Per episode (Algorithm 1), with support set {(x'_i, y'_i)}_{i=1..S}:

1. task-level fast weights: Q* = d(∇_Q L_emb), from the gradient of a representation loss of
   u(Q, ·) on the support set. The paper computes L_emb on T examples (or, for a contrastive
   loss, T pairs) sampled from the support set; here it is a contrastive loss on the cosine
   similarity of *all* support pairs,
       L_emb = mean_{i<j} (cos(u(Q, x'_i), u(Q, x'_j)) − [y'_i = y'_j])²,
   a deterministic function of the support set that never goes flat: a margin hinge gives
   no gradient, and so no task information, once every pair lies beyond the margin.
2. example-level fast weights: W*_i = m(∇_i) with ∇_i = ∇_W L_task(b(W, x'_i), y'_i) the
   per-example gradient of the base learner's support cross-entropy (``vmap(grad)``),
   stored in the external memory M with key r'_i = u(Q, Q*, x'_i).
3. query x: r = u(Q, Q*, x), a = softmax_i cos(r'_i, r), W* = Σ_i a_i W*_i, and the logits
   are b(W, W*, x).

First order: both gradients are taken at detached values and enter m and d as inputs (the
paper's "meta information"); no meta-gradient flows through them. The meta-gradient of the
query loss still reaches every slow weight: W and both encoders through the query path and
the keys, Q through the keys, m and d through the fast weights they generate.

m and d are coordinate-wise here: each gradient coordinate g is preprocessed as in the paper
(after Andrychowicz et al. 2016) to (log|g| / p, sign g) if |g| ≥ e^-p, else (−1, e^p g),
and a small MLP maps those two numbers to one fast weight.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from metarl.backbones.cosine_attention import cosine_attention
from metarl.config import require_positive
from metarl.learners.episodic import EpisodicClassifier, check_episode
from metarl.learners.maml import Params
from metarl.learners.protonet import encode_episode

GRADIENT_P = 10.0  # p of the gradient preprocessing, the paper's (and Andrychowicz et al.'s)


def preprocess_gradient(g: Tensor, p: float = GRADIENT_P) -> Tensor:
    """Each coordinate of ``g`` as two numbers (..., 2): (log|g| / p, sign g) where
    |g| ≥ e^-p, else (−1, e^p g); magnitude and sign on comparable scales for any |g|."""
    large = g.abs() >= math.exp(-p)
    magnitude = torch.where(large, g.abs().clamp_min(math.exp(-p)).log() / p, -1.0)
    direction = torch.where(large, g.sign(), math.exp(p) * g)
    return torch.stack([magnitude, direction], dim=-1)


def generator(hidden: int) -> nn.Sequential:
    """A coordinate-wise fast-weight generator (m or d): an MLP 2 → hidden → hidden → 1 on
    preprocessed gradient coordinates.

    Its output layer starts near 0 (no bias, weights scaled by 0.01), so the fast weights do
    too and each augmented layer starts as its slow part. From the default initialisation
    a narrow MetaNet (16 channels) on 5-way 1-shot Omniglot stayed near chance for 40 to 80
    updates on 2 seeds of 6; starting near 0, all 6 averaged over 60% training accuracy in
    updates 20 to 40.
    """
    out = nn.Linear(hidden, 1)
    with torch.no_grad():
        out.weight.mul_(0.01)
        out.bias.zero_()
    return nn.Sequential(nn.Linear(2, hidden), nn.ReLU(), nn.Linear(hidden, hidden), nn.ReLU(), out)


def generate(net: nn.Module, gradients: Params) -> Params:
    """Fast weights, one per gradient coordinate: net(preprocess(∇)), shapes kept."""
    return {name: net(preprocess_gradient(g)).squeeze(-1) for name, g in gradients.items()}


def augmented_mlp(h: Tensor, slow: Params, fast: Params | None, layers: int) -> Tensor:
    """The layer-augmented MLP: h_{ℓ+1} = act(W_ℓ h_ℓ + b_ℓ) + act(W*_ℓ h_ℓ + b*_ℓ).

    ``slow`` holds ``{ℓ}.weight`` (O, I) and ``{ℓ}.bias`` (O,) for ℓ < ``layers``; ``fast``
    the same names with leading dimensions that broadcast against h's (..., I), one fast
    weight per row of h if need be, or ``None`` for slow weights alone. act is ReLU but for
    the output layer, whose two parts are summed as they are.
    """
    for layer in range(layers):
        out = F.linear(h, slow[f"{layer}.weight"], slow[f"{layer}.bias"])
        if fast is not None:
            weight, bias = fast[f"{layer}.weight"], fast[f"{layer}.bias"]
            fast_out = (weight @ h.unsqueeze(-1)).squeeze(-1) + bias
            if layer < layers - 1:
                out, fast_out = F.relu(out), F.relu(fast_out)
            out = out + fast_out
        elif layer < layers - 1:
            out = F.relu(out)
        h = out
    return h


def read_memory(keys: Tensor, memory: Params, queries: Tensor) -> Params:
    """Fast weights for each query, read by cosine attention: W*_q = Σ_i a_qi W*_i with
    a_q = softmax_i cos(r'_i, r_q).

    Args:
        keys: the memory's keys r' (B, S, D).
        memory: stored fast weights, each (B, S, ...).
        queries: read keys r (B, M, D).

    Returns:
        the fast weights read, each (B, M, ...).
    """
    attention = cosine_attention(queries, keys)  # (B, M, S)
    return {
        name: (attention @ stored.flatten(2)).view(*attention.shape[:2], *stored.shape[2:])
        for name, stored in memory.items()
    }


def representation_loss(params: Params, features: Tensor, labels: Tensor) -> Tensor:
    """L_emb of one episode: mean over support pairs i < j of (cos(r'_i, r'_j) − [y_i = y_j])²
    with r' = u(Q, x') from features (S, F); 0 for a single support image."""
    keys = F.normalize(augmented_mlp(features, params, None, 1), dim=-1)
    i, j = torch.triu_indices(len(labels), len(labels), offset=1, device=features.device)
    cosine = (keys[i] * keys[j]).sum(-1)
    same = (labels[i] == labels[j]).to(cosine.dtype)
    return (cosine - same).pow(2).sum() / max(len(i), 1)


class MetaNet(EpisodicClassifier):
    """Meta Networks: a base learner and a meta learner with slow and fast weights.

    Args:
        base_encoder: the base learner's image encoder, images (n, C, H, W) → (n, features).
        key_encoder: u's image encoder, the same shapes (``Conv4()`` for both in
            ``metanet-omniglot``).
        features: width of both encoders' output.
        max_ways: outputs of the base learner; an N-way episode uses the first N.
        hidden: width of the base learner's hidden augmented layer.
        key_size: width of u's output, the memory keys.
        generator_hidden: width of m's and d's two hidden layers.
    """

    def __init__(
        self,
        base_encoder: nn.Module,
        key_encoder: nn.Module,
        features: int,
        max_ways: int,
        hidden: int = 64,
        key_size: int = 64,
        generator_hidden: int = 20,
    ) -> None:
        super().__init__()
        for name, value in (
            ("features", features),
            ("max_ways", max_ways),
            ("hidden", hidden),
            ("key_size", key_size),
            ("generator_hidden", generator_hidden),
        ):
            require_positive("MetaNet", name, value)
        self.max_ways = int(max_ways)
        self.base_encoder = base_encoder
        self.base = nn.ModuleList([nn.Linear(features, hidden), nn.Linear(hidden, max_ways)])
        self.key_encoder = key_encoder
        self.key = nn.ModuleList([nn.Linear(features, key_size)])  # Q
        self.m = generator(generator_hidden)
        self.d = generator(generator_hidden)

    def task_gradient(self, features: Tensor, labels: Tensor) -> Params:
        """∇_Q L_emb of each episode from u's support features (B, S, F) and labels (B, S),
        taken at detached values: each (B, ...) like Q."""
        slow = {name: q.detach() for name, q in self.key.named_parameters()}
        grad = torch.func.vmap(torch.func.grad(representation_loss), in_dims=(None, 0, 0))
        return grad(slow, features.detach(), labels)

    def example_gradients(self, features: Tensor, labels: Tensor, ways: int) -> Params:
        """∇_i = ∇_W L_task(b(W, x'_i), y'_i) of each support example from the base
        learner's features (B, S, F) and labels (B, S), taken at detached values: each
        (B, S, ...) like W."""
        slow = {name: w.detach() for name, w in self.base.named_parameters()}

        def loss(params: Params, h: Tensor, y: Tensor) -> Tensor:
            logits = augmented_mlp(h, params, None, len(self.base))[:ways]
            return F.cross_entropy(logits[None], y[None])

        grad = torch.func.vmap(torch.func.grad(loss), in_dims=(None, 0, 0))
        gradients = grad(slow, features.detach().flatten(0, 1), labels.flatten())
        return {name: g.unflatten(0, labels.shape) for name, g in gradients.items()}

    def task_fast_weights(self, features: Tensor, labels: Tensor) -> Params:
        """Q* = d(∇_Q L_emb) of each episode: each (B, ...) like Q."""
        return generate(self.d, self.task_gradient(features, labels))

    def example_fast_weights(self, features: Tensor, labels: Tensor, ways: int) -> Params:
        """W*_i = m(∇_i) of each support example, the memory's values: each (B, S, ...)
        like W."""
        return generate(self.m, self.example_gradients(features, labels, ways))

    def forward(self, support_x: Tensor, support_y: Tensor, query_x: Tensor, ways: int) -> Tensor:
        """Query logits (B, M, N) of the base learner with its slow weights and the fast
        weights read from the episode's memory."""
        check_episode(support_x, support_y, query_x, ways)
        if ways > self.max_ways:
            raise ValueError(f"this MetaNet has {self.max_ways} outputs, got {ways} ways")
        key_support, key_query = encode_episode(self.key_encoder, support_x, query_x)
        base_support, base_query = encode_episode(self.base_encoder, support_x, query_x)
        q = dict(self.key.named_parameters())
        q_star = self.task_fast_weights(key_support, support_y)
        q_star = {k: v.unsqueeze(1) for k, v in q_star.items()}  # shared by the episode's images
        keys = augmented_mlp(key_support, q, q_star, 1)  # r'_i = u(Q, Q*, x'_i)
        query_keys = augmented_mlp(key_query, q, q_star, 1)  # r = u(Q, Q*, x)
        memory = self.example_fast_weights(base_support, support_y, ways)
        fast = read_memory(keys, memory, query_keys)
        w = dict(self.base.named_parameters())
        return augmented_mlp(base_query, w, fast, len(self.base))[..., :ways]
