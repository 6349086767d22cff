"""Optimization-based meta-learners on functional parameters: MAML, first-order MAML,
Reptile and Proto-MAML's prototype-initialised head.

The wrapped model is never rewritten: its parameters are read as a dict, adapted by
gradient steps into new tensors, and the model is run on them with
``torch.func.functional_call``. Learners take a loss *function* of the parameters, so the
same code adapts on a support set's cross-entropy or on a policy-gradient surrogate.

- MAML (Finn et al. 2017): φ_0 = θ, φ_{j+1} = φ_j − α_j ∇L_support(φ_j); the meta-gradient
  ∇_θ L_query(φ_k) flows back through every step, second-order terms included.
- First-order MAML drops those terms: each inner gradient is a constant, so the
  meta-gradient is ∇_φ L_query(φ_k) taken at the adapted parameters.
- Reptile (Nichol et al. 2018): k inner steps per task, then θ ← θ + β · mean_i(φ_i − θ).
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable, Iterator, Mapping, Sequence

import torch
from torch import Tensor, nn
from torch.func import functional_call

from metarl.config import require_positive

Params = dict[str, Tensor]
LossFn = Callable[[Params], Tensor]


class DivergenceError(FloatingPointError):
    """An inner step produced a NaN or infinite loss."""


def _check_rates(owner: str, lr: float | Sequence[float], steps: int) -> list[float]:
    steps = require_positive(owner, "steps", steps)
    rates = [float(lr)] * steps if isinstance(lr, int | float) else [float(x) for x in lr]
    if len(rates) != steps:
        raise ValueError(f"{owner}: {len(rates)} inner learning rates for {steps} steps")
    if not all(math.isfinite(r) and r > 0 for r in rates):
        raise ValueError(f"{owner}: inner learning rates must be positive and finite, got {lr!r}")
    return rates


def sgd_steps(
    params: Mapping[str, Tensor],
    loss_fn: LossFn,
    rates: Sequence[float],
    create_graph: bool,
    check_finite: bool = True,
) -> Params:
    """``len(rates)`` gradient-descent steps from ``params`` on ``loss_fn``.

    With ``create_graph`` the result stays a differentiable function of ``params`` (the
    second-order meta-gradient); without it each step's gradient is a constant.
    ``check_finite=False`` skips the divergence check, which cannot run under ``vmap``
    (for losses already checked when the same steps were first taken).

    Raises:
        DivergenceError: a loss is NaN or infinite.
    """
    # torch.func.grad takes partial derivatives, each parameter an independent input (a head
    # computed from θ, as Proto-MAML's, is then stepped on its own), stays differentiable
    # for the outer meta-gradient, and ignores an outer no_grad (evaluation).
    step_grad = torch.func.grad_and_value(loss_fn)
    current = dict(params)
    for step, rate in enumerate(rates):
        grads, loss = step_grad(current)
        if check_finite and not torch.isfinite(loss):
            raise DivergenceError(f"inner step {step + 1}: the loss is {loss.item()}")
        current = {
            name: p - rate * (grads[name] if create_graph else grads[name].detach())
            for name, p in current.items()
        }
    return current


class MAML(nn.Module):
    """MAML around any model: ``adapt`` returns the adapted parameters of one task.

    Args:
        model: the network; its parameters are the meta-parameters θ.
        inner_lr: the inner step size α, or one per step.
        steps: inner gradient steps k.
        first_order: drop the second-order terms (first-order MAML).

    Example:
        >>> maml = MAML(net, inner_lr=0.4, steps=1)  # doctest: +SKIP
        >>> phi = maml.adapt(lambda p: F.cross_entropy(maml(p, xs), ys))  # doctest: +SKIP
        >>> F.cross_entropy(maml(phi, xq), yq).backward()  # the meta-gradient, in net.grad
    """

    def __init__(
        self,
        model: nn.Module,
        inner_lr: float | Sequence[float] = 0.4,
        steps: int = 1,
        first_order: bool = False,
    ) -> None:
        super().__init__()
        self.model = model
        self.rates = _check_rates("MAML", inner_lr, steps)
        self.first_order = first_order

    @contextlib.contextmanager
    def steps_at_test(self, steps: int) -> Iterator[None]:
        """Within the block :meth:`adapt` takes ``steps`` inner steps: the trained rates,
        the last one repeated (Finn et al. train Omniglot with 1 step and test with 3)."""
        require_positive("MAML.steps_at_test", "steps", steps)
        trained = self.rates
        self.rates = (trained + [trained[-1]] * steps)[:steps]
        try:
            yield
        finally:
            self.rates = trained

    def forward(self, params: Mapping[str, Tensor], *args: Tensor) -> Tensor:
        """The model's output on ``args`` with ``params`` in place of its own."""
        return functional_call(self.model, dict(params), args)

    def meta_params(self) -> Params:
        """θ, as a dict of the model's own parameter tensors."""
        return dict(self.model.named_parameters())

    def adapt(self, loss_fn: LossFn, params: Mapping[str, Tensor] | None = None) -> Params:
        """φ_k of one task: k inner steps on ``loss_fn`` from ``params`` (default θ)."""
        return self._steps(loss_fn, self.meta_params() if params is None else params, self.rates)

    def adapt_step(
        self,
        loss_fn: LossFn,
        params: Mapping[str, Tensor],
        step: int,
        check_finite: bool = True,
    ) -> Params:
        """φ_{j+1} from φ_j = ``params``: inner step ``step`` (j, from 0) alone, with its own
        rate α_j. Meta-RL takes one step at a time: each step's loss comes from trajectories
        sampled with the parameters that step starts from. ``check_finite``: see
        :func:`sgd_steps`."""
        return self._steps(loss_fn, params, self.rates[step : step + 1], check_finite)

    def _steps(
        self,
        loss_fn: LossFn,
        start: Mapping[str, Tensor],
        rates: list[float],
        check_finite: bool = True,
    ) -> Params:
        if self.first_order:  # the adapted parameters are the start plus a constant
            detached = {k: v.detach() for k, v in start.items()}
            constant = sgd_steps(detached, loss_fn, rates, False, check_finite)
            return {k: start[k] + (constant[k] - start[k]).detach() for k in start}
        return sgd_steps(start, loss_fn, rates, True, check_finite)


class Reptile:
    """Reptile around any model: adapt each task by plain SGD, then move θ toward the
    adapted parameters.

    Args:
        model: the network holding θ.
        inner_lr: the inner step size, or one per step.
        steps: inner gradient steps k.
        outer_lr: β, the fraction of the way θ moves toward the tasks' mean φ.
    """

    def __init__(
        self,
        model: nn.Module,
        inner_lr: float | Sequence[float] = 0.001,
        steps: int = 5,
        outer_lr: float = 1.0,
    ) -> None:
        if not (math.isfinite(outer_lr) and outer_lr > 0):
            raise ValueError(f"Reptile: outer_lr must be positive and finite, got {outer_lr!r}")
        self.model = model
        self.rates = _check_rates("Reptile", inner_lr, steps)
        self.outer_lr = outer_lr

    def adapt(self, loss_fn: LossFn) -> Params:
        """φ of one task, detached: k SGD steps on ``loss_fn`` from θ."""
        start = {k: v.detach() for k, v in self.model.named_parameters()}
        return {k: v.detach() for k, v in sgd_steps(start, loss_fn, self.rates, False).items()}

    @torch.no_grad()
    def update(self, adapted: Sequence[Mapping[str, Tensor]]) -> None:
        """θ ← θ + β · mean_i(φ_i − θ), in place."""
        for name, theta in self.model.named_parameters():
            mean = torch.stack([phi[name] for phi in adapted]).mean(0)
            theta.add_(mean - theta, alpha=self.outer_lr)


def prototype_head(prototypes: Tensor) -> tuple[Tensor, Tensor]:
    """Proto-MAML's linear head (Triantafillou et al. 2020) from class prototypes (N, D):
    weights 2c_k and biases −‖c_k‖², so that its logits 2c_k·x − ‖c_k‖² equal ProtoNet's
    −‖x − c_k‖² up to ‖x‖², the same for every class."""
    return 2 * prototypes, -prototypes.pow(2).sum(-1)
