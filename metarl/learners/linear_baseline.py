"""The linear feature baseline of policy-gradient meta-RL (Duan et al. 2016, "Benchmarking
deep RL"; the inner loop of Finn et al. 2017): a ridge regression of the discounted return
on features of the observation and the time step, fitted afresh to each task's episodes."""

from __future__ import annotations

import torch
from torch import Tensor


def features(obs: Tensor, mask: Tensor) -> Tensor:
    """(s, s², t, t², t³, 1) with t = step / 100, zero on padded steps; (E, T, 2·D + 4)."""
    steps, horizon = obs.shape[:2]
    t = (torch.arange(horizon, dtype=obs.dtype, device=obs.device) / 100.0).expand(steps, horizon)[
        ..., None
    ]
    obs = obs.clamp(-10, 10)
    feats = torch.cat([obs, obs**2, t, t**2, t**3, torch.ones_like(t)], dim=-1)
    return feats * mask[..., None]


def fit_predict(obs: Tensor, returns: Tensor, mask: Tensor, reg: float = 1e-5) -> Tensor:
    """The baseline's values (E, T) on the episodes it is fitted to, whose discounted
    returns G are ``returns`` (E, T).

    Solves (XᵀX + λI) w = Xᵀ G, raising λ tenfold while the system is ill-conditioned."""
    x = features(obs, mask).reshape(-1, 2 * obs.shape[-1] + 4).double()
    g = returns.reshape(-1, 1).double()
    gram, target = x.T @ x, x.T @ g
    eye = torch.eye(gram.shape[0], dtype=gram.dtype, device=gram.device)
    for _ in range(5):
        weights, info = torch.linalg.solve_ex(gram + reg * eye, target)
        if info.item() == 0 and torch.isfinite(weights).all():
            break
        reg *= 10
    values = (x @ weights).reshape(mask.shape).to(returns.dtype)
    return values * mask
