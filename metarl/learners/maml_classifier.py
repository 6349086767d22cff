"""MAML, first-order MAML and Proto-MAML as few-shot classifiers.

The network is an encoder and a linear head. Each episode adapts all of it by inner
gradient steps on the support set's cross-entropy (:class:`metarl.learners.maml.MAML`);
the query logits come from the adapted parameters, so the training loss on them carries
the meta-gradient. The head has ``max_ways`` outputs of which an N-way episode uses the
first N; Proto-MAML instead sets the head of every episode from the support prototypes
(Triantafillou et al. 2020), which fits any N.

Batch norm always normalises with the statistics of the batch at hand, at test time too,
as in Finn et al.'s code: running averages over episodes would mix tasks the inner loop
tells apart.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from metarl.backbones.base import require_positive
from metarl.learners.episodic import EpisodicClassifier, check_episode
from metarl.learners.maml import MAML, Params, prototype_head, sgd_steps
from metarl.learners.protonet import prototypes


class MAMLClassifier(EpisodicClassifier):
    """An encoder and a linear head, adapted per episode by MAML.

    Args:
        encoder: maps images (n, C, H, W) to embeddings (n, embedding_size).
        embedding_size: width of the encoder's output.
        max_ways: outputs of the learned head (unused with ``proto_head``).
        inner_lr: inner step size α, or one per step.
        steps: inner gradient steps.
        first_order: first-order MAML.
        proto_head: Proto-MAML: initialise each episode's head from its prototypes.
    """

    def __init__(
        self,
        encoder: nn.Module,
        embedding_size: int,
        max_ways: int,
        inner_lr: float | Sequence[float] = 0.4,
        steps: int = 1,
        first_order: bool = False,
        proto_head: bool = False,
    ) -> None:
        super().__init__()
        require_positive("MAMLClassifier", "max_ways", max_ways)
        self.max_ways, self.proto_head = max_ways, proto_head
        for module in encoder.modules():
            if isinstance(module, nn.modules.batchnorm._BatchNorm):
                module.track_running_stats = False
                module.running_mean = module.running_var = module.num_batches_tracked = None
        self.net = nn.Sequential(encoder, nn.Linear(embedding_size, max_ways))
        self.maml = MAML(self.net, inner_lr, steps, first_order)

    def initial_params(self, support_x: Tensor, support_y: Tensor, ways: int) -> Params:
        """θ for one episode (support_x (S, C, H, W)), with the head cut or set to N ways."""
        params = self.maml.meta_params()
        if self.proto_head:
            encoder = {k[2:]: v for k, v in params.items() if k.startswith("0.")}
            embeddings = torch.func.functional_call(self.net[0], encoder, (support_x,))
            weight, bias = prototype_head(prototypes(embeddings[None], support_y[None], ways)[0])
        else:
            if ways > self.max_ways:
                raise ValueError(
                    f"this MAML classifier has {self.max_ways} outputs, got {ways} ways"
                )
            weight, bias = params["1.weight"][:ways], params["1.bias"][:ways]
        return {**params, "1.weight": weight, "1.bias": bias}

    def forward(self, support_x: Tensor, support_y: Tensor, query_x: Tensor, ways: int) -> Tensor:
        check_episode(support_x, support_y, query_x, ways)
        logits = []
        for xs, ys, xq in zip(support_x, support_y, query_x, strict=True):
            start = self.initial_params(xs, ys, ways)
            phi = self.maml.adapt(
                lambda p, xs=xs, ys=ys: F.cross_entropy(self.maml(p, xs), ys), start
            )
            logits.append(self.maml(phi, xq))
        return torch.stack(logits)

    def logits_by_step(
        self, support_x: Tensor, support_y: Tensor, query_x: Tensor, ways: int
    ) -> list[Tensor]:
        """Query logits (B, M, N) before adaptation and after each inner step: the
        few-shot adaptation curve."""
        check_episode(support_x, support_y, query_x, ways)
        curve: list[list[Tensor]] = [[] for _ in range(len(self.maml.rates) + 1)]
        for xs, ys, xq in zip(support_x, support_y, query_x, strict=True):
            params = self.initial_params(xs, ys, ways)
            for j, rate in enumerate([None, *self.maml.rates]):
                if rate is not None:
                    loss = lambda p, xs=xs, ys=ys: F.cross_entropy(self.maml(p, xs), ys)  # noqa: E731
                    params = sgd_steps(params, loss, [rate], create_graph=False)
                curve[j].append(self.maml(params, xq).detach())
        return [torch.stack(step) for step in curve]
