"""Policies: a sequence backbone with actor and critic heads for black-box meta-RL, and
Gaussian and categorical MLPs for meta-RL by policy-gradient adaptation.

The RL² inputs (Duan et al. 2016) at step t are the observation o_t, the previous action
a_{t-1} (one-hot for discrete actions, the vector itself for continuous ones), the previous
reward r_{t-1} and the previous episode-end flag d_{t-1}; the backbone's memory starts empty at
the start of a trial and persists across its episodes.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import Tensor, nn
from torch.distributions import Categorical, Independent, Normal, register_kl

from metarl.backbones.base import SequenceBackbone

ACTIVATIONS: dict[str, type[nn.Module]] = {"relu": nn.ReLU, "tanh": nn.Tanh}


def rl2_input_size(obs_size: int, num_actions: int) -> int:
    """Width of one RL² input vector (``num_actions``: the discrete action count or the
    continuous action's width)."""
    return obs_size + num_actions + 2


def rl2_inputs(
    obs: np.ndarray,
    prev_actions: np.ndarray,
    prev_rewards: np.ndarray,
    prev_dones: np.ndarray,
    num_actions: int,
) -> np.ndarray:
    """Concatenate (o_t, a_{t-1}, r_{t-1}, d_{t-1}) for a batch. Integer actions (B,) are
    one-hot encoded, a_{-1} = -1 being none; float actions (B, num_actions), continuous ones,
    enter as they are, zeros being none."""
    batch = obs.shape[0]
    if np.issubdtype(prev_actions.dtype, np.integer):
        actions = np.zeros((batch, num_actions), dtype=np.float32)
        has_prev = prev_actions >= 0
        actions[np.flatnonzero(has_prev), prev_actions[has_prev]] = 1.0
    else:
        actions = prev_actions.reshape(batch, num_actions).astype(np.float32)
    return np.concatenate(
        [
            obs.reshape(batch, -1).astype(np.float32),
            actions,
            prev_rewards.astype(np.float32)[:, None],
            prev_dones.astype(np.float32)[:, None],
        ],
        axis=1,
    )


class LogSoftmaxCategorical(Categorical):
    """A categorical distribution over ``logits`` whose arithmetic, values and gradients
    alike, is RL²'s from before it took continuous actions, so that seeded discrete runs
    reproduce bit for bit: log-probabilities ``log_softmax(logits)`` gathered at the action,
    entropy ``-Σ exp(l) l`` on them, sampling from ``exp(l)`` and the greedy action the
    argmax of the raw logits (torch's own normalises by ``logsumexp``, takes ``softmax`` and
    scores through ``broadcast_tensors``: equal up to rounding, which seeded runs amplify)."""

    def __init__(self, logits: Tensor) -> None:
        log_probs = torch.log_softmax(logits, dim=-1)
        super().__init__(logits=log_probs, validate_args=False)
        self.logits = log_probs
        self.raw_logits = logits

    def log_prob(self, value: Tensor) -> Tensor:
        """Log-probabilities of integer actions shaped like the batch."""
        return self.logits.gather(-1, value.long().unsqueeze(-1)).squeeze(-1)

    def entropy(self) -> Tensor:
        """``-Σ p log p`` per batch element."""
        return -(self.logits.exp() * self.logits).sum(-1)


ActionDistribution = LogSoftmaxCategorical | Independent
"""What the actor head of :class:`RecurrentActorCritic` yields: a categorical distribution over
discrete actions, or a diagonal Gaussian over continuous ones whose ``log_prob`` and
``entropy`` sum over the action's dimensions."""


def draw_actions(
    dist: ActionDistribution, generator: torch.Generator, deterministic: bool = False
) -> Tensor:
    """Actions from ``dist``, the randomness from ``generator`` (torch's ``sample`` takes
    none): a categorical's sampled index or its most likely one, a Gaussian's sample or its
    mean, unclipped."""
    if isinstance(dist, LogSoftmaxCategorical):
        if deterministic:
            return dist.raw_logits.argmax(-1)
        return torch.multinomial(dist.logits.exp(), 1, generator=generator).squeeze(-1)
    if deterministic:
        return dist.mean
    noise = torch.randn(dist.mean.shape, generator=generator, device=dist.mean.device)
    return dist.mean + dist.stddev * noise


class RecurrentActorCritic(nn.Module):
    """An actor and a value critic sharing one sequence backbone.

    Args:
        backbone: any :class:`SequenceBackbone` (SNAIL, LSTM, ...).
        num_actions: size of the discrete action space, or width of a continuous action.
        continuous: the actions are vectors: the actor is a diagonal Gaussian whose mean is a
            linear head and whose log standard deviation is a learned parameter ``log_std``,
            independent of the state; otherwise a categorical over ``num_actions`` logits.
        init_std: the Gaussian's initial standard deviation (unused by discrete actions).

    The Gaussian's samples are not squashed: the sampler clips them to the action bounds on
    the way to the environment, and they are scored unclipped.
    """

    def __init__(
        self,
        backbone: SequenceBackbone,
        num_actions: int,
        continuous: bool = False,
        init_std: float = 1.0,
    ) -> None:
        super().__init__()
        if init_std <= 0:
            raise ValueError(f"init_std must be positive, got {init_std}")
        self.backbone = backbone
        self.num_actions = num_actions
        self.continuous = continuous
        self.actor = nn.Linear(backbone.output_size, num_actions)
        self.critic = nn.Linear(backbone.output_size, 1)
        nn.init.orthogonal_(self.actor.weight, gain=0.01)
        nn.init.zeros_(self.actor.bias)
        if continuous:
            self.log_std = nn.Parameter(torch.full((num_actions,), math.log(init_std)))

    def distribution(self, features: Tensor) -> ActionDistribution:
        """The actor's action distribution for backbone features (..., F)."""
        head = self.actor(features)
        if not self.continuous:
            return LogSoftmaxCategorical(head)
        scale = self.log_std.exp().expand_as(head)
        return Independent(Normal(head, scale, validate_args=False), 1, validate_args=False)

    def forward(
        self, inputs: Tensor, lengths: Tensor | None = None
    ) -> tuple[ActionDistribution, Tensor]:
        """Action distributions (batch shape (B, T)) and values (B, T) for whole trials
        (B, T, D); with ``lengths`` (B,), trials that end after that many steps, run by
        :meth:`SequenceBackbone.forward_ragged` (the outputs after a trial's end are
        placeholders)."""
        if lengths is None:
            features = self.backbone(inputs)
        else:
            features = self.backbone.forward_ragged(inputs, lengths)
        return self.distribution(features), self.critic(features).squeeze(-1)

    def initial_state(self, batch_size: int, max_len: int) -> object:
        """Empty memory for ``batch_size`` trials of at most ``max_len`` steps."""
        return self.backbone.initial_state(batch_size, max_len)

    def step(self, inputs: Tensor, state: object) -> tuple[ActionDistribution, Tensor, object]:
        """One step for a batch (B, D): action distributions (batch shape (B,)), values (B,)
        and the new memory."""
        features, state = self.backbone.step(inputs, state)
        return self.distribution(features), self.critic(features).squeeze(-1), state


def mlp(
    in_size: int, hidden: tuple[int, ...] | list[int], out_size: int, activation: str
) -> nn.Sequential:
    """The body of the MLP policies: linear layers of widths ``hidden`` with the
    ``activation`` (relu or tanh) after each, then a linear output layer of ``out_size``."""
    if activation not in ACTIVATIONS:
        raise ValueError(f"activation must be one of {', '.join(ACTIVATIONS)}, got {activation!r}")
    widths = [in_size, *hidden]
    layers: list[nn.Module] = []
    for fan_in, fan_out in zip(widths[:-1], widths[1:], strict=True):
        layers += [nn.Linear(fan_in, fan_out), ACTIVATIONS[activation]()]
    return nn.Sequential(*layers, nn.Linear(widths[-1], out_size))


class GaussianMLPPolicy(nn.Module):
    """Diagonal Gaussian policy for continuous actions: an MLP gives the mean, a learned
    state-independent log standard deviation gives the spread (Finn et al. 2017's policy).

    Args:
        obs_size: width of an observation.
        action_size: width of an action.
        hidden: widths of the hidden layers.
        init_std: initial standard deviation of every action dimension.
        activation: the hidden layers' nonlinearity, ``relu`` (the paper's) or ``tanh``.

    Works on functional parameters: ``torch.func.functional_call(policy, params, (obs,))``
    returns the distribution of the policy with ``params`` in place of its own.
    """

    def __init__(
        self,
        obs_size: int,
        action_size: int,
        hidden: tuple[int, ...] | list[int] = (100, 100),
        init_std: float = 1.0,
        activation: str = "tanh",
    ) -> None:
        super().__init__()
        if init_std <= 0:
            raise ValueError(f"init_std must be positive, got {init_std}")
        self.body = mlp(obs_size, hidden, action_size, activation)
        self.log_std = nn.Parameter(torch.full((action_size,), math.log(init_std)))

    def forward(self, obs: Tensor) -> Independent:
        """The action distribution for observations (..., obs_size), over whole actions: its
        ``log_prob`` and KL sum over the action's dimensions, as a categorical's are per
        action."""
        scale = self.log_std.exp().expand(*obs.shape[:-1], -1)
        normal = Normal(self.body(obs), scale, validate_args=False)  # checks cost more than acting
        return Independent(normal, 1, validate_args=False)


class BatchableCategorical(Categorical):
    """A categorical distribution whose KL divergence runs under ``torch.func.vmap``, as
    MAML-TRPO's batched outer terms need: torch's own masks zero probabilities by boolean
    indexing, which vmap cannot batch."""


@register_kl(BatchableCategorical, BatchableCategorical)
def _kl_batchable_categorical(p: BatchableCategorical, q: BatchableCategorical) -> Tensor:
    # Σ_a p(a) (log p(a) − log q(a)); finite logits (an MLP's) need no masking: a probability
    # that underflows to 0 multiplies a finite log-ratio
    return (p.probs * (p.logits - q.logits)).sum(-1)


class CategoricalMLPPolicy(nn.Module):
    """Categorical policy for discrete actions: an MLP gives the logits (the policy of
    Finn et al. 2017's and Duan et al. 2016's discrete tasks).

    Args:
        obs_size: width of an observation.
        num_actions: size of the discrete action space.
        hidden: widths of the hidden layers.
        activation: the hidden layers' nonlinearity, ``relu`` or ``tanh``.

    Works on functional parameters, as :class:`GaussianMLPPolicy` does.
    """

    def __init__(
        self,
        obs_size: int,
        num_actions: int,
        hidden: tuple[int, ...] | list[int] = (100, 100),
        activation: str = "tanh",
    ) -> None:
        super().__init__()
        self.body = mlp(obs_size, hidden, num_actions, activation)

    def forward(self, obs: Tensor) -> BatchableCategorical:
        """The action distribution for observations (..., obs_size); actions are integers."""
        return BatchableCategorical(logits=self.body(obs), validate_args=False)
