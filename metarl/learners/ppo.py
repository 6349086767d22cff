"""Pieces of PPO shared by every learner that uses it (Schulman et al. 2017).

Tensors are laid out (batch, time). ``mask`` marks valid steps; a step with ``done`` set ends
its sequence, so nothing is bootstrapped across it.
"""

from __future__ import annotations

import torch
from torch import Tensor


def gae(
    rewards: Tensor,
    values: Tensor,
    dones: Tensor,
    gamma: float,
    lam: float,
    last_values: Tensor | None = None,
) -> tuple[Tensor, Tensor]:
    """Generalised advantage estimation (Schulman et al. 2016, eq. 16).

    delta_t = r_t + gamma * V(s_{t+1}) * (1 - done_t) - V(s_t)
    A_t     = delta_t + gamma * lam * (1 - done_t) * A_{t+1}

    Args:
        rewards, values, dones: (B, T) tensors; ``dones`` is 1 where a sequence ends.
        gamma: discount factor.
        lam: GAE's lambda (0: one-step TD, 1: Monte-Carlo).
        last_values: V after the final step (B,), zero when omitted.

    Returns:
        advantages and returns (advantages + values), both (B, T).
    """
    batch, horizon = rewards.shape
    zeros = values.new_zeros(batch)  # on the values' device
    next_value = zeros if last_values is None else last_values
    advantage = zeros
    advantages = torch.zeros_like(values)
    for t in reversed(range(horizon)):
        not_done = 1.0 - dones[:, t]
        delta = rewards[:, t] + gamma * next_value * not_done - values[:, t]
        advantage = delta + gamma * lam * not_done * advantage
        advantages[:, t] = advantage
        next_value = values[:, t]
    return advantages, advantages + values


def clipped_surrogate(logp: Tensor, old_logp: Tensor, advantages: Tensor, clip: float) -> Tensor:
    """PPO's clipped objective per step, to be maximised (Schulman et al. 2017, eq. 7)."""
    ratio = torch.exp(logp - old_logp)
    return torch.min(ratio * advantages, ratio.clamp(1.0 - clip, 1.0 + clip) * advantages)


def masked_mean(x: Tensor, mask: Tensor) -> Tensor:
    """Mean of ``x`` over the steps where ``mask`` is 1."""
    return (x * mask).sum() / mask.sum().clamp_min(1.0)
