"""Hand-designed policies for Bernoulli bandits, batched over many tasks in numpy.

These are the baselines of Duan et al. (2016, RL², Table 1) and Mishra et al. (2018, SNAIL):
random, greedy, epsilon-greedy, UCB1, Thompson sampling and the Gittins index rule. Each
policy plays ``num_tasks`` independent bandits at once through three verbs, so that the same
code drives any batched bandit, such as the gymnasium vector environment stepped by
:func:`run_baseline`::

    policy.reset(num_tasks, num_arms, horizon, rng)
    actions = policy.act()              # (num_tasks,) arm indices
    policy.observe(actions, rewards)    # rewards in {0, 1}

All randomness (exploration, posterior samples, tie-breaking) comes from ``rng``.

The constants of epsilon-greedy (epsilon), UCB1 (the bonus scale c) and Gittins (the discount)
are tuned as Duan et al. tuned theirs: per (horizon, arms), the value of a small grid that
earns most on tuning tasks of their own stream, disjoint from any evaluation's
(:func:`metarl.eval.gittins.tuning_seed`), and cached on disk.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from functools import lru_cache
from typing import Protocol

import numpy as np

from envs.bandits import BernoulliBanditVectorEnv, sample_tasks
from metarl.config import require_positive
from metarl.eval.gittins import (
    SeedLike,
    argmax_random_ties,
    cached_tuning,
    gittins_discount,
    gittins_index_table,
    tuning_seed,
    tuning_tasks,
)


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

    def settings(self) -> dict[str, float]:
        """The constants played with since the last reset (tuned ones resolved)."""


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

    def settings(self) -> dict[str, float]:
        return {}

    def _empirical_means(self) -> np.ndarray:
        """Mean reward per arm; +inf for arms never pulled, so that each is tried once first."""
        with np.errstate(divide="ignore", invalid="ignore"):
            return np.where(self.pulls > 0, self.successes / self.pulls, np.inf)


class RandomPolicy(_CountingPolicy):
    """Pulls an arm uniformly at random (expected cumulative reward n/2)."""

    name = "random"

    def scores(self) -> np.ndarray:
        return np.zeros(self.pulls.shape)


class _TunedPolicy(_CountingPolicy):
    """A policy with one constant, named ``constant`` and lying in ``bounds``: the given
    value, or by default the one tuned for the horizon and number of arms
    (:func:`tuned_constant`), resolved at each reset."""

    constant = ""
    bounds = (0.0, math.inf)

    def __init__(self, value: float | None = None) -> None:
        lo, hi = self.bounds
        if value is not None and not (lo <= value <= hi and math.isfinite(value)):
            raise ValueError(f"{self.constant} must lie in [{lo}, {hi}], got {value!r}")
        self.given = value

    def reset(self, num_tasks: int, num_arms: int, horizon: int, rng: np.random.Generator) -> None:
        super().reset(num_tasks, num_arms, horizon, rng)
        value = self.given
        if value is None:
            value = tuned_constant(self.name, int(horizon), int(num_arms))
        setattr(self, self.constant, float(value))

    def settings(self) -> dict[str, float]:
        return {self.constant: getattr(self, self.constant)}


class EpsilonGreedyPolicy(_TunedPolicy):
    """Tries each arm once, then with probability ``epsilon`` pulls a uniformly random arm and
    otherwise the arm with the best empirical mean.

    Args:
        value: ``epsilon``, the exploration probability per pull, in [0, 1]; by default the
            one tuned for the horizon and number of arms (:func:`tuned_constant`).
    """

    name = "epsilon_greedy"
    constant = "epsilon"
    bounds = (0.0, 1.0)

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
        super().__init__(0.0)


class UCB1Policy(_TunedPolicy):
    """UCB1 (Auer, Cesa-Bianchi and Fischer 2002): tries each arm once, then pulls the arm
    maximising ``mean + c sqrt(ln t / pulls)``, t being the pulls made so far.

    Args:
        value: ``c``, the scale of the exploration bonus, finite and >= 0 (the textbook
            bound has sqrt(2)); by default the one tuned for the horizon and number of arms
            (:func:`tuned_constant`).
    """

    name = "ucb1"
    constant = "c"

    def scores(self) -> np.ndarray:
        total = self.pulls.sum(axis=1, keepdims=True)
        with np.errstate(divide="ignore", invalid="ignore"):
            bonus = self.c * np.sqrt(np.log(np.maximum(total, 1)) / self.pulls)
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
        self.used_discount = discount

    def settings(self) -> dict[str, float]:
        return {"discount": self.used_discount}

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


TUNING_GRIDS: dict[str, tuple[float, ...]] = {
    "epsilon_greedy": (0.0, 0.01, 0.02, 0.05, 0.1, 0.2, 0.3),
    "ucb1": (0.05, 0.1, 0.2, 0.3, 0.5, 0.75, 1.0, math.sqrt(2)),
}
"""The candidates of each tuned constant: epsilon-greedy's epsilon, UCB1's bonus scale c
(sqrt(2), the textbook value, last)."""


def bandit_trials(
    seed: np.random.SeedSequence, num_tasks: int, num_arms: int, horizon: int
) -> tuple[np.ndarray, np.ndarray, int]:
    """Trials for a paired comparison, from three independent children of ``seed``.

    Returns the tasks (num_tasks, num_arms), arm means i.i.d. U[0, 1]; their reward tape
    (num_tasks, num_arms, horizon) of uniforms, which every player is given (the j-th pull of
    arm a in task i pays ``uniforms[i, a, j] < tasks[i, a]``, :mod:`envs.bandits`); and an
    integer seed for the players' own randomness (actions, ties, posterior samples). The
    tasks do not depend on ``horizon``, and no reward reuses a number the tasks were drawn
    from."""
    tasks_seed, rewards_seed, players_seed = (
        np.random.SeedSequence(seed.entropy, spawn_key=(*seed.spawn_key, i)) for i in range(3)
    )
    tasks = sample_tasks(np.random.default_rng(tasks_seed), num_tasks, num_arms)
    uniforms = np.random.default_rng(rewards_seed).random((num_tasks, num_arms, horizon))
    return tasks, uniforms, int(players_seed.generate_state(1)[0])


def run_baseline(
    policy: BanditPolicy, tasks: np.ndarray, uniforms: np.ndarray, seed: SeedLike
) -> np.ndarray:
    """Rewards (tasks, horizon) of ``policy`` on fixed tasks and their reward tape
    (tasks, arms, horizon), stepped through the vector env; the policy's own randomness
    comes from ``seed``."""
    num_tasks, num_arms, horizon = np.shape(uniforms)
    env = BernoulliBanditVectorEnv(num_tasks, num_arms, horizon)
    env.reset(options={"tasks": tasks, "reward_uniforms": uniforms})
    policy.reset(num_tasks, num_arms, horizon, np.random.default_rng(seed))
    rewards = np.zeros((num_tasks, horizon))
    for t in range(horizon):
        actions = policy.act()
        _, rewards[:, t], *_ = env.step(actions)
        policy.observe(actions, rewards[:, t])
    return rewards


def tune(
    make: Callable[[float], BanditPolicy],
    grid: Sequence[float],
    tasks: np.ndarray,
    uniforms: np.ndarray,
    seed: SeedLike,
) -> float:
    """The constant of ``grid`` with which ``make(constant)`` earns the most mean cumulative
    reward on ``tasks`` (ties: the first). Every candidate meets the same tasks, reward tape
    and seed (common random numbers), so their differences have little variance."""
    scores = [run_baseline(make(c), tasks, uniforms, seed).sum(axis=1).mean() for c in grid]
    return float(grid[int(np.argmax(scores))])


@lru_cache(maxsize=64)
def tuned_constant(name: str, horizon: int, num_arms: int) -> float:
    """The constant of baseline ``name`` (a key of :data:`TUNING_GRIDS`) for ``horizon``
    pulls of ``num_arms`` arms: :func:`tune` over its grid on the tuning tasks
    (:func:`metarl.eval.gittins.tuning_tasks` of them, drawn from
    :func:`metarl.eval.gittins.tuning_seed`), cached in memory and on disk."""

    def choose() -> float:
        count = tuning_tasks(horizon, num_arms)
        tasks, uniforms, seed = bandit_trials(tuning_seed(), count, num_arms, horizon)
        return tune(BASELINES[name], TUNING_GRIDS[name], tasks, uniforms, seed)

    return cached_tuning(f"{name},{horizon},{num_arms}", choose)
