"""MAML, first-order MAML and Proto-MAML as few-shot classifiers.

The network is an encoder and a linear head. Each episode adapts all of it by inner
gradient steps on the support set's cross-entropy (:class:`metarl.learners.maml.MAML`);
the query logits come from the adapted parameters, so the training loss on them carries
the meta-gradient. The head has ``max_ways`` outputs of which an N-way episode uses the
first N; Proto-MAML instead sets the head of every episode from the support prototypes
(Triantafillou et al. 2020), which fits any N. With ``zero_head`` every episode's head
starts at zero (Kao et al. 2022's zeroing trick): no initial head to unlearn, so the first
inner step writes each class's weights from its support embeddings alone,
α/|S| · Σ_i (y_ik − 1/N) e_i.

Batch norm always normalises with the statistics of the batch at hand, at test time too,
as in Finn et al.'s code: running averages over episodes would mix tasks the inner loop
tells apart.

A meta-batch adapts either episode by episode (through ``MAML.adapt``) or task-batched:
every episode gets its own copy of the parameters (a leading episode dimension on each
tensor) and the same network runs on all of them in one call,
``torch.func.vmap(functional_call(net, ...))`` over the episode dimension. Under ``vmap``
each episode's batch norm takes the statistics of that episode's own images, exactly as in
the loop (it keeps no running statistics, which ``vmap`` could not update per episode),
and the per-episode gradients are those with respect to the copies, so the two give the
same logits and meta-gradient (tested).
"""

from __future__ import annotations

import contextlib
import copy
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import AbstractContextManager
from typing import Literal, TypeVar

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from metarl.config import require_positive
from metarl.devices import torch_threads
from metarl.learners.episodic import EpisodicClassifier, check_episode
from metarl.learners.maml import MAML, LossFn, Params, prototype_head, sgd_steps
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
        zero_head: start each episode's head at zero (the learned head is unused).
        batched: adapt the meta-batch task-batched (True) or episode by episode (False);
            ``"auto"``: task-batched on accelerators, episode by episode on CPU, where task
            batching was no faster than the loop at 1 query per class, slower at 15, and took
            2-3x its memory (``benchmarks/maml_speed.py``, one thread).
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
        batched: bool | Literal["auto"] = "auto",
        zero_head: bool = False,
    ) -> None:
        super().__init__()
        require_positive("MAMLClassifier", "max_ways", max_ways)
        if proto_head and zero_head:
            raise ValueError(
                "MAMLClassifier: the head starts from prototypes or from zero, not both"
            )
        if batched not in (True, False, "auto"):
            raise ValueError(
                f"MAMLClassifier: batched must be True, False or 'auto', got {batched!r}"
            )
        self.max_ways, self.proto_head, self.zero_head = max_ways, proto_head, zero_head
        for module in encoder.modules():
            if isinstance(module, nn.modules.batchnorm._BatchNorm):
                module.track_running_stats = False
                module.running_mean = module.running_var = module.num_batches_tracked = None
        self.net = nn.Sequential(encoder, nn.Linear(embedding_size, max_ways))
        self.maml = MAML(self.net, inner_lr, steps, first_order)
        self.batched = batched

    def batches_on(self, device: torch.device) -> bool:
        """Whether meta-batches on ``device`` adapt task-batched."""
        if self.batched == "auto":
            return device.type != "cpu"
        return self.batched

    def initial_params(self, support_x: Tensor, support_y: Tensor, ways: int) -> Params:
        """θ for one episode (support_x (S, C, H, W)), with the head cut or set to N ways."""
        params = self.maml.meta_params()
        if self.proto_head:
            embeddings = torch.func.functional_call(self.net[0], _encoder(params), (support_x,))
            weight, bias = prototype_head(prototypes(embeddings[None], support_y[None], ways)[0])
            return {**params, "1.weight": weight, "1.bias": bias}
        return self._cut_head(params, ways)

    def batched_initial_params(self, support_x: Tensor, support_y: Tensor, ways: int) -> Params:
        """θ of every episode (support_x (T, S, C, H, W)) as in :meth:`initial_params`, each
        tensor with a leading episode dimension: an expanded view of θ, or the episode's
        prototype head."""
        theta = self.maml.meta_params()
        params = {k: v.expand(len(support_x), *v.shape) for k, v in theta.items()}
        if self.proto_head:
            embeddings = _batched_call(self.net[0], _encoder(params), support_x)
            weight, bias = prototype_head(prototypes(embeddings, support_y, ways))
            return {**params, "1.weight": weight, "1.bias": bias}
        return self._cut_head(params, ways)

    def _cut_head(self, params: Params, ways: int) -> Params:
        """``params`` with the learned head's first ``ways`` outputs, or zeros of that shape
        with ``zero_head``."""
        if ways > self.max_ways:
            raise ValueError(f"this MAML classifier has {self.max_ways} outputs, got {ways} ways")
        head = {
            "1.weight": params["1.weight"][..., :ways, :],
            "1.bias": params["1.bias"][..., :ways],
        }
        if self.zero_head:
            head = {k: torch.zeros_like(v) for k, v in head.items()}
        return {**params, **head}

    def _batched_loss(self, support_x: Tensor, support_y: Tensor) -> LossFn:
        """The task-batched inner loss: the sum over episodes of each one's mean support
        cross-entropy, so that each episode's copy of the parameters gets its own gradient."""

        def loss(params: Params) -> Tensor:
            logits = _batched_call(self.net, params, support_x)
            return (
                F.cross_entropy(logits.transpose(1, 2), support_y, reduction="none").mean(1).sum()
            )

        return loss

    def forward(self, support_x: Tensor, support_y: Tensor, query_x: Tensor, ways: int) -> Tensor:
        check_episode(support_x, support_y, query_x, ways)
        if self.batches_on(support_x.device):
            start = self.batched_initial_params(support_x, support_y, ways)
            phi = self.maml.adapt(self._batched_loss(support_x, support_y), start)
            return _batched_call(self.net, phi, query_x)
        episodes = zip(support_x, support_y, query_x, strict=True)
        return torch.stack([self._episode_logits(xs, ys, xq, ways) for xs, ys, xq in episodes])

    def _episode_logits(self, xs: Tensor, ys: Tensor, xq: Tensor, ways: int) -> Tensor:
        """Query logits (M, N) of one episode (support ``xs`` (S, C, H, W)) after its inner
        steps."""
        start = self.initial_params(xs, ys, ways)
        phi = self.maml.adapt(lambda p: F.cross_entropy(self.maml(p, xs), ys), start)
        return self.maml(phi, xq)

    def episodes_meta_gradient(
        self,
        support_x: Tensor,
        support_y: Tensor,
        query_x: Tensor,
        query_y: Tensor,
        ways: int,
        scale: float,
    ) -> tuple[list[Tensor], Tensor, Tensor]:
        """The gradient of ``scale`` × the sum over these episodes of each one's mean query
        cross-entropy, with respect to ``parameters()`` (in their order), taken episode by
        episode: each episode's backward runs right after its forward, while its activations
        are still in cache, and only one episode's graph is alive at a time. Returns the
        gradients, the scaled loss and the detached query logits (B, M, N). The parameters'
        ``.grad`` is left alone, so several threads can each take a share of a meta-batch.
        """
        check_episode(support_x, support_y, query_x, ways)
        params = list(self.parameters())
        grads = [torch.zeros_like(p) for p in params]
        losses, logits = [], []
        for xs, ys, xq, yq in zip(support_x, support_y, query_x, query_y, strict=True):
            episode_logits = self._episode_logits(xs, ys, xq, ways)
            loss = scale * F.cross_entropy(episode_logits, yq)
            for total, grad in zip(
                grads, torch.autograd.grad(loss, params, allow_unused=True), strict=True
            ):
                if grad is not None:  # a head set per episode (prototypes, zeros) is unused
                    total += grad
            losses.append(loss.detach())
            logits.append(episode_logits.detach())
        return grads, torch.stack(losses).sum(), torch.stack(logits)

    def logits_by_step(
        self, support_x: Tensor, support_y: Tensor, query_x: Tensor, ways: int
    ) -> list[Tensor]:
        """Query logits (B, M, N) before adaptation and after each inner step: the
        few-shot adaptation curve."""
        check_episode(support_x, support_y, query_x, ways)
        if self.batches_on(support_x.device):
            start = self.batched_initial_params(support_x, support_y, ways)
            loss = self._batched_loss(support_x, support_y)
            return self._curve(start, loss, lambda p: _batched_call(self.net, p, query_x))
        per_episode = [
            self._curve(
                self.initial_params(xs, ys, ways),
                lambda p, xs=xs, ys=ys: F.cross_entropy(self.maml(p, xs), ys),
                lambda p, xq=xq: self.maml(p, xq),
            )
            for xs, ys, xq in zip(support_x, support_y, query_x, strict=True)
        ]
        return [torch.stack(step) for step in zip(*per_episode, strict=True)]

    def _curve(
        self, params: Params, loss_fn: LossFn, query_logits: Callable[[Params], Tensor]
    ) -> list[Tensor]:
        """``query_logits`` at ``params`` and after each first-order inner step on ``loss_fn``."""
        curve = [query_logits(params).detach()]
        for rate in self.maml.rates:
            params = sgd_steps(params, loss_fn, [rate], create_graph=False)
            curve.append(query_logits(params).detach())
        return curve


def _encoder(params: Params) -> Params:
    """The encoder's (``net[0]``'s) entries of the network's parameters."""
    return _child(params, "0")


def _child(params: Params, name: str) -> Params:
    """The entries of ``params`` under the submodule ``name``, named relative to it."""
    prefix = f"{name}."
    return {k.removeprefix(prefix): v for k, v in params.items() if k.startswith(prefix)}


def _batched_call(module: nn.Module, params: Params, x: Tensor) -> Tensor:
    """``module`` on T episodes at once, episode t on ``x[t]`` (T, n, ...) with parameters
    ``params[name][t]``: outputs (T, n, ...). Each episode's random draws (dropout) are its
    own, as in the loop."""
    return torch.func.vmap(
        lambda p, xt: torch.func.functional_call(module, p, (xt,)), randomness="different"
    )(params, x)


M = TypeVar("M", bound=nn.Module)


def replicas(model: M, count: int) -> list[M]:
    """``model`` and ``count - 1`` deep copies of it that share its parameters (the same
    tensors) but nothing else, for threads that each run their own functional calls."""
    shared = {id(p): p for p in model.parameters()}
    return [model] + [copy.deepcopy(model, dict(shared)) for _ in range(count - 1)]


class EpisodeThreads:
    """The meta-gradient of a :class:`MAMLClassifier`'s mean query cross-entropy over a
    meta-batch, taken episode by episode (:meth:`MAMLClassifier.episodes_meta_gradient`)
    with the meta-batch split into ``threads`` contiguous shares, each on its own thread.

    On a CPU this is faster than one backward through the whole meta-batch: each episode's
    backward runs while its activations are in cache, only one episode's graph per thread is
    held, and the threads use the cores without splitting Conv4's small operations among
    them (each runs with one intra-op thread). Every thread has its own copy of the modules,
    sharing the parameters, because a functional call swaps a module's parameters for its
    duration. The gradient equals the batch's up to the order of floating-point sums.

    Args:
        model: the classifier; its parameters get the gradient.
        threads: threads sharing each meta-batch.
        autocast: the context each share's forward runs in (mixed precision).
    """

    def __init__(
        self,
        model: MAMLClassifier,
        threads: int,
        autocast: Callable[[], AbstractContextManager[None]] = contextlib.nullcontext,
    ) -> None:
        require_positive("EpisodeThreads", "threads", threads)
        self.model, self.autocast = model, autocast
        self.replicas = replicas(model, threads)
        self.pool = ThreadPoolExecutor(threads) if threads > 1 else None

    def backward(
        self, support_x: Tensor, support_y: Tensor, query_x: Tensor, query_y: Tensor, ways: int
    ) -> tuple[float, Tensor]:
        """Add the meta-gradient to the parameters' ``.grad``; return the loss and the
        detached query logits (B, M, N)."""
        count = len(support_x)
        shares = [s for s in np.array_split(np.arange(count), len(self.replicas)) if len(s)]

        def share(replica: MAMLClassifier, indices: np.ndarray) -> tuple[list[Tensor], ...]:
            part = slice(int(indices[0]), int(indices[-1]) + 1)
            with self.autocast():
                return replica.episodes_meta_gradient(
                    support_x[part], support_y[part], query_x[part], query_y[part], ways, 1 / count
                )

        if self.pool is None:
            results = [share(self.model, shares[0])]
        else:
            with torch_threads(1):
                results = list(self.pool.map(share, self.replicas, shares))
        for i, param in enumerate(self.model.parameters()):
            grad = sum(grads[i] for grads, _, _ in results)
            param.grad = grad if param.grad is None else param.grad + grad
        loss = sum(float(loss) for _, loss, _ in results)
        return loss, torch.cat([logits for _, _, logits in results])

    def close(self) -> None:
        """Stop the threads."""
        if self.pool is not None:
            self.pool.shutdown()
