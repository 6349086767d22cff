"""Hand-designed players of random tabular MDPs, batched over many tasks in numpy.

The baselines of Duan et al. (2016, RL², Table 2) on :mod:`envs.tabular_mdp`: random, PSRL
(exact, and with its posterior's spread tuned), greedy and epsilon-greedy model-based
learners, and the oracle that knows the MDP (an upper bound). Each plays ``num_tasks``
independent trials at once through four verbs, driven by :func:`run_baseline` through the
gymnasium vector environment::

    policy.reset(setting, rng)              # a Setting: how many trials, of which MDPs
    policy.plan()                           # at the start of every episode
    actions = policy.act(states, step)      # step of the episode, 0-based
    policy.observe(states, actions, rewards, next_states)

A player sees what an RL² agent sees: states, its actions and rewards, and episode ends. At an
episode's last step it sees no next state (the next observation is the start of the next
episode), so ``next_states`` is then ``None``.

The learners keep conjugate posteriors under the prior the tasks are drawn from: per (state,
action), the mean reward is N(1, 1) a priori and rewards have unit-variance Normal noise
(Normal-Normal), and the next state is categorical under a flat Dirichlet (Dirichlet-
categorical). Plans are finite-horizon value iteration over the episode's remaining steps
(:func:`value_iteration`). Epsilon-greedy's epsilon and tuned PSRL's posterior scale are tuned
per setting on tasks of their own stream (:func:`metarl.eval.gittins.tuning_seed`), disjoint
from any evaluation's, and cached on disk (:func:`metarl.eval.gittins.cached_tuning`), as the
bandit baselines are.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from functools import lru_cache
from typing import NamedTuple

import numpy as np

from envs.tabular_mdp import (
    DIRICHLET_ALPHA,
    MEAN_PRIOR,
    NOISE_STD,
    TabularMDPVectorEnv,
    decode_tasks,
    sample_tasks,
)
from metarl.config import require_positive
from metarl.eval.gittins import SeedLike, argmax_random_ties, cached_tuning, tuning_seed


def value_iteration(rewards: np.ndarray, transitions: np.ndarray, horizon: int) -> np.ndarray:
    """Optimal undiscounted action values of a finite-horizon MDP, for a batch of them.

    Args:
        rewards: mean rewards (..., S, A).
        transitions: next-state probabilities (..., S, A, S).
        horizon: steps H to go from step 0.

    Returns:
        ``q`` (..., H, S, A): ``q[..., h, s, a]`` is the expected reward of taking ``a`` in
        ``s`` at step h and acting optimally until step H, by backward induction:
        ``Q_h = R + P V_{h+1}``, ``V_h(s) = max_a Q_h(s, a)``, ``V_H = 0``.
    """
    horizon = require_positive("value_iteration", "horizon", horizon)
    q = np.empty((*rewards.shape[:-2], horizon, *rewards.shape[-2:]))
    value = np.zeros(rewards.shape[:-1])
    for h in range(horizon - 1, -1, -1):
        q[..., h, :, :] = rewards + np.einsum(
            "...sat,...t->...sa", transitions, value, optimize=True
        )
        value = q[..., h, :, :].max(axis=-1)
    return q


class Setting(NamedTuple):
    """The trials a player is reset for: how many, of which MDPs, how long."""

    num_tasks: int
    num_states: int
    num_actions: int
    episode_length: int
    episodes: int


class MDPPolicy:
    """A player of a batch of tabular-MDP trials (see the module's docstring). This base
    keeps the setting and the generator; it plans nothing and learns nothing."""

    name = ""

    def reset(self, setting: Setting, rng: np.random.Generator) -> None:
        """Forget everything; prepare to play new trials of ``setting``, drawing all
        randomness from ``rng``."""
        self.setting, self.rng = setting, rng
        self.num_tasks, self.num_actions = setting.num_tasks, setting.num_actions

    def plan(self) -> None:
        """Prepare the coming episode."""

    def act(self, states: np.ndarray, step: int) -> np.ndarray:
        """The action (num_tasks,) in each task's state at ``step`` of the episode."""
        raise NotImplementedError

    def observe(
        self,
        states: np.ndarray,
        actions: np.ndarray,
        rewards: np.ndarray,
        next_states: np.ndarray | None,
    ) -> None:
        """Record one step of every trial (``next_states`` is ``None`` at an episode's end)."""

    def settings(self) -> dict[str, float]:
        """The constants played with since the last reset (tuned ones resolved)."""
        return {}


class RandomPolicy(MDPPolicy):
    """Takes an action uniformly at random."""

    name = "random"

    def act(self, states: np.ndarray, step: int) -> np.ndarray:
        return self.rng.integers(self.num_actions, size=self.num_tasks)


class _Planner(MDPPolicy):
    """Acts greedily on the action values its :meth:`plan` sets (``self.q``, (num_tasks, H,
    S, A)), ties broken at random."""

    def act(self, states: np.ndarray, step: int) -> np.ndarray:
        return argmax_random_ties(self.q[np.arange(self.num_tasks), step, states], self.rng)


class OraclePolicy(_Planner):
    """Knows the MDP: acts optimally by value iteration on the true rewards and transitions,
    the upper bound of any learner.

    Args:
        tasks: the task rows of the trials it will play (:mod:`envs.tabular_mdp`).
    """

    name = "oracle"

    def __init__(self, tasks: np.ndarray) -> None:
        self.tasks = np.asarray(tasks)

    def reset(self, setting: Setting, rng: np.random.Generator) -> None:
        super().reset(setting, rng)
        if len(self.tasks) != setting.num_tasks:
            raise ValueError(f"OraclePolicy knows {len(self.tasks)} tasks, not {setting.num_tasks}")
        means, transitions = decode_tasks(self.tasks, setting.num_states, setting.num_actions)
        self.q = value_iteration(means, transitions, setting.episode_length)


class PosteriorModel:
    """Conjugate posteriors of every (state, action) of a batch of MDPs, from the prior the
    tasks are drawn from (:mod:`envs.tabular_mdp`).

    Mean reward: prior N(m0, s0^2) = N(1, 1), noise variance s^2 = 1; after ``n`` rewards
    summing to ``y`` the posterior is Normal with precision ``1 / s0^2 + n / s^2`` and mean
    ``(m0 / s0^2 + y / s^2) / precision``. Next state: prior Dirichlet(1, ..., 1); after
    ``c[s']`` moves to each ``s'`` the posterior is Dirichlet(1 + c).
    """

    def __init__(self, num_tasks: int, num_states: int, num_actions: int) -> None:
        shape = (num_tasks, num_states, num_actions)
        self.visits = np.zeros(shape)
        self.reward_sums = np.zeros(shape)
        self.moves = np.zeros((*shape, num_states))

    def update(
        self,
        states: np.ndarray,
        actions: np.ndarray,
        rewards: np.ndarray,
        next_states: np.ndarray | None,
    ) -> None:
        """Count one reward, and one move unless ``next_states`` is ``None``, per task."""
        rows = np.arange(len(states))
        self.visits[rows, states, actions] += 1
        self.reward_sums[rows, states, actions] += rewards
        if next_states is not None:
            self.moves[rows, states, actions, next_states] += 1

    def reward_posterior(self) -> tuple[np.ndarray, np.ndarray]:
        """Posterior mean and standard deviation of each mean reward (num_tasks, S, A)."""
        prior_mean, prior_std = MEAN_PRIOR
        precision = prior_std**-2 + self.visits / NOISE_STD**2
        mean = (prior_mean / prior_std**2 + self.reward_sums / NOISE_STD**2) / precision
        return mean, precision**-0.5

    def dirichlet(self) -> np.ndarray:
        """Posterior Dirichlet concentrations of each next-state distribution (.., S, A, S)."""
        return DIRICHLET_ALPHA + self.moves


class _ModelLearner(_Planner):
    """Keeps a :class:`PosteriorModel` of the trials it plays."""

    def reset(self, setting: Setting, rng: np.random.Generator) -> None:
        super().reset(setting, rng)
        self.model = PosteriorModel(setting.num_tasks, setting.num_states, setting.num_actions)

    def observe(
        self,
        states: np.ndarray,
        actions: np.ndarray,
        rewards: np.ndarray,
        next_states: np.ndarray | None,
    ) -> None:
        self.model.update(states, actions, rewards, next_states)


class _Tuned(_ModelLearner):
    """A learner with one constant, named ``constant`` and lying in ``bounds``: the given
    value, or by default the one tuned for the setting (:func:`tuned_constant`), resolved at
    each reset."""

    constant = ""
    bounds = (0.0, 1.0)

    def __init__(self, value: float | None = None) -> None:
        lo, hi = self.bounds
        if value is not None and not lo <= value <= hi:
            raise ValueError(f"{self.constant} must lie in [{lo}, {hi}], got {value!r}")
        self.given = value

    def reset(self, setting: Setting, rng: np.random.Generator) -> None:
        super().reset(setting, rng)
        value = tuned_constant(self.name, *setting[1:]) if self.given is None else self.given
        setattr(self, self.constant, float(value))

    def settings(self) -> dict[str, float]:
        return {self.constant: getattr(self, self.constant)}


class PSRLPolicy(_Tuned):
    """Posterior sampling for RL (Strens 2000; Osband, Russo and Van Roy 2013): at the start
    of every episode, draws one MDP from the posterior and follows its optimal policy.

    Args:
        scale: the drawn mean rewards deviate from their posterior means by ``scale`` times
            a posterior draw's deviation, in [0, 1]: 1 (the default) is exact posterior
            sampling, less explores less (0 is :class:`GreedyPolicy` with sampled
            transitions).
    """

    name = "psrl"
    constant = "scale"

    def __init__(self, scale: float = 1.0) -> None:
        super().__init__(scale)

    def plan(self) -> None:
        mean, std = self.model.reward_posterior()
        rewards = mean + self.scale * std * self.rng.standard_normal(mean.shape)
        gaps = self.rng.standard_gamma(self.model.dirichlet())
        transitions = gaps / gaps.sum(axis=-1, keepdims=True)
        self.q = value_iteration(rewards, transitions, self.setting.episode_length)


class TunedPSRLPolicy(PSRLPolicy):
    """:class:`PSRLPolicy` with the posterior scale tuned for the setting (by default)."""

    name = "psrl_tuned"

    def __init__(self, scale: float | None = None) -> None:
        _Tuned.__init__(self, scale)


class EpsilonGreedyPolicy(_Tuned):
    """Certainty equivalence: at the start of every episode, plans on the posterior mean
    MDP; then, at every step, takes a uniformly random action with probability ``epsilon``
    and the planned one otherwise.

    Args:
        epsilon: the exploration probability per step, in [0, 1]; by default the one tuned
            for the setting (:func:`tuned_constant`).
    """

    name = "epsilon_greedy"
    constant = "epsilon"

    def plan(self) -> None:
        mean, _ = self.model.reward_posterior()
        concentration = self.model.dirichlet()
        transitions = concentration / concentration.sum(axis=-1, keepdims=True)
        self.q = value_iteration(mean, transitions, self.setting.episode_length)

    def act(self, states: np.ndarray, step: int) -> np.ndarray:
        greedy = super().act(states, step)
        if self.epsilon == 0.0:
            return greedy
        explore = self.rng.random(self.num_tasks) < self.epsilon
        return np.where(explore, self.rng.integers(self.num_actions, size=self.num_tasks), greedy)


class GreedyPolicy(EpsilonGreedyPolicy):
    """Certainty equivalence without exploration: always the plan on the posterior mean."""

    name = "greedy"

    def __init__(self) -> None:
        super().__init__(0.0)


BASELINES: dict[str, Callable[[], MDPPolicy]] = {
    policy.name: policy
    for policy in (RandomPolicy, PSRLPolicy, TunedPSRLPolicy, GreedyPolicy, EpsilonGreedyPolicy)
}
"""Every learning baseline by name, with its default settings; the oracle, which must be
told the tasks, is :class:`OraclePolicy`."""

TUNING_GRIDS: dict[str, tuple[float, ...]] = {
    "epsilon_greedy": (0.0, 0.01, 0.02, 0.05, 0.1, 0.2, 0.3),
    "psrl_tuned": (0.0, 0.1, 0.2, 0.3, 0.5, 0.75, 1.0),
}
"""The candidates of each tuned constant: epsilon-greedy's epsilon, PSRL's posterior scale
(1, exact posterior sampling, last)."""

TUNING_TASKS = 2000
"""Tasks each candidate constant is scored on."""


def mdp_trials(
    seed: np.random.SeedSequence,
    num_tasks: int,
    num_states: int,
    num_actions: int,
    steps: int,
) -> tuple[np.ndarray, np.ndarray, int]:
    """Trials for a paired comparison, from three independent children of ``seed``.

    Returns the tasks (num_tasks, width) of :mod:`envs.tabular_mdp`; their noise tape
    (num_tasks, steps, 2), which every player is given (step t pays the mean plus
    ``tape[i, t, 0]``, a standard normal, and moves by the uniform ``tape[i, t, 1]``); and an
    integer seed for the players' own randomness. Neither the tasks nor the tape's first
    steps depend on ``steps``: trials of 10 episodes are the start of those of 25."""
    tasks_seed, tape_seed, players_seed = (
        np.random.SeedSequence(seed.entropy, spawn_key=(*seed.spawn_key, i)) for i in range(3)
    )
    tasks = sample_tasks(np.random.default_rng(tasks_seed), num_tasks, num_states, num_actions)
    rng = np.random.default_rng(tape_seed)
    tape = np.empty((num_tasks, steps, 2))
    for t in range(steps):  # step by step, so that a longer tape extends a shorter one
        tape[:, t, 0] = rng.standard_normal(num_tasks)
        tape[:, t, 1] = rng.random(num_tasks)
    return tasks, tape, int(players_seed.generate_state(1)[0])


def run_baseline(
    policy: MDPPolicy,
    tasks: np.ndarray,
    tape: np.ndarray,
    seed: SeedLike,
    num_states: int,
    num_actions: int,
    episode_length: int,
) -> np.ndarray:
    """Returns (tasks, episodes) of each episode of ``policy``'s trial on each of the fixed
    tasks with their tape (tasks, episodes * episode_length, 2), stepped through
    :class:`envs.tabular_mdp.TabularMDPVectorEnv`; the policy's own randomness comes from
    ``seed``."""
    num_tasks, steps, _ = np.shape(tape)
    episodes = steps // episode_length
    env = TabularMDPVectorEnv(num_tasks, num_states, num_actions, episode_length, episodes)
    obs, _ = env.reset(options={"tasks": tasks, "tape": tape})
    setting = Setting(num_tasks, num_states, num_actions, episode_length, episodes)
    policy.reset(setting, np.random.default_rng(seed))
    returns = np.zeros((num_tasks, episodes))
    for episode in range(episodes):
        policy.plan()
        states = obs[:, :num_states].argmax(axis=1)
        for step in range(episode_length):
            actions = policy.act(states, step)
            obs, rewards, *_ = env.step(actions)
            returns[:, episode] += rewards
            following = obs[:, :num_states].argmax(axis=1)
            last = step == episode_length - 1
            policy.observe(states, actions, rewards, None if last else following)
            states = following
    return returns


def tune(
    make: Callable[[float], MDPPolicy],
    grid: Sequence[float],
    trials: tuple[np.ndarray, np.ndarray, int],
    num_states: int,
    num_actions: int,
    episode_length: int,
) -> float:
    """The constant of ``grid`` with which ``make(constant)`` earns the most mean return per
    trial on ``trials`` (:func:`mdp_trials`; ties: the first). Every candidate meets the same
    tasks, tape and seed (common random numbers), so their differences have little
    variance."""
    tasks, tape, seed = trials
    scores = [
        run_baseline(make(c), tasks, tape, seed, num_states, num_actions, episode_length)
        .sum(axis=1)
        .mean()
        for c in grid
    ]
    return float(grid[int(np.argmax(scores))])


@lru_cache(maxsize=64)
def tuned_constant(
    name: str, num_states: int, num_actions: int, episode_length: int, episodes: int
) -> float:
    """The constant of baseline ``name`` (a key of :data:`TUNING_GRIDS`) for the setting:
    :func:`tune` over its grid on :data:`TUNING_TASKS` tasks drawn from
    :func:`metarl.eval.gittins.tuning_seed`, cached in memory and on disk."""

    def choose() -> float:
        steps = episodes * episode_length
        trials = mdp_trials(tuning_seed(), TUNING_TASKS, num_states, num_actions, steps)
        return tune(
            BASELINES[name], TUNING_GRIDS[name], trials, num_states, num_actions, episode_length
        )

    key = f"mdp_{name},{num_states},{num_actions},{episode_length},{episodes}"
    return cached_tuning(key, choose)
