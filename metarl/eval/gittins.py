"""Gittins indices of Bernoulli arms with Beta posteriors, and the discount to use them with.

An arm that has paid ``s`` successes and ``f`` failures has posterior Beta(1 + s, 1 + f)
(uniform prior). Its Gittins index under discount ``gamma`` (Gittins 1979; Gittins, Glazebrook
and Weber 2011, ch. 8) is the retirement reward ``lam`` per step at which one is indifferent
between retiring for good and pulling the arm at least once more, then stopping optimally.
Pulling the arm with the largest index is Bayes-optimal for the infinite-horizon discounted
bandit; Duan et al. (2016, RL²) and Mishra et al. (2018, SNAIL) use it as the reference
baseline on finite horizons, with the discount tuned to the horizon (:func:`gittins_discount`).

Indices are computed numerically, not approximated in closed form: one backward induction
over the (s, f) triangle is run for a grid of retirement rewards at once (vectorised in
numpy), and each state's indifference point is read off its piecewise-linear, convex
continue-minus-retire curve.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
from collections.abc import Callable
from functools import lru_cache
from pathlib import Path
from typing import BinaryIO

import numpy as np
from platformdirs import user_cache_dir

from metarl.config import require_positive
from metarl.files import write_atomic

SeedLike = int | np.random.SeedSequence

_GRID_SIZE = 1281
"""Retirement rewards 0, 1/1280, ..., 1 at which the calibration is solved."""

_DEPTH_SCALE = 2.0
"""Truncation depth beyond the deepest tabled state, in effective horizons 1 / (1 - gamma)."""

_TUNING_RATIOS = (1 / 8, 1 / 4, 3 / 8, 1 / 2, 5 / 8, 3 / 4, 1.0)
"""Candidate effective horizons 1 / (1 - gamma) - 1, as fractions of the bandit's horizon."""

_CACHE_VERSION = 1
_TUNED_VERSION = 1

_TUNING_KEY = 0x54554E45
"""The spawn key ("TUNE") of the tuning stream; evaluations spawn children 0, 1, 2."""


def argmax_random_ties(values: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """The index rule: per row of ``values`` (tasks, arms), the column of the largest value,
    ties broken uniformly at random. Returns int64 arm indices of shape (tasks,)."""
    best = values == values.max(axis=1, keepdims=True)
    return np.argmax(np.where(best, rng.random(values.shape), -1.0), axis=1).astype(np.int64)


def _check_discount(discount: float) -> float:
    if not 0.0 < discount < 1.0:
        raise ValueError(f"discount must lie strictly between 0 and 1, got {discount!r}")
    return float(discount)


def _truncation_depth(discount: float) -> int:
    """Pulls beyond the deepest tabled state at which the calibration stops.

    There the arm is valued as if its posterior were frozen (``max(lam, mean)`` per step), an
    error of at most the posterior's value of information, damped by ``gamma ** depth``.
    Two effective horizons keep every index within 2e-5 of a calibration three times deeper
    (measured for gamma = 0.9, 0.99 and 0.9968, up to 500 pulls).
    """
    return math.ceil(_DEPTH_SCALE / (1.0 - discount)) + 20


def _disk_cache_dir() -> Path:
    """``$METARL_CACHE_DIR/gittins``, else the user cache folder platformdirs names."""
    root = os.environ.get("METARL_CACHE_DIR") or user_cache_dir("metarl")
    return Path(root) / "gittins"


def _calibrate(discount: float, max_pulls: int) -> np.ndarray:
    """Indices of every state with at most ``max_pulls`` pulls, by one backward induction.

    For a retirement reward ``lam`` and values scaled by ``1 - gamma`` (so retiring is worth
    ``lam``), pulling an arm in state (s, f) with mean p = (1 + s) / (2 + s + f) is worth
    ``C = (1 - gamma) p + gamma (p W(s + 1, f) + (1 - p) W(s, f + 1))`` and ``W = max(lam, C)``.
    ``D(lam) = C(lam) - lam`` is convex, piecewise linear and decreasing; its root is the index.
    The induction also carries ``dW / dlam``, so the grid bracket of the root gives two tangent
    lines whose zeros bound it from below; the larger is exact unless the optimal stopping
    rule changes more than once inside the bracket.
    """
    lam = np.linspace(0.0, 1.0, _GRID_SIZE, dtype=np.float32)
    top = max_pulls + _truncation_depth(discount)
    # Row s of a level holds the state with s successes; the next level's rows s + 1 and s
    # are its success and failure. Two buffers per quantity, swapped level by level.
    value, cont, slope, cont_slope, tmp = (
        np.empty((top + 1, _GRID_SIZE), np.float32) for _ in range(5)
    )
    retire_buf = np.empty((top + 1, _GRID_SIZE), dtype=bool)
    mean = ((np.arange(top + 1) + 1.0) / (top + 2.0)).astype(np.float32)[:, None]
    np.maximum(lam, mean, out=value)
    np.greater_equal(lam, mean, out=slope)
    table = np.full((max_pulls + 1, max_pulls + 1), np.nan, dtype=np.float32)
    for pulls in range(top - 1, -1, -1):
        rows = pulls + 1
        successes = np.arange(rows)
        mean = ((successes + 1.0) / (pulls + 2.0))[:, None]
        win = (discount * mean).astype(np.float32)
        lose = (discount * (1.0 - mean)).astype(np.float32)
        c, c_slope, t, retire = cont[:rows], cont_slope[:rows], tmp[:rows], retire_buf[:rows]
        np.multiply(win, value[1 : rows + 1], out=c)
        c += np.multiply(lose, value[:rows], out=t)
        c += ((1.0 - discount) * mean).astype(np.float32)
        np.multiply(win, slope[1 : rows + 1], out=c_slope)
        c_slope += np.multiply(lose, slope[:rows], out=t)
        np.less_equal(c, lam, out=retire)
        if pulls <= max_pulls:
            hi = np.clip(_GRID_SIZE - retire.sum(axis=1), 1, _GRID_SIZE - 1)
            lo = hi - 1
            gap_lo, gap_hi = c[successes, lo] - lam[lo], c[successes, hi] - lam[hi]
            tangent_lo = lam[lo] - gap_lo / (c_slope[successes, lo] - 1.0)
            tangent_hi = lam[hi] - gap_hi / (c_slope[successes, hi] - 1.0)
            index = np.clip(np.maximum(tangent_lo, tangent_hi), lam[lo], lam[hi])
            table[successes, pulls - successes] = index
        np.maximum(c, lam, out=c)
        np.copyto(c_slope, np.float32(1.0), where=retire)
        value, cont, slope, cont_slope = cont, value, cont_slope, slope
    return table


@lru_cache(maxsize=16)
def gittins_index_table(discount: float, max_pulls: int) -> np.ndarray:
    """Gittins indices of a Bernoulli arm under a uniform prior, for every posterior state.

    Args:
        discount: per-pull discount factor gamma, in (0, 1).
        max_pulls: the deepest state tabled, in pulls of the arm (>= 0).

    Returns:
        a read-only float32 array ``table`` of shape (max_pulls + 1, max_pulls + 1) where
        ``table[s, f]`` is the index of the arm after ``s`` successes and ``f`` failures
        (posterior Beta(1 + s, 1 + f)) for ``s + f <= max_pulls``, NaN elsewhere. Accurate to
        1e-4 (at most 6e-5 off a per-state bisection up to 500 pulls at gamma = 0.9968, 1e-5
        typically). Cached in memory and on disk (an unwritable cache folder is skipped). Time
        and memory grow like ``(max_pulls + 2 / (1 - gamma)) ** 2``: for 500 pulls, about
        1.5 s at gamma = 0.99 and 4.5 s at gamma = 0.997 on one CPU core.
    """
    discount = _check_discount(discount)
    if not isinstance(max_pulls, (int, np.integer)) or max_pulls < 0:
        raise ValueError(f"max_pulls must be a non-negative integer, got {max_pulls!r}")
    path = _disk_cache_dir() / f"index-v{_CACHE_VERSION}-{discount!r}-{int(max_pulls)}.npy"
    try:
        table = np.load(path)
    except (OSError, ValueError):
        table = None
    if table is not None and table.shape == (max_pulls + 1, max_pulls + 1):
        table.flags.writeable = False
        return table
    table = _calibrate(discount, int(max_pulls))
    _write_atomically(path, lambda f: np.save(f, table))
    table.flags.writeable = False
    return table


def _write_atomically(path: Path, write: Callable[[BinaryIO], object]) -> None:
    """Write a cache file whole (:func:`metarl.files.write_atomic`), ignoring an unwritable
    cache folder: the value is only computed again next time."""
    with contextlib.suppress(OSError):
        path.parent.mkdir(parents=True, exist_ok=True)
        write_atomic(path, write)


def index_policy_return(
    table: np.ndarray, horizon: int, num_arms: int, num_tasks: int, seed: SeedLike
) -> float:
    """Mean cumulative reward of the index rule on ``table`` over ``horizon`` pulls.

    Tasks (arm means i.i.d. U[0, 1]), rewards and tie-breaking come from ``seed`` alone and
    are drawn as a tape (the j-th pull of arm i pays ``u[i, j] < mean[i]``), so two tables
    evaluated with one seed face identical luck: their difference has little variance.
    """
    rng = np.random.default_rng(seed)
    chunk = max(1, min(num_tasks, 2**24 // (num_arms * horizon)))
    total = 0.0
    for start in range(0, num_tasks, chunk):
        size = min(chunk, num_tasks - start)
        means = rng.random((size, num_arms))
        tape = rng.random((size, num_arms, horizon)) < means[:, :, None]
        successes = np.zeros((size, num_arms), dtype=np.int64)
        failures = np.zeros((size, num_arms), dtype=np.int64)
        rows = np.arange(size)
        for _ in range(horizon):
            arm = argmax_random_ties(table[successes, failures], rng)
            s, f = successes[rows, arm], failures[rows, arm]
            reward = tape[rows, arm, s + f]
            successes[rows, arm] = s + reward
            failures[rows, arm] = f + ~reward
            total += reward.sum()
    return total / num_tasks


def _tuning_candidates(horizon: int) -> list[float]:
    return [r * horizon / (1.0 + r * horizon) for r in _TUNING_RATIOS]


@lru_cache(maxsize=64)
def gittins_discount(horizon: int, num_arms: int) -> float:
    """The discount with which the Gittins rule earns most over ``horizon`` pulls of
    ``num_arms`` arms with means i.i.d. U[0, 1].

    Gittins' rule is optimal for geometric discounting, not for a fixed horizon n, so the
    discount is a tuning parameter, chosen here per (n, k). Candidates have
    effective horizon ``1 / (1 - gamma) = 1 + r n`` for r in 1/8, 1/4, 3/8, 1/2, 5/8, 3/4, 1,
    i.e. ``gamma = r n / (1 + r n)``; each is scored by :func:`index_policy_return` on the same
    :func:`tuning_tasks` tasks (from :func:`tuning_seed`, disjoint from the evaluation's;
    common random numbers), and the best wins (ties: the smaller discount). The result is
    deterministic and cached in memory and on disk (:func:`cached_tuning`; a few seconds per
    setting, about 30 s for n = 500, mostly index tables).

    Chosen discounts, and the rule's mean cumulative reward on held-out tasks (10,000;
    2,000 for n = 500) next to Duan et al.'s Table 1: n=10, k=5: 0.790, 6.67 (Bayes-optimal
    6.660) vs 6.6; n=100, k=5: 0.980, 78.6 vs 78.3; n=100, k=10: 0.984, 83.8 vs 82.8;
    n=500, k=5: 0.9968, 406.8 vs 405.8; n=500, k=10: 0.998, 441.7 vs 437.8. Scores are flat
    near the optimum (within 0.1% for r from 1/2 to 1); the most myopic candidate, r = 1/8,
    lands within 0.5% of the published figures, which suggests a shorter effective horizon
    there.

    Args:
        horizon: pulls per trial n (>= 1).
        num_arms: number of arms k (>= 1).
    """
    horizon = require_positive("gittins_discount", "horizon", horizon)
    num_arms = require_positive("gittins_discount", "num_arms", num_arms)

    def choose() -> float:
        candidates = _tuning_candidates(horizon)
        num_tasks = tuning_tasks(horizon, num_arms)
        scores = [
            index_policy_return(
                gittins_index_table(gamma, horizon - 1), horizon, num_arms, num_tasks, tuning_seed()
            )
            for gamma in candidates
        ]
        return candidates[int(np.argmax(scores))]

    return cached_tuning(f"gittins,{horizon},{num_arms}", choose)


def tuning_seed() -> np.random.SeedSequence:
    """The seed of every baseline's tuning: its tasks, rewards and choices.

    A stream of its own (spawn key "TUNE"), never one that an evaluation draws its held-out
    tasks from (children 0, 1, 2 of ``SeedSequence(eval.seed)``), so no constant is tuned on
    the tasks it is then measured on, whatever ``eval.seed`` is."""
    return np.random.SeedSequence(0, spawn_key=(_TUNING_KEY,))


def tuning_tasks(horizon: int, num_arms: int) -> int:
    """Tasks on which a baseline's constant is tuned: ``2e6 / (n k)``, between 2,000 and
    100,000 (about 2e6 pulls per candidate)."""
    return min(100_000, max(2_000, 2_000_000 // (horizon * num_arms)))


def cached_tuning(key: str, choose: Callable[[], float]) -> float:
    """The constant tuned for ``key`` (e.g. ``"ucb1,100,5"``): read from the disk cache's
    ``tuned-v1.json``, else ``choose()``, stored there for every later evaluation."""
    path = _disk_cache_dir() / f"tuned-v{_TUNED_VERSION}.json"
    chosen = _read_json(path).get(key)
    if chosen is not None:
        return float(chosen)
    chosen = float(choose())
    # Re-read so that entries written meanwhile by another process survive.
    entries = {**_read_json(path), key: chosen}
    _write_atomically(path, lambda f: f.write(json.dumps(entries, indent=1).encode()))
    return chosen


def _read_json(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
