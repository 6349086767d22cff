"""RL²'s outer loop (Duan et al. 2016): a memory policy meta-trained by PPO on whole trials
(Duan et al. used TRPO).

The learner sees whole trials as sequences; the policy's memory spans the trial, so the
advantage of an early exploratory action includes the reward it makes possible later on.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import torch
from stable_baselines3.common.running_mean_std import RunningMeanStd
from torch import Tensor, nn

from metarl.config import require, require_positive_ints
from metarl.learners.ppo import clipped_surrogate, gae, masked_mean
from metarl.policies import RecurrentActorCritic


@dataclasses.dataclass
class PPOConfig:
    """PPO's hyper-parameters, named as in Schulman et al. 2017.

    Attributes:
        lr: Adam step size.
        clip: surrogate clipping range epsilon.
        epochs: passes over each batch.
        minibatches: minibatches per epoch (whole trials each).
        gamma: discount within a trial.
        gae_lambda: GAE's lambda.
        value_coef: weight of the value loss.
        entropy_coef: weight of the entropy bonus (at the first update, when annealed).
        entropy_final: if set, the bonus falls linearly from ``entropy_coef`` to this weight
            over the first ``entropy_anneal_updates`` updates and stays there: a large bonus
            keeps an early policy exploring, a small one lets the trained policy commit.
        entropy_anneal_updates: updates over which the bonus anneals.
        max_grad_norm: gradient-norm clip.
        normalize_advantages: standardise advantages per minibatch.
        normalize_returns: divide rewards, for the learner only, by the running standard
            deviation of the discounted return-to-go, so the critic's targets keep a scale
            near one whatever a task pays (the policy still sees the raw rewards).
    """

    lr: float = 3e-4
    clip: float = 0.2
    epochs: int = 4
    minibatches: int = 4
    gamma: float = 0.99
    gae_lambda: float = 0.95
    value_coef: float = 0.5
    entropy_coef: float = 0.01
    entropy_final: float | None = None
    entropy_anneal_updates: int = 1
    max_grad_norm: float = 0.5
    normalize_advantages: bool = True
    normalize_returns: bool = False

    def __post_init__(self) -> None:
        require(self.lr > 0, "ppo.lr", self.lr, "a positive number")
        require(0 < self.clip < 1, "ppo.clip", self.clip, "a number in (0, 1)")
        require_positive_ints(self, "ppo", ("epochs", "minibatches"))
        require(0 < self.gamma <= 1, "ppo.gamma", self.gamma, "a number in (0, 1]")
        require(0 <= self.gae_lambda <= 1, "ppo.gae_lambda", self.gae_lambda, "a number in [0, 1]")
        require(self.max_grad_norm > 0, "ppo.max_grad_norm", self.max_grad_norm, "> 0")
        require(self.entropy_coef >= 0, "ppo.entropy_coef", self.entropy_coef, "a number >= 0")
        require(
            self.entropy_final is None or self.entropy_final >= 0,
            "ppo.entropy_final",
            self.entropy_final,
            "null or a number >= 0",
        )
        require_positive_ints(self, "ppo", ("entropy_anneal_updates",))

    def entropy_weight(self, update: int) -> float:
        """The entropy bonus's weight at the 0-based ``update``."""
        if self.entropy_final is None:
            return self.entropy_coef
        done = min(update / self.entropy_anneal_updates, 1.0)
        return self.entropy_coef + done * (self.entropy_final - self.entropy_coef)


class RL2:
    """Meta-trains a :class:`RecurrentActorCritic` with PPO on batches of whole trials.

    Args:
        policy: the memory policy; updated in place.
        config: PPO's hyper-parameters.
    """

    def __init__(self, policy: RecurrentActorCritic, config: PPOConfig) -> None:
        self.policy = policy
        self.config = config
        self.optimizer = torch.optim.Adam(policy.parameters(), lr=config.lr, eps=1e-5)
        self.returns = RunningMeanStd() if config.normalize_returns else None

    def scaled_rewards(self, rewards: Tensor, dones: Tensor, mask: Tensor) -> Tensor:
        """``rewards`` divided by the running standard deviation of every valid step's
        discounted return-to-go, this batch's included (rewards unchanged without
        ``normalize_returns``)."""
        if self.returns is None:
            return rewards
        to_go, _ = gae(rewards, torch.zeros_like(rewards), dones, self.config.gamma, 1.0)
        self.returns.update(to_go[mask.bool()].double().cpu().numpy())
        return rewards / float(np.sqrt(self.returns.var + 1e-8))

    def state_dict(self) -> dict[str, object]:
        """The optimiser's state and the running return statistics."""
        state: dict[str, object] = {"optimizer": self.optimizer.state_dict()}
        if self.returns is not None:
            state["returns"] = {k: float(v) for k, v in vars(self.returns).items()}
        return state

    def load_state_dict(self, state: dict[str, object]) -> None:
        self.optimizer.load_state_dict(state["optimizer"])
        if self.returns is not None and "returns" in state:
            vars(self.returns).update(state["returns"])

    def update(
        self, batch: dict[str, Tensor], generator: torch.Generator, iteration: int = 0
    ) -> dict[str, float]:
        """PPO update number ``iteration`` (0-based; it sets an annealed entropy bonus) on
        a batch with keys inputs (B,T,D), actions (B,T) or (B,T,A), logp, values, rewards,
        dones, mask (B,T), on the policy's device. ``generator`` shuffles the minibatches (a
        CPU generator shuffles batches on any device alike)."""
        cfg = self.config
        entropy_weight = cfg.entropy_weight(iteration)
        mask = batch["mask"]
        rewards = self.scaled_rewards(batch["rewards"], batch["dones"], mask)
        advantages, returns = gae(
            rewards, batch["values"], batch["dones"], cfg.gamma, cfg.gae_lambda
        )
        num_trials, horizon = mask.shape
        size = max(1, num_trials // cfg.minibatches)
        lengths = mask.sum(1).long()  # a trial's steps are a prefix of the row
        ragged = bool((lengths < horizon).any())
        stats: dict[str, list[float]] = {
            "policy_loss": [],
            "value_loss": [],
            "entropy": [],
            "approx_kl": [],
            "clip_fraction": [],
        }
        for _ in range(cfg.epochs):
            order = torch.randperm(num_trials, generator=generator, device=generator.device)
            for start in range(0, num_trials, size):
                rows = order[start : start + size]
                # ragged: cut to the minibatch's longest trial, run in groups of like length
                span = int(lengths[rows].max()) if ragged else horizon
                mb = {
                    key: value[rows, :span]
                    for key, value in (
                        ("inputs", batch["inputs"]),
                        ("actions", batch["actions"]),
                        ("logp", batch["logp"]),
                        ("advantages", advantages),
                        ("returns", returns),
                    )
                }
                m = mask[rows, :span]
                dist, values = self.policy(mb["inputs"], lengths[rows] if ragged else None)
                logp = dist.log_prob(mb["actions"])
                adv = mb["advantages"]
                if cfg.normalize_advantages:
                    mean = masked_mean(adv, m)
                    std = masked_mean((adv - mean) ** 2, m).sqrt()
                    adv = (adv - mean) / (std + 1e-8)
                policy_loss = -masked_mean(clipped_surrogate(logp, mb["logp"], adv, cfg.clip), m)
                value_loss = 0.5 * masked_mean((values - mb["returns"]) ** 2, m)
                entropy = masked_mean(dist.entropy(), m)
                loss = policy_loss + cfg.value_coef * value_loss - entropy_weight * entropy
                self.optimizer.zero_grad()
                loss.backward()
                nn.utils.clip_grad_norm_(self.policy.parameters(), cfg.max_grad_norm)
                self.optimizer.step()
                with torch.no_grad():
                    log_ratio = logp - mb["logp"]
                    stats["approx_kl"].append(
                        masked_mean(log_ratio.exp() - 1 - log_ratio, m).item()
                    )
                    clipped = ((log_ratio.exp() - 1).abs() > cfg.clip).float()
                    stats["clip_fraction"].append(masked_mean(clipped, m).item())
                stats["policy_loss"].append(policy_loss.item())
                stats["value_loss"].append(value_loss.item())
                stats["entropy"].append(entropy.item())
        return {k: sum(v) / len(v) for k, v in stats.items()}
