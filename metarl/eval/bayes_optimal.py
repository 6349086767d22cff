"""Exact values of tiny Bernoulli bandits by dynamic programming over posterior states.

With independent uniform priors, an arm that paid ``s`` successes and ``f`` failures has
posterior Beta(1 + s, 1 + f), so the tuple of (s, f) pairs is a sufficient statistic and the
Bayes-optimal finite-horizon policy follows from backward induction over these tuples
(Bellman 1956; Berry and Fristedt 1985). Arms are exchangeable, so states are sorted before
memoisation. The state space grows like ``horizon ** (2 * num_arms)``: this is a reference
for checking heuristics (e.g. the Gittins rule, Duan et al. 2016's baseline) on horizons of
about ten pulls, not a policy to deploy.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from functools import cache, lru_cache

from metarl.config import require_positive

ArmState = tuple[int, int]
"""(successes, failures) of one arm; its posterior is Beta(1 + successes, 1 + failures)."""

ValueFunction = Callable[[tuple[ArmState, ...], int], float]
"""Expected reward to go from a sorted state with a number of pulls left."""

_TIE_TOLERANCE = 1e-12


def _start_state(
    num_arms: int, horizon: int, discount: float, start: Sequence[ArmState] | None
) -> tuple[ArmState, ...]:
    if not isinstance(horizon, int) or horizon < 0:
        raise ValueError(f"horizon must be a non-negative integer, got {horizon!r}")
    if not 0.0 < discount <= 1.0:
        raise ValueError(f"discount must lie in (0, 1], got {discount!r}")
    if start is None:
        return ((0, 0),) * require_positive("bayes_optimal_value", "num_arms", num_arms)
    start = tuple((int(s), int(f)) for s, f in start)
    if len(start) != num_arms or any(s < 0 or f < 0 for s, f in start):
        raise ValueError(
            f"start must hold {num_arms} (successes, failures) pairs >= 0, got {start!r}"
        )
    return start


def _action_value(
    state: tuple[ArmState, ...], arm: int, pulls_left: int, discount: float, value: ValueFunction
) -> float:
    """Expected (discounted) reward of pulling ``arm`` of ``state`` first, then following the
    policy whose value function is ``value(sorted_state, pulls_left)``."""
    s, f = state[arm]
    mean = (1 + s) / (2 + s + f)
    win = tuple(sorted(state[:arm] + ((s + 1, f),) + state[arm + 1 :]))
    lose = tuple(sorted(state[:arm] + ((s, f + 1),) + state[arm + 1 :]))
    later_win, later_lose = value(win, pulls_left - 1), value(lose, pulls_left - 1)
    return mean * (1.0 + discount * later_win) + (1.0 - mean) * discount * later_lose


@lru_cache(maxsize=4)
def _optimal_value_function(discount: float) -> ValueFunction:
    """The memoised Bayes-optimal value ``value(sorted_state, pulls_left)``, shared by the
    calls that use the same discount."""

    @cache
    def value(state: tuple[ArmState, ...], pulls_left: int) -> float:
        if pulls_left == 0:
            return 0.0
        # Sorted states list identical arms next to each other: evaluate each once.
        distinct = [arm for arm in range(len(state)) if arm == 0 or state[arm] != state[arm - 1]]
        return max(_action_value(state, arm, pulls_left, discount, value) for arm in distinct)

    return value


def bayes_optimal_value(
    num_arms: int,
    horizon: int,
    discount: float = 1.0,
    start: Sequence[ArmState] | None = None,
) -> float:
    """Bayes-optimal expected reward ``sum_t discount**t r_t`` over ``horizon`` pulls.

    Args:
        num_arms: number of arms k.
        horizon: pulls left n.
        discount: per-pull discount in (0, 1]; 1 is the undiscounted cumulative reward.
        start: each arm's (successes, failures) so far; default all (0, 0), i.e. uniform priors.
    """
    state = _start_state(num_arms, horizon, discount, start)
    return _optimal_value_function(discount)(tuple(sorted(state)), horizon)


def bayes_optimal_arms(start: Sequence[ArmState], horizon: int, discount: float = 1.0) -> list[int]:
    """Positions in ``start`` of the arms that a Bayes-optimal policy may pull first."""
    state = _start_state(len(start), horizon, discount, start)
    if horizon == 0:
        return list(range(len(state)))
    value = _optimal_value_function(discount)
    q = [_action_value(state, arm, horizon, discount, value) for arm in range(len(state))]
    best = max(q)
    return [arm for arm, v in enumerate(q) if v >= best - _TIE_TOLERANCE]


def index_policy_value(
    index: Callable[[int, int], float],
    num_arms: int,
    horizon: int,
    discount: float = 1.0,
    start: Sequence[ArmState] | None = None,
) -> float:
    """Exact expected reward of the index rule "pull the arm of largest ``index(s, f)``, ties
    uniformly at random" over ``horizon`` pulls (arguments as :func:`bayes_optimal_value`).

    ``index`` is e.g. ``lambda s, f: table[s, f]`` for a Gittins table
    (:func:`metarl.eval.gittins.gittins_index_table`).
    """
    state = _start_state(num_arms, horizon, discount, start)

    @cache
    def value(state: tuple[ArmState, ...], pulls_left: int) -> float:
        if pulls_left == 0:
            return 0.0
        indices = [float(index(s, f)) for s, f in state]
        if any(math.isnan(i) for i in indices):
            raise ValueError(f"index is NaN in state {state}: is the index table too small?")
        top = max(indices)
        tied = [arm for arm, i in enumerate(indices) if i == top]
        # Tied arms in one posterior state are worth the same: evaluate each state once.
        q = {state[arm]: _action_value(state, arm, pulls_left, discount, value) for arm in tied}
        return sum(q[state[arm]] for arm in tied) / len(tied)

    return value(tuple(sorted(state)), horizon)
