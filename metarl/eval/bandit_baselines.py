"""Hand-designed policies for Bernoulli bandits, batched over many tasks in numpy.

These are the baselines of Duan et al. (2016, RL², Table 1) and Mishra et al. (2018, SNAIL):
random, greedy, epsilon-greedy, UCB1, Thompson sampling and the Gittins index rule. Each
policy plays ``num_tasks`` independent bandits at once through three verbs, so that the same
code drives any batched bandit, such as the gymnasium vector environment stepped by
:func:`metarl.eval.bandits.run_baseline`::

    policy.reset(num_tasks, num_arms, horizon, rng)
    actions = policy.act()              # (num_tasks,) arm indices
    policy.observe(actions, rewards)    # rewards in {0, 1}

All randomness (exploration, posterior samples, tie-breaking) comes from ``rng``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

import numpy as np

from metarl.config import require_positive
from metarl.eval.gittins import argmax_random_ties, gittins_discount, gittins_index_table


class BanditPolicy(Protocol):
    """A policy playing a batch of k-armed Bernoulli bandits for a fixed number of pulls."""

    name: str

    def reset(self, num_tasks: int, num_arms: int, horizon: int, rng: np.random.Generator) -> None:
        """Forget everything and prepare to play ``num_tasks`` new bandits for ``horizon``
        pulls each, drawing all randomness from ``rng``."""

    def act(self) -> np.ndarray:
        """The arm to pull next in each task, int64 of shape (num_tasks,)."""

    def observe(self, actions: np.ndarray, rewards: np.ndarray) -> None:
        """Record the rewards (num_tasks,), each 0 or 1, of pulling ``actions``."""


class _CountingPolicy:
    """Shared bookkeeping: per task and arm, pulls and successes so far. Subclasses score
    the arms; the arm with the best score is pulled, ties broken at random."""

    name = ""

    def reset(self, num_tasks: int, num_arms: int, horizon: int, rng: np.random.Generator) -> None:
        for key, value in (("num_tasks", num_tasks), ("num_arms", num_arms), ("horizon", horizon)):
            require_positive(type(self).__name__, key, value)
        self.horizon = int(horizon)
        self.rng = rng
        self.pulls = np.zeros((num_tasks, num_arms), dtype=np.int64)
        self.successes = np.zeros((num_tasks, num_arms), dtype=np.int64)

    def act(self) -> np.ndarray:
        return argmax_random_ties(self.scores(), self.rng)

    def observe(self, actions: np.ndarray, rewards: np.ndarray) -> None:
        rewards = np.asarray(rewards)
        if np.any((rewards != 0) & (rewards != 1)):
            raise ValueError("Bernoulli bandit rewards must be 0 or 1")
        rows = np.arange(len(self.pulls))
        self.pulls[rows, actions] += 1
        self.successes[rows, actions] += rewards.astype(np.int64)

    def scores(self) -> np.ndarray:
        """Score of each arm in each task, shape (num_tasks, num_arms); higher is pulled."""
        raise NotImplementedError

    def _empirical_means(self) -> np.ndarray:
        """Mean reward per arm; +inf for arms never pulled, so that each is tried once first."""
        with np.errstate(divide="ignore", invalid="ignore"):
            return np.where(self.pulls > 0, self.successes / self.pulls, np.inf)


class RandomPolicy(_CountingPolicy):
    """Pulls an arm uniformly at random (expected cumulative reward n/2)."""

    name = "random"

    def scores(self) -> np.ndarray:
        return np.zeros(self.pulls.shape)


class EpsilonGreedyPolicy(_CountingPolicy):
    """Tries each arm once, then with probability ``epsilon`` pulls a uniformly random arm and
    otherwise the arm with the best empirical mean.

    Args:
        epsilon: exploration probability per pull, in [0, 1].
    """

    name = "epsilon_greedy"

    def __init__(self, epsilon: float = 0.1) -> None:
        if not 0.0 <= epsilon <= 1.0:
            raise ValueError(f"epsilon must lie in [0, 1], got {epsilon!r}")
        self.epsilon = float(epsilon)

    def scores(self) -> np.ndarray:
        return self._empirical_means()

    def act(self) -> np.ndarray:
        greedy = super().act()
        if self.epsilon == 0.0:
            return greedy
        num_tasks, num_arms = self.pulls.shape
        explore = self.rng.random(num_tasks) < self.epsilon
        return np.where(explore, self.rng.integers(num_arms, size=num_tasks), greedy)


class GreedyPolicy(EpsilonGreedyPolicy):
    """Tries each arm once, then always pulls the arm with the best empirical mean."""

    name = "greedy"

    def __init__(self) -> None:
        super().__init__(epsilon=0.0)


class UCB1Policy(_CountingPolicy):
    """UCB1 (Auer, Cesa-Bianchi and Fischer 2002): tries each arm once, then pulls the arm
    maximising ``mean + sqrt(2 ln t / pulls)``, t being the pulls made so far."""

    name = "ucb1"

    def scores(self) -> np.ndarray:
        total = self.pulls.sum(axis=1, keepdims=True)
        with np.errstate(divide="ignore", invalid="ignore"):
            bonus = np.sqrt(2.0 * np.log(np.maximum(total, 1)) / self.pulls)
        return self._empirical_means() + np.where(self.pulls > 0, bonus, 0.0)


class ThompsonSamplingPolicy(_CountingPolicy):
    """Thompson sampling (Thompson 1933): pulls the arm whose mean, drawn from its
    Beta(1 + successes, 1 + failures) posterior, is largest."""

    name = "thompson"

    def scores(self) -> np.ndarray:
        return self.rng.beta(1 + self.successes, 1 + self.pulls - self.successes)


class GittinsPolicy(_CountingPolicy):
    """The Gittins index rule (Gittins 1979) on Beta(1, 1) priors: pulls the arm of largest
    index (:mod:`metarl.eval.gittins`).

    Args:
        discount: discount factor gamma in (0, 1) defining the indices; by default the one
            that earns most for the horizon and number of arms (:func:`gittins_discount`).
    """

    name = "gittins"

    def __init__(self, discount: float | None = None) -> None:
        if discount is not None and not 0.0 < discount < 1.0:
            raise ValueError(f"discount must lie strictly between 0 and 1, got {discount!r}")
        self.discount = discount

    def reset(self, num_tasks: int, num_arms: int, horizon: int, rng: np.random.Generator) -> None:
        super().reset(num_tasks, num_arms, horizon, rng)
        discount = self.discount
        if discount is None:
            discount = gittins_discount(int(horizon), int(num_arms))
        self.table = gittins_index_table(discount, int(horizon) - 1)

    def scores(self) -> np.ndarray:
        if self.pulls[0].sum() >= self.horizon:  # tasks advance in lockstep
            raise RuntimeError(f"GittinsPolicy was reset for {self.horizon} pulls, not more")
        return self.table[self.successes, self.pulls - self.successes]


BASELINES: dict[str, Callable[[], BanditPolicy]] = {
    policy.name: policy
    for policy in (
        RandomPolicy,
        GreedyPolicy,
        EpsilonGreedyPolicy,
        UCB1Policy,
        ThompsonSamplingPolicy,
        GittinsPolicy,
    )
}
"""Every baseline by name, each built with its default settings."""
