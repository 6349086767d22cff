"""Reptile as a few-shot classifier, as the final version of Nichol et al. 2018 runs it on
Omniglot: every inner loop is Adam with β₁ = 0 on minibatches of the task's images.

One Adam keeps its second-moment estimates from task to task during training (the paper's
code restores only the weights after a task, not the optimiser); at test time each episode
starts from the state training left and restores it afterwards, so episodes stay
independent. Predictions on the queries are transductive (batch norm over all queries at
once) or not (over the support images and one query, for each query).
"""

from __future__ import annotations

import copy
import math
import zlib
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.func import functional_call

from metarl.backbones.conv4 import statistics_per_group
from metarl.config import require_positive
from metarl.devices import torch_threads
from metarl.learners.episodic import check_episode
from metarl.learners.maml import Params
from metarl.learners.maml_classifier import MAMLClassifier, replicas

BETAS = (0.0, 0.999)  # β₁ = 0: no momentum carried between an inner loop's minibatches


def _adam(params: list[Tensor], lr: float) -> torch.optim.Adam:
    """The inner loop's Adam: fused (one kernel a tensor), 3.4x faster a step than the
    per-tensor default on Conv4's 18 tensors (one thread), the same update to rounding."""
    return torch.optim.Adam(params, lr=lr, betas=BETAS, fused=True)


class ReptileClassifier(MAMLClassifier):
    """A Conv4 encoder and a ``max_ways`` head adapted by Adam (β₁ = 0) on minibatches.

    Args:
        encoder, embedding_size, max_ways: as :class:`MAMLClassifier`.
        inner_lr: Adam's learning rate in every inner loop.
        steps: inner iterations in training.
        batch: training images per inner iteration (``None``: all of the task's).
        test_steps: inner iterations at test time.
        test_batch: support images per test iteration (``None``: all of them).
        transductive: batch norm over all queries at test time, or over the support images
            and one query at a time.
    """

    def __init__(
        self,
        encoder: nn.Module,
        embedding_size: int,
        max_ways: int,
        inner_lr: float,
        steps: int,
        batch: int | None,
        test_steps: int,
        test_batch: int | None,
        transductive: bool = True,
    ) -> None:
        super().__init__(encoder, embedding_size, max_ways, inner_lr, steps, first_order=True)
        self.steps, self.batch = steps, batch
        self.test_steps, self.test_batch = test_steps, test_batch
        self.transductive = transductive
        self.names = [name for name, _ in self.net.named_parameters()]
        self.fast = [p.detach().clone().requires_grad_() for p in self.net.parameters()]
        self.inner = _adam(self.fast, inner_lr)

    def _apply(self, fn: Any, recurse: bool = True) -> ReptileClassifier:
        super()._apply(fn, recurse)  # .to(device): the inner loop's tensors follow
        with torch.no_grad():
            for i, p in enumerate(self.net.parameters()):
                self.fast[i].data = p.detach().clone()
        self.inner = _adam(self.fast, self.inner.defaults["lr"])
        return self

    def adapt(
        self,
        x: Tensor,
        y: Tensor,
        ways: int,
        steps: int,
        batch: int | None,
        rng: np.random.Generator,
        each_step: bool = False,
        fit: list[Tensor] | None = None,
    ) -> list[Params]:
        """φ after ``steps`` Adam iterations from θ on minibatches of ``batch`` of the
        images ``x`` (labels ``y``), drawn without replacement and reshuffled once used
        up; with ``each_step`` also θ and every intermediate φ, detached. ``fit``, if
        given, receives each iteration's (loss, accuracy) on its minibatch before the
        step: the task's training fit at no extra forward pass."""
        with torch.no_grad():
            for fast, theta in zip(self.fast, self.net.parameters(), strict=True):
                fast.copy_(theta)
        size = len(x) if batch is None else min(batch, len(x))
        order: list[int] = []
        snapshots = [self._snapshot()] if each_step else []
        with torch.enable_grad():
            for _ in range(steps):
                if len(order) < size:
                    order += rng.permutation(len(x)).tolist()
                picked, order = order[:size], order[size:]
                logits = functional_call(self.net, self._params(), (x[picked],))
                loss = F.cross_entropy(logits[:, :ways], y[picked])
                if fit is not None:
                    hits = (logits[:, :ways].argmax(-1) == y[picked]).float().mean()
                    fit.append(torch.stack([loss.detach(), hits]))
                self.inner.zero_grad()
                loss.backward()
                self.inner.step()
                if each_step:
                    snapshots.append(self._snapshot())
        return snapshots if each_step else [self._snapshot()]

    def _params(self) -> Params:
        return dict(zip(self.names, self.fast, strict=True))

    def _snapshot(self) -> Params:
        return {name: p.detach().clone() for name, p in self._params().items()}

    def predict(self, params: Params, support_x: Tensor, query_x: Tensor, ways: int) -> Tensor:
        """Query logits (M, N) of the adapted ``params`` for one episode."""
        if self.transductive:
            return functional_call(self.net, params, (query_x,))[:, :ways]
        # each query with the support images, so batch norm sees no other query: one pass
        # over the M runs (support, query) with statistics per run: 1.7x faster than a
        # vmap over the runs (one thread, 5-way 1-shot, 15 queries per class)
        runs = torch.cat([support_x.expand(len(query_x), *support_x.shape), query_x[:, None]], 1)
        with statistics_per_group(self.net, runs.shape[1]):
            logits = functional_call(self.net, params, (runs.flatten(0, 1),))
        return logits.unflatten(0, runs.shape[:2])[:, -1, :ways]

    @property
    def curve_steps(self) -> list[int]:
        """The test iterations after which :meth:`logits_by_step` predicts: 0, 1, 2, 5, 10,
        20, 50, ... up to ``test_steps`` (every one of 50 would cost 50 query passes)."""
        marks = [0] + [m * 10**e for e in range(len(str(self.test_steps))) for m in (1, 2, 5)]
        return sorted({m for m in marks if m < self.test_steps} | {self.test_steps})

    @torch.no_grad()
    def logits_by_step(
        self, support_x: Tensor, support_y: Tensor, query_x: Tensor, ways: int
    ) -> list[Tensor]:
        """Query logits (B, M, N) before adaptation and after the Adam iterations of
        :attr:`curve_steps`; each episode starts from training's Adam state and leaves it."""
        return self._test(support_x, support_y, query_x, ways, each_step=True)

    @torch.no_grad()
    def forward(self, support_x: Tensor, support_y: Tensor, query_x: Tensor, ways: int) -> Tensor:
        return self._test(support_x, support_y, query_x, ways, each_step=False)[-1]

    def _test(
        self, support_x: Tensor, support_y: Tensor, query_x: Tensor, ways: int, each_step: bool
    ) -> list[Tensor]:
        check_episode(support_x, support_y, query_x, ways)
        if ways > self.max_ways:
            raise ValueError(
                f"this Reptile classifier has {self.max_ways} outputs, got {ways} ways"
            )
        per_episode = []
        for xs, ys, xq in zip(support_x, support_y, query_x, strict=True):
            kept = copy.deepcopy(self.inner.state_dict())
            # minibatches drawn by the episode's own images: the same however episodes are
            # batched or spread over threads
            order = np.random.default_rng(zlib.crc32(xs.cpu().numpy().tobytes()))
            adapted = self.adapt(xs, ys, ways, self.test_steps, self.test_batch, order, each_step)
            self.inner.load_state_dict(kept)
            if each_step:
                adapted = [adapted[step] for step in self.curve_steps]
            per_episode.append([self.predict(p, xs, xq, ways) for p in adapted])
        return [torch.stack(step) for step in zip(*per_episode, strict=True)]

    def get_extra_state(self) -> dict[str, Any]:
        return {"inner": self.inner.state_dict()}

    def set_extra_state(self, state: dict[str, Any]) -> None:
        self.inner.load_state_dict(state["inner"])


class TaskThreads:
    """A meta-batch's Reptile inner loops on ``threads`` threads at once, the tasks split
    into contiguous shares, for CPUs with cores to spare: one Conv4 inner iteration on 10
    images is too small for intra-op threads to speed up (1.07x on two), while whole tasks
    side by side keep a core each busy.

    Each thread adapts with its own replica of the classifier (its own φ tensors and Adam,
    sharing θ), since a functional call swaps a module's parameters while it runs. The Adam
    state then no longer passes from task to task through the whole meta-batch: after every
    meta-batch the replicas' moment estimates are averaged (:meth:`_merge`), so each
    meta-batch starts from one state, the one checkpoints keep. With one thread this is the
    sequential loop, one Adam carried task to task as in the paper.

    Args:
        model: the classifier; its Adam state is the shared one.
        threads: threads adapting tasks at once.
    """

    def __init__(self, model: ReptileClassifier, threads: int) -> None:
        require_positive("TaskThreads", "threads", threads)
        self.model = model
        self.replicas = replicas(model, threads)
        self.pool = ThreadPoolExecutor(threads) if threads > 1 else None

    def adapt(
        self, x: Tensor, y: Tensor, ways: int, rng: np.random.Generator
    ) -> tuple[list[Params], Tensor]:
        """φ of each task from its images ``x[i]`` and labels ``y[i]`` (``model.steps``
        Adam iterations on minibatches of ``model.batch``), and each task's (loss,
        accuracy) over its minibatches, (T, 2). One thread draws every minibatch from
        ``rng``; more give each task a generator of its own, spawned from it."""
        tasks = np.arange(len(x))
        if self.pool is None:
            results = _adapt_tasks(self.model, x, y, ways, tasks, [rng] * len(x))
        else:
            rngs = rng.spawn(len(x))
            shares = np.array_split(tasks, len(self.replicas))
            busy = [(r, s) for r, s in zip(self.replicas, shares, strict=True) if len(s)]

            def share(pair: tuple[ReptileClassifier, np.ndarray]) -> list[tuple[Params, Tensor]]:
                replica, indices = pair
                return _adapt_tasks(replica, x, y, ways, indices, rngs)

            with torch_threads(1):
                parts = list(self.pool.map(share, busy))
            self._merge([r for r, _ in busy])
            results = [pair for part in parts for pair in part]
        return [phi for phi, _ in results], torch.stack([fit for _, fit in results])

    def _merge(self, busy: list[ReptileClassifier]) -> None:
        """Every replica's Adam state ← the busy replicas' mean moments (β₁ = 0: the first
        is the last gradient), with the step count s whose bias correction 1 − β₂ˢ is the
        mean of theirs, so the merged second moment is de-biased as theirs were."""
        beta2 = self.model.inner.param_groups[0]["betas"][1]
        for i in range(len(self.model.fast)):
            taken = [r.inner.state[r.fast[i]] for r in busy]
            counts = [float(t["step"]) for t in taken]
            decay = sum(beta2**c for c in counts) / len(counts)
            step = math.log(decay) / math.log(beta2) if decay > 0 else sum(counts) / len(counts)
            merged = {
                "step": torch.full_like(taken[0]["step"], step),
                "exp_avg": torch.stack([t["exp_avg"] for t in taken]).mean(0),
                "exp_avg_sq": torch.stack([t["exp_avg_sq"] for t in taken]).mean(0),
            }
            for replica in self.replicas:
                replica.inner.state[replica.fast[i]] = {k: v.clone() for k, v in merged.items()}

    def close(self) -> None:
        """Stop the threads."""
        if self.pool is not None:
            self.pool.shutdown()


def _adapt_tasks(
    model: ReptileClassifier,
    x: Tensor,
    y: Tensor,
    ways: int,
    tasks: np.ndarray,
    rngs: list[np.random.Generator],
) -> list[tuple[Params, Tensor]]:
    """φ and the mean (loss, accuracy) over its minibatches of each of ``tasks``, one after
    another with ``model``'s Adam."""
    out = []
    for i in tasks:
        fit: list[Tensor] = []
        phi = model.adapt(x[i], y[i], ways, model.steps, model.batch, rngs[i], fit=fit)[0]
        out.append((phi, torch.stack(fit).mean(0)))
    return out
