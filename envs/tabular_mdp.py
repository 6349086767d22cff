"""Random tabular MDPs as a task distribution (Duan et al. 2016, RL², section 4.2).

A *task* is an MDP of ``num_states`` states and ``num_actions`` actions (Duan et al.: 10 and
5). Per (state, action) it has a mean reward drawn from N(1, 1) and a distribution over next
states drawn from the flat Dirichlet; a step pays the mean plus unit-variance Normal noise.
It is encoded as one float64 row: the mean rewards (state-major, ``S * A`` entries), then the
transition probabilities (``S * A * S`` entries, the next state fastest); many tasks form one
array (num_tasks, S * A * (S + 1)).

A gymnasium episode is one *trial*: ``episodes_per_trial`` episodes (n) of ``episode_length``
steps (10) in the same MDP, each starting in state 0. The step that ends an episode has
``info["episode_end"]`` set; the trial is truncated after its last episode, never terminated.

The observation is ``[one-hot state, first]``, float32 in [0, 1]: ``first`` is 1 in the
observation of an episode's first step (the agent has just been put back in state 0). With
the previous action, reward and episode-end flag that the RL² input wrapper adds
(:func:`metarl.policies.rl2_inputs`), a recurrent agent tells apart state, action, reward and
episode boundaries, as in RL².

The noise comes from the environment's generator, unless a *tape* is fixed: per trial step t,
``tape[t, 0]`` is the reward's standard-normal noise and ``tape[t, 1]`` the uniform in [0, 1)
whose inverse-CDF draw is the next state. Evaluation fixes one tape per held-out task, so the
agent and every baseline meet the same luck at the same step (common random numbers), and two
players acting alike see identical trials.

Two environments with the same semantics, both stepping one batched core:

- :class:`TabularMDPEnv`, a plain :class:`gymnasium.Env` (passes ``check_env``);
- :class:`TabularMDPVectorEnv`, a :class:`gymnasium.vector.VectorEnv` that steps thousands of
  trials at once in numpy.
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces
from gymnasium.vector import AutoresetMode, VectorEnv
from gymnasium.vector.utils import batch_space

from envs.tasks import check_actions, next_tasks, reset_task, reset_tasks
from metarl.config import require_positive

MEAN_PRIOR = (1.0, 1.0)
"""Mean and standard deviation of the Normal each (state, action)'s mean reward is drawn from."""

NOISE_STD = 1.0
"""Standard deviation of a reward around its (state, action)'s mean."""

DIRICHLET_ALPHA = 1.0
"""Concentration of the flat Dirichlet each transition distribution is drawn from."""


def task_width(num_states: int, num_actions: int) -> int:
    """Entries of a task row: ``S * A`` mean rewards and ``S * A * S`` probabilities."""
    return num_states * num_actions * (num_states + 1)


def sample_tasks(
    rng: np.random.Generator, num_tasks: int, num_states: int, num_actions: int
) -> np.ndarray:
    """Draw ``num_tasks`` MDPs (num_tasks, S * A * (S + 1)): mean rewards i.i.d. N(1, 1) and
    transition distributions i.i.d. flat Dirichlet (normalised Gamma(1) draws)."""
    pairs = num_states * num_actions
    means = rng.normal(*MEAN_PRIOR, size=(num_tasks, pairs))
    gaps = rng.standard_gamma(DIRICHLET_ALPHA, size=(num_tasks, pairs, num_states))
    transitions = gaps / gaps.sum(axis=-1, keepdims=True)
    return np.concatenate([means, transitions.reshape(num_tasks, -1)], axis=1)


def encode_tasks(means: np.ndarray, transitions: np.ndarray) -> np.ndarray:
    """Task rows of mean rewards (..., S, A) and transition probabilities (..., S, A, S)."""
    means, transitions = np.asarray(means, dtype=np.float64), np.asarray(transitions)
    lead = means.shape[:-2]
    rows = np.concatenate(
        [means.reshape(*lead, -1), transitions.reshape(*lead, -1).astype(np.float64)], axis=-1
    )
    num_states, num_actions = means.shape[-2:]
    return check_tasks(rows, num_states, num_actions)


def decode_tasks(
    tasks: np.ndarray, num_states: int, num_actions: int
) -> tuple[np.ndarray, np.ndarray]:
    """Mean rewards (..., S, A) and transition probabilities (..., S, A, S) of task rows."""
    tasks = np.asarray(tasks)
    lead, pairs = tasks.shape[:-1], num_states * num_actions
    means = tasks[..., :pairs].reshape(*lead, num_states, num_actions)
    transitions = tasks[..., pairs:].reshape(*lead, num_states, num_actions, num_states)
    return means, transitions


def check_tasks(tasks: np.ndarray, num_states: int, num_actions: int) -> np.ndarray:
    """Task rows given from outside, validated: the row width of S states and A actions,
    finite means, and per (state, action) probabilities >= 0 that sum to 1 (within 1e-6).
    Returns them as float64."""
    tasks = np.asarray(tasks, dtype=np.float64)
    width = task_width(num_states, num_actions)
    if tasks.ndim == 0 or tasks.shape[-1] != width:
        raise ValueError(
            f"a task row of {num_states} states and {num_actions} actions has {width} "
            f"entries, got shape {tasks.shape}"
        )
    means, transitions = decode_tasks(tasks, num_states, num_actions)
    if not np.isfinite(means).all():
        raise ValueError("mean rewards must be finite")
    if (transitions < 0).any() or not np.allclose(transitions.sum(axis=-1), 1.0, atol=1e-6):
        raise ValueError("transition probabilities must be >= 0 and sum to 1 per (state, action)")
    return tasks


def _check_tape(tape: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    tape = np.asarray(tape, dtype=np.float64)
    if tape.shape != shape:
        raise ValueError(f"tape must have shape {shape}, got {tape.shape}")
    if not np.isfinite(tape[..., 0]).all():
        raise ValueError("the tape's reward noise (tape[..., 0]) must be finite")
    if ((tape[..., 1] < 0) | (tape[..., 1] >= 1)).any():
        raise ValueError("the tape's uniforms (tape[..., 1]) must lie in [0, 1)")
    return tape


class _Trials:
    """A batch of trials run in lockstep (every trial has the same length): the tasks, the
    agents' states and the dynamics both environments step.

    Args are those of :class:`TabularMDPEnv`, plus ``num`` trials."""

    def __init__(
        self,
        num: int,
        num_states: int,
        num_actions: int,
        episode_length: int,
        episodes_per_trial: int,
    ) -> None:
        owner = "TabularMDP"
        self.num = require_positive(owner, "num_envs", num)
        self.num_states = require_positive(owner, "num_states", num_states)
        self.num_actions = require_positive(owner, "num_actions", num_actions)
        self.episode_length = require_positive(owner, "episode_length", episode_length)
        self.episodes_per_trial = require_positive(owner, "episodes_per_trial", episodes_per_trial)
        self.max_trial_steps = self.episode_length * self.episodes_per_trial
        self.width = task_width(self.num_states, self.num_actions)
        self.observation_space = spaces.Box(
            0.0, 1.0, shape=(self.num_states + 1,), dtype=np.float32
        )
        pairs = self.num_states * self.num_actions
        self._offset = np.arange(self.num) * pairs  # first (state, action) row of each trial
        self._means = np.zeros(self.num * pairs)
        self._cdf = np.ones((self.num * pairs, self.num_states))
        self.state = np.zeros(self.num, dtype=np.int64)
        self.t = 0

    def load(self, tasks: np.ndarray) -> None:
        """Start new trials of validated ``tasks`` (num, width), all in state 0."""
        means, transitions = decode_tasks(tasks, self.num_states, self.num_actions)
        self._means = means.reshape(-1)
        cdf = np.cumsum(transitions, axis=-1).reshape(-1, self.num_states)
        cdf[:, -1] = 1.0  # no uniform in [0, 1) may fall beyond the last state by rounding
        self._cdf = cdf
        self.state[:] = 0
        self.t = 0

    def observe(self) -> np.ndarray:
        """Observations (num, S + 1): one-hot state and the episode's-first-step flag."""
        obs = np.zeros((self.num, self.num_states + 1), dtype=np.float32)
        obs[np.arange(self.num), self.state] = 1.0
        obs[:, -1] = self.t % self.episode_length == 0
        return obs

    def step(
        self, actions: np.ndarray, noise: np.ndarray, uniforms: np.ndarray
    ) -> tuple[np.ndarray, bool, bool]:
        """Act in every trial with reward noise and next-state uniforms (num,); return the
        rewards (num,), whether the episode and whether the trial ended."""
        pair = self._offset + self.state * self.num_actions + actions
        rewards = self._means[pair] + NOISE_STD * noise
        # inverse CDF: the first next state whose cumulative probability exceeds the uniform
        following = (self._cdf[pair] <= uniforms[:, None]).sum(axis=1)
        self.t += 1
        episode_end = self.t % self.episode_length == 0
        self.state = np.zeros_like(following) if episode_end else following
        return rewards, episode_end, self.t >= self.max_trial_steps


class TabularMDPEnv(gym.Env):
    """One random tabular MDP; an episode is a trial of ``episodes_per_trial`` episodes in it.

    Args:
        num_states: states S (Duan et al.: 10).
        num_actions: actions A (Duan et al.: 5).
        episode_length: steps per episode (Duan et al.: 10), each episode from state 0.
        episodes_per_trial: episodes per trial n (Duan et al.: 10, 25, 50, 75 or 100).

    A new task is drawn from ``self.np_random`` at every reset, unless one was fixed with
    :meth:`set_task` or passed as ``reset(options={"task": row})``; likewise the noise, unless
    a tape was fixed with :meth:`set_tape` or ``reset(options={"tape": tape})``.
    """

    metadata = {"render_modes": []}

    def __init__(
        self,
        num_states: int = 10,
        num_actions: int = 5,
        episode_length: int = 10,
        episodes_per_trial: int = 10,
    ) -> None:
        self._trials = _Trials(1, num_states, num_actions, episode_length, episodes_per_trial)
        self.num_states, self.num_actions = self._trials.num_states, self._trials.num_actions
        self.episode_length = self._trials.episode_length
        self.episodes_per_trial = self._trials.episodes_per_trial
        self.observation_space = self._trials.observation_space
        self.action_space = spaces.Discrete(self.num_actions)
        self._fixed_task: np.ndarray | None = None
        self._tape: np.ndarray | None = None
        self.task: np.ndarray | None = None

    @property
    def max_trial_steps(self) -> int:
        """Steps in one trial."""
        return self._trials.max_trial_steps

    @property
    def state(self) -> int:
        """The agent's state."""
        return int(self._trials.state[0])

    def sample_tasks(self, num_tasks: int) -> np.ndarray:
        """Draw tasks from this environment's random generator."""
        return sample_tasks(self.np_random, num_tasks, self.num_states, self.num_actions)

    def set_task(self, task: np.ndarray | None) -> None:
        """Fix the task row used from the next reset on (``None``: sample at each reset)."""
        if task is not None and np.ndim(task) != 1:
            raise ValueError(f"a task is one row, got shape {np.shape(task)}")
        self._fixed_task = (
            None if task is None else check_tasks(task, self.num_states, self.num_actions)
        )

    def set_tape(self, tape: np.ndarray | None) -> None:
        """Fix the noise tape (max_trial_steps, 2) from the next reset on: step t pays
        ``mean + tape[t, 0]`` and moves by the uniform ``tape[t, 1]`` (``None``: draw from
        ``np_random``)."""
        self._tape = None if tape is None else _check_tape(tape, (self.max_trial_steps, 2))

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[np.ndarray, dict[str, Any]]:
        reset_task(self, seed, options)
        if options and "tape" in options:
            self.set_tape(options["tape"])
        self._trials.load(self.task[None])
        return self._trials.observe()[0], {"task": self.task.copy()}

    def step(self, action: int) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        if self.task is None:
            raise gym.error.ResetNeeded("call reset before step")
        if not self.action_space.contains(action):
            raise ValueError(f"invalid action {action!r} for {self.num_actions} actions")
        if self._trials.t >= self.max_trial_steps:
            raise gym.error.ResetNeeded("the trial is over: call reset")
        if self._tape is None:
            noise, uniforms = self.np_random.standard_normal(1), self.np_random.random(1)
        else:
            noise, uniforms = self._tape[self._trials.t, :1], self._tape[self._trials.t, 1:]
        rewards, episode_end, trial_end = self._trials.step(
            np.array([int(action)]), noise, uniforms
        )
        obs = self._trials.observe()[0]
        return obs, float(rewards[0]), False, trial_end, {"episode_end": episode_end}


class TabularMDPVectorEnv(VectorEnv):
    """``num_envs`` random-MDP trials stepped together in numpy.

    Semantics equal ``num_envs`` copies of :class:`TabularMDPEnv` under gymnasium's next-step
    autoreset: all trials have the same length, so every sub-environment ends on the same
    step, and the step after that starts new trials (reward 0, no episode end) with the fixed
    tasks or fresh ones. ``reset(options={"tasks": rows})`` fixes one task per
    sub-environment, ``reset(options={"task": row})`` one for them all.

    Args:
        num_envs: trials stepped at once.
        num_states, num_actions, episode_length, episodes_per_trial: as for
            :class:`TabularMDPEnv`.
    """

    metadata = {"autoreset_mode": AutoresetMode.NEXT_STEP}

    def __init__(
        self,
        num_envs: int,
        num_states: int = 10,
        num_actions: int = 5,
        episode_length: int = 10,
        episodes_per_trial: int = 10,
    ) -> None:
        self._trials = _Trials(
            num_envs, num_states, num_actions, episode_length, episodes_per_trial
        )
        self.num_envs = self._trials.num
        self.num_states, self.num_actions = self._trials.num_states, self._trials.num_actions
        self.episode_length = self._trials.episode_length
        self.episodes_per_trial = self._trials.episodes_per_trial
        self.single_observation_space = self._trials.observation_space
        self.single_action_space = spaces.Discrete(self.num_actions)
        self.observation_space = batch_space(self.single_observation_space, self.num_envs)
        self.action_space = batch_space(self.single_action_space, self.num_envs)
        self._fixed_tasks: np.ndarray | None = None
        self._tape: np.ndarray | None = None
        self.tasks = np.zeros((self.num_envs, self._trials.width))
        self._needs_reset = True

    @property
    def max_trial_steps(self) -> int:
        """Steps in one trial."""
        return self._trials.max_trial_steps

    @property
    def states(self) -> np.ndarray:
        """The agents' states (num_envs,)."""
        return self._trials.state.copy()

    def sample_tasks(self, num_tasks: int) -> np.ndarray:
        """Draw tasks from this environment's random generator."""
        return sample_tasks(self.np_random, num_tasks, self.num_states, self.num_actions)

    def set_tasks(self, tasks: np.ndarray | None) -> None:
        """Fix the task rows, shape (num_envs, width), from the next reset on (``None``:
        fresh tasks at every trial)."""
        if tasks is not None and np.shape(tasks)[:1] != (self.num_envs,):
            raise ValueError(f"tasks must have {self.num_envs} rows, got shape {np.shape(tasks)}")
        self._fixed_tasks = (
            None if tasks is None else check_tasks(tasks, self.num_states, self.num_actions)
        )

    def set_task(self, task: np.ndarray | None) -> None:
        """Fix one task row for every sub-environment from the next reset on (their trials
        are episodes of one task, as MAML's episode worker samples them; ``None``: fresh
        tasks at every trial)."""
        if task is not None and np.ndim(task) != 1:
            raise ValueError(f"a task is one row, got shape {np.shape(task)}")
        self.set_tasks(None if task is None else np.tile(task, (self.num_envs, 1)))

    def set_tape(self, tape: np.ndarray | None) -> None:
        """Fix the noise tape (num_envs, max_trial_steps, 2) from the next reset on (as
        :meth:`TabularMDPEnv.set_tape`, one per trial; ``None``: draw from ``np_random``)."""
        shape = (self.num_envs, self.max_trial_steps, 2)
        self._tape = None if tape is None else _check_tape(tape, shape)

    def _new_trials(self) -> dict[str, Any]:
        self.tasks = next_tasks(self)
        self._trials.load(self.tasks)
        self._needs_reset = False
        return {"task": self.tasks.copy()}

    def reset(
        self, *, seed: int | list[int] | None = None, options: dict[str, Any] | None = None
    ) -> tuple[np.ndarray, dict[str, Any]]:
        reset_tasks(self, seed, options)
        if options and "task" in options:  # one task for all, as Navigation2DVectorEnv takes
            self.set_task(options["task"])
        if options and "tape" in options:
            self.set_tape(options["tape"])
        info = self._new_trials()
        return self._trials.observe(), info

    def step(
        self, actions: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, dict[str, Any]]:
        actions = check_actions(actions, self.num_envs, self.num_actions)
        false = np.zeros(self.num_envs, dtype=bool)
        if self._needs_reset:  # next-step autoreset
            info = self._new_trials()
            info["episode_end"] = false.copy()
            return self._trials.observe(), np.zeros(self.num_envs), false, false.copy(), info
        t = self._trials.t
        if self._tape is None:
            noise = self.np_random.standard_normal(self.num_envs)
            uniforms = self.np_random.random(self.num_envs)
        else:
            noise, uniforms = self._tape[:, t, 0], self._tape[:, t, 1]
        rewards, episode_end, trial_end = self._trials.step(actions, noise, uniforms)
        self._needs_reset = trial_end
        info = {"episode_end": np.full(self.num_envs, episode_end)}
        return self._trials.observe(), rewards, false, np.full(self.num_envs, trial_end), info
