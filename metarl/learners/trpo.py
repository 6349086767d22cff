"""Trust-region policy optimisation's update (Schulman et al. 2015), on any differentiable
surrogate and KL, so that MAML-TRPO can take it through the adaptation of every task.

Appendix C of the paper: the search direction s solves F s = g by conjugate gradient, with F
the Hessian of the mean KL divergence (the Fisher matrix at the old policy), reached only
through Hessian-vector products; the step is scaled to the trust region ½ sᵀF s = δ and
shrunk by a backtracking line search until the surrogate improves and the KL stays ≤ δ.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Sequence

import torch
from torch import Tensor

from metarl.config import require, require_positive_ints


@dataclasses.dataclass
class TRPOConfig:
    """Attributes:
    max_kl: δ, the trust region's bound on the mean KL divergence.
    cg_iters: conjugate-gradient iterations.
    cg_damping: added to the Fisher-vector product (F + λI) for stability.
    backtrack_ratio: the line search's shrink factor.
    line_search_steps: the most shrinks tried before the step is rejected."""

    max_kl: float = 0.01
    cg_iters: int = 10
    cg_damping: float = 1e-5
    backtrack_ratio: float = 0.8
    line_search_steps: int = 15

    def __post_init__(self) -> None:
        require(self.max_kl > 0, "trpo.max_kl", self.max_kl, "a positive number")
        require_positive_ints(self, "trpo", ("cg_iters", "line_search_steps"))
        require(self.cg_damping >= 0, "trpo.cg_damping", self.cg_damping, "a number >= 0")
        require(
            0 < self.backtrack_ratio < 1,
            "trpo.backtrack_ratio",
            self.backtrack_ratio,
            "a number in (0, 1)",
        )


def conjugate_gradient(
    matvec: Callable[[Tensor], Tensor], b: Tensor, iters: int, tol: float = 1e-10
) -> Tensor:
    """x ≈ A⁻¹b for a symmetric positive-definite A given as ``matvec``."""
    x = torch.zeros_like(b)
    r, p = b.clone(), b.clone()
    rr = r @ r
    for _ in range(iters):
        if rr < tol:
            break
        ap = matvec(p)
        alpha = rr / (p @ ap)
        x += alpha * p
        r -= alpha * ap
        rr_new = r @ r
        p = r + (rr_new / rr) * p
        rr = rr_new
    return x


def flat(tensors: Sequence[Tensor]) -> Tensor:
    return torch.cat([t.reshape(-1) for t in tensors])


def _natural_direction(
    params: Sequence[Tensor], loss: Tensor, kl: Tensor, config: TRPOConfig
) -> tuple[Tensor, float]:
    """s ≈ F⁻¹g by conjugate gradient on Fisher-vector products, and sᵀFs / 2; the graphs
    of ``loss`` and ``kl`` are freed on return, before the line search."""
    g = flat(torch.autograd.grad(loss, params, retain_graph=True))
    kl_grads = flat(torch.autograd.grad(kl, params, create_graph=True))

    def fisher_vector(v: Tensor) -> Tensor:
        hv = torch.autograd.grad(kl_grads @ v, params, retain_graph=True)
        return flat(hv) + config.cg_damping * v

    direction = conjugate_gradient(fisher_vector, g, config.cg_iters)
    return direction, 0.5 * (direction @ fisher_vector(direction)).item()


def trpo_step(
    params: Sequence[Tensor],
    objective: Callable[[], tuple[Tensor, Tensor]],
    config: TRPOConfig,
) -> dict[str, float]:
    """One TRPO update of ``params`` in place.

    Args:
        params: the parameters θ (leaf tensors requiring grad).
        objective: computes (surrogate loss to minimise, mean KL from the old policy) at the
            current value of ``params``; the KL must be 0 at the starting θ.
        config: the trust region and solver settings.

    Returns:
        loss_before, loss_after, kl (after the step), line_search_steps (shrinks taken;
        ``config.line_search_steps`` means the step was rejected and θ kept).
    """
    loss, kl = objective()
    loss_before = loss.item()
    direction, shs = _natural_direction(params, loss, kl, config)
    full_step = direction * math.sqrt(config.max_kl / max(shs, 1e-12))  # ½sᵀFs = δ
    old = [p.detach().clone() for p in params]
    del loss, kl  # their graphs are not needed in the line search

    def assign(scale: float) -> None:
        offset = 0
        with torch.no_grad():
            for p, p0 in zip(params, old, strict=True):
                n = p.numel()
                p.copy_(p0 - scale * full_step[offset : offset + n].view_as(p))
                offset += n

    scale = 1.0
    for shrinks in range(config.line_search_steps):
        assign(scale)
        with torch.no_grad():
            new_loss, new_kl = objective()
        if new_loss.item() < loss_before and new_kl.item() <= config.max_kl:
            return {
                "loss_before": loss_before,
                "loss_after": new_loss.item(),
                "kl": new_kl.item(),
                "line_search_steps": float(shrinks),
            }
        scale *= config.backtrack_ratio
    assign(0.0)
    return {
        "loss_before": loss_before,
        "loss_after": loss_before,
        "kl": 0.0,
        "line_search_steps": float(config.line_search_steps),
    }
