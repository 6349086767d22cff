"""Meta-World task distributions (Yu et al. 2019): ML1, ML10 and ML45 of the ``metaworld``
package, an optional extra (``pip install -e ".[metaworld]"``), imported on first use.

A benchmark holds train tasks and held-out test tasks, 50 goals per environment class: ML1
one class (``reach``, ``push``, ``pick-place``, ...) whose train and test goals differ, ML10
and ML45 10 and 45 train classes and 5 other test classes. A task here is an integer, the
index of one of the benchmark's tasks, train tasks first, so that tasks travel to rollout
workers as plain arrays; :meth:`MetaWorldTasks.split` tells which split a task belongs to.
The goal is not in the observation (the benchmark's partially observable setting). Every
step's ``info["success"]`` is the benchmark's success flag.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces
from gymnasium.vector import AutoresetMode, SyncVectorEnv, VectorEnv
from gymnasium.vector.utils import batch_space

from envs.tasks import next_tasks, reset_task, reset_tasks
from metarl.config import require_positive
from metarl.errors import UsageError

BENCHMARKS = ("ML1", "ML10", "ML45")
"""The Meta-World benchmarks that :func:`metaworld_tasks` builds."""
HORIZON = 500
"""Steps per episode in the benchmark."""
BENCHMARK_SEED = 0
"""Seeds the benchmark's goals, so that every process and every run draws the same ones."""
MISSING = 'Meta-World experiments need the metaworld extra: pip install -e ".[metaworld]"'


def import_metaworld() -> Any:
    """The ``metaworld`` package, or a :class:`UsageError` naming the extra to install."""
    try:
        import metaworld
    except ImportError:
        raise UsageError(MISSING) from None
    return metaworld


@dataclasses.dataclass(frozen=True)
class MetaWorldTasks:
    """The tasks of one benchmark, picklable (rollout workers receive it).

    Attributes:
        benchmark: ML1, ML10 or ML45.
        names: the environment class of each task (e.g. ``reach-v3``), train tasks first.
        tasks: the benchmark's ``metaworld.Task`` of each index.
        num_train: how many of the tasks are train tasks; the rest are held out.
    """

    benchmark: str
    names: tuple[str, ...]
    tasks: tuple[Any, ...]
    num_train: int

    def split(self, held_out: bool) -> np.ndarray:
        """The task indices of the train split, or of the held-out (test) split."""
        return np.arange(self.num_train, len(self.tasks)) if held_out else np.arange(self.num_train)

    def sample(self, rng: np.random.Generator, count: int, held_out: bool = False) -> np.ndarray:
        """``count`` tasks of a split, the classes balanced (shuffled rounds of the k
        classes, so that any count covers ``min(count, k)`` classes, whichever they are) and
        the goals of each class drawn without replacement while they last: 50 held-out ML1
        tasks are the whole test set."""
        indices = self.split(held_out)
        names = np.array(self.names)[indices]
        classes = list(dict.fromkeys(names))
        rounds = -(-count // len(classes))
        drawn = np.concatenate([rng.permutation(len(classes)) for _ in range(rounds)])[:count]
        out = np.empty(count, dtype=np.int64)
        for c, name in enumerate(classes):
            slots = np.flatnonzero(drawn == c)
            goals = indices[names == name]
            out[slots] = rng.choice(goals, len(slots), replace=len(slots) > len(goals))
        return out


@functools.lru_cache(maxsize=4)
def metaworld_tasks(benchmark: str, task: str = "") -> MetaWorldTasks:
    """Build a benchmark's tasks once per process (seconds for ML1, a minute for ML45).

    Args:
        benchmark: ML1, ML10 or ML45.
        task: ML1's environment class, with or without its version (``reach`` or
            ``reach-v3``); unused by ML10 and ML45.
    """
    metaworld = import_metaworld()
    if benchmark not in BENCHMARKS:
        raise ValueError(f"unknown benchmark {benchmark!r}; expected one of {BENCHMARKS}")
    if benchmark == "ML1":
        name = ml1_name(task)
        built = metaworld.ML1(name, seed=BENCHMARK_SEED)
    else:
        built = getattr(metaworld, benchmark)(seed=BENCHMARK_SEED)
    tasks = (*built.train_tasks, *built.test_tasks)
    return MetaWorldTasks(
        benchmark, tuple(t.env_name for t in tasks), tasks, len(built.train_tasks)
    )


def ml1_name(task: str) -> str:
    """The Meta-World class of an ML1 task name (``reach`` -> ``reach-v3``); ValueError
    naming the valid ones when there is none."""
    from metaworld.env_dict import ALL_V3_ENVIRONMENTS

    name = task if task in ALL_V3_ENVIRONMENTS else f"{task}-v3"
    if name not in ALL_V3_ENVIRONMENTS:
        valid = ", ".join(n.removesuffix("-v3") for n in ALL_V3_ENVIRONMENTS)
        raise ValueError(f"unknown ML1 task {task!r}; expected one of {valid}")
    return name


_FREE_SIMS: dict[str, list[Any]] = {}
"""Simulations not in use, by class, shared by the environments of this process: a
simulation takes 0.3 s and 19 MB to build, and an environment switching class (ML10, ML45)
takes one from here instead."""


def _acquire(name: str) -> Any:
    from metaworld.env_dict import ALL_V3_ENVIRONMENTS

    free = _FREE_SIMS.setdefault(name, [])
    return free.pop() if free else ALL_V3_ENVIRONMENTS[name]()


def _release(name: str, sim: Any) -> None:
    _FREE_SIMS.setdefault(name, []).append(sim)


class MetaWorldEnv(gym.Env):
    """One Meta-World task at a time, as the other task distributions are: sample tasks,
    set one, run episodes of ``horizon`` steps.

    Args:
        tasks: the benchmark (:func:`metaworld_tasks`).
        horizon: steps per episode (the benchmark's 500).

    A new train task is drawn from ``self.np_random`` at every reset unless one was fixed
    with :meth:`set_task` or passed as ``reset(options={"task": index})``. Observations are
    the benchmark's 39 floats (hand, gripper, objects, previous frame; goal zeroed), actions
    4 floats in [-1, 1] (hand motion and gripper); ``info["success"]`` is 1.0 on a step
    where the task is solved.
    """

    metadata: dict[str, Any] = {"render_modes": []}

    def __init__(self, tasks: MetaWorldTasks, horizon: int = HORIZON) -> None:
        require_positive("MetaWorldEnv", "horizon", horizon)
        self.tasks, self.horizon = tasks, horizon
        self.observation_space = observation_space()
        self.action_space = action_space()
        self.task = np.int64(0)
        self._fixed_task: np.int64 | None = None
        self._sim: Any = None
        self._sim_name = ""

    def sample_tasks(self, num_tasks: int) -> np.ndarray:
        """Train tasks drawn from this environment's random generator, shape (num_tasks,)."""
        return self.tasks.sample(self.np_random, num_tasks)

    def sample_held_out_tasks(self, num_tasks: int) -> np.ndarray:
        """Held-out (test) tasks drawn from this environment's random generator."""
        return self.tasks.sample(self.np_random, num_tasks, held_out=True)

    def set_task(self, task: int | None) -> None:
        """Fix the task used from the next reset on (``None``: sample at each reset)."""
        if task is None:
            self._fixed_task = None
            return
        index = int(task)
        if index != task or not 0 <= index < len(self.tasks.tasks):
            raise ValueError(
                f"{self.tasks.benchmark}: a task is an index in [0, {len(self.tasks.tasks)}), "
                f"got {task!r}"
            )
        self._fixed_task = np.int64(index)

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[np.ndarray, dict[str, Any]]:
        task = int(reset_task(self, seed, options))
        name = self.tasks.names[task]
        if name != self._sim_name:
            if self._sim is not None:
                _release(self._sim_name, self._sim)
            self._sim, self._sim_name = _acquire(name), name
            self._sim.max_path_length = self.horizon
        self._sim.set_task(self.tasks.tasks[task])
        obs, info = self._sim.reset()
        return obs.astype(np.float32), {**info, "task": task, "env_name": name}

    def step(self, action: np.ndarray) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        obs, reward, terminated, truncated, info = self._sim.step(np.asarray(action))
        return obs.astype(np.float32), float(reward), bool(terminated), bool(truncated), info

    def close(self) -> None:
        if self._sim is not None:
            _release(self._sim_name, self._sim)
            self._sim, self._sim_name = None, ""


def action_space() -> spaces.Box:
    """The 4 actions in [-1, 1]: the hand's motion along x, y, z and the gripper's effort."""
    return spaces.Box(-1.0, 1.0, (4,), dtype=np.float32)


def observation_space() -> spaces.Box:
    """The 39 observed floats, as the benchmark bounds them: this frame's hand position
    (within the Sawyer's reach), gripper opening in [-1, 1] and 14 unbounded object values,
    the same 18 of the previous frame, and the goal, hidden (zeros)."""
    from metaworld.sawyer_xyz_env import SawyerXYZEnv

    hand = SawyerXYZEnv._HAND_SPACE
    free = np.full(14, np.inf)
    low = np.hstack([hand.low, -1.0, -free])
    high = np.hstack([hand.high, 1.0, free])
    zeros = np.zeros(3)
    return spaces.Box(
        np.hstack([low, low, zeros]).astype(np.float32),
        np.hstack([high, high, zeros]).astype(np.float32),
        dtype=np.float32,
    )


def make_metaworld_env(benchmark: str, horizon: int, task: str = "") -> MetaWorldEnv:
    """A :class:`MetaWorldEnv` of a benchmark (ML1's ``task`` its class, e.g. ``reach``)."""
    return MetaWorldEnv(metaworld_tasks(benchmark, task), horizon)


def make_metaworld_vector_env(
    benchmark: str, horizon: int, num_envs: int, task: str = ""
) -> SyncVectorEnv:
    """``num_envs`` :class:`MetaWorldEnv` stepped together, sharing one benchmark."""
    tasks = metaworld_tasks(benchmark, task)
    return SyncVectorEnv([functools.partial(MetaWorldEnv, tasks, horizon)] * num_envs)


class MetaWorldTrialVectorEnv(VectorEnv):
    """``num_envs`` RL² trials stepped together: a trial is ``episodes_per_trial`` episodes of
    ``horizon`` steps in one task, the simulation reset to that task between episodes.

    The step that ends an episode has ``info["episode_end"]`` set and the trial is truncated
    after its last episode; under gymnasium's next-step autoreset the step after that starts
    new trials (reward 0) with the fixed tasks or fresh train tasks. Every step's
    ``info["success"]`` (num_envs,) holds the benchmark's flags. ``reset(options={"tasks":
    indices})`` fixes one task per sub-environment (held-out ones for evaluation).

    Args:
        num_envs: trials stepped at once.
        benchmark, task: as for :func:`metaworld_tasks`.
        horizon: steps per episode (the benchmark's 500).
        episodes_per_trial: episodes per trial.
    """

    metadata = {"autoreset_mode": AutoresetMode.NEXT_STEP}

    def __init__(
        self,
        num_envs: int,
        benchmark: str,
        task: str = "",
        horizon: int = HORIZON,
        episodes_per_trial: int = 2,
    ) -> None:
        require_positive("MetaWorldTrialVectorEnv", "num_envs", num_envs)
        require_positive("MetaWorldTrialVectorEnv", "episodes_per_trial", episodes_per_trial)
        self.task_set = metaworld_tasks(benchmark, task)
        self.envs = [MetaWorldEnv(self.task_set, horizon) for _ in range(num_envs)]
        self.num_envs, self.horizon = num_envs, horizon
        self.max_trial_steps = horizon * episodes_per_trial
        self.single_observation_space = self.envs[0].observation_space
        self.single_action_space = self.envs[0].action_space
        self.observation_space = batch_space(self.single_observation_space, num_envs)
        self.action_space = batch_space(self.single_action_space, num_envs)
        self._fixed_tasks: np.ndarray | None = None
        self.tasks = np.zeros(num_envs, dtype=np.int64)
        self.t = 0
        self._needs_reset = True

    def sample_tasks(self, num_tasks: int) -> np.ndarray:
        """Train tasks drawn from this environment's random generator."""
        return self.task_set.sample(self.np_random, num_tasks)

    def set_tasks(self, tasks: np.ndarray | None) -> None:
        """Fix one task index per sub-environment from the next reset on (``None``: fresh
        train tasks at every trial)."""
        if tasks is not None:
            tasks, count = np.asarray(tasks), len(self.task_set.tasks)
            integral = np.issubdtype(tasks.dtype, np.integer)
            if (
                tasks.shape != (self.num_envs,)
                or not integral
                or not 0 <= tasks.min() <= tasks.max() < count
            ):
                raise ValueError(
                    f"tasks must be {self.num_envs} task indices in [0, {count}), got {tasks!r}"
                )
        self._fixed_tasks = None if tasks is None else tasks.astype(np.int64)

    def _reset_episodes(self) -> np.ndarray:
        return np.stack(
            [
                env.reset(options={"task": t})[0]
                for env, t in zip(self.envs, self.tasks, strict=True)
            ]
        )

    def _new_trials(self) -> tuple[np.ndarray, dict[str, Any]]:
        self.tasks = next_tasks(self)
        self.t, self._needs_reset = 0, False
        return self._reset_episodes(), {"task": self.tasks.copy()}

    def reset(
        self, *, seed: int | list[int] | None = None, options: dict[str, Any] | None = None
    ) -> tuple[np.ndarray, dict[str, Any]]:
        """Seed, fix ``options["tasks"]`` (indices, one per trial) if given, and start new
        trials; ``info["task"]`` holds their tasks."""
        reset_tasks(self, seed, options)
        return self._new_trials()

    def step(
        self, actions: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, dict[str, Any]]:
        """Step every trial's simulation with its action (num_envs, 4), resetting it to its
        task where an episode ends, or start new trials after the last step of the last."""
        actions = np.asarray(actions, dtype=np.float32)
        if actions.shape != self.action_space.shape:
            raise ValueError(
                f"actions must have shape {self.action_space.shape}, got {actions.shape}"
            )
        false = np.zeros(self.num_envs, dtype=bool)
        if self._needs_reset:  # next-step autoreset
            obs, info = self._new_trials()
            info |= {"episode_end": false.copy(), "success": np.zeros(self.num_envs)}
            return obs, np.zeros(self.num_envs), false, false.copy(), info
        steps = [env.step(a) for env, a in zip(self.envs, actions, strict=True)]
        obs = np.stack([s[0] for s in steps])
        rewards = np.array([s[1] for s in steps])
        success = np.array([float(s[4]["success"]) for s in steps])
        self.t += 1
        episode_end = self.t % self.horizon == 0
        trial_end = self.t >= self.max_trial_steps
        if episode_end and not trial_end:
            obs = self._reset_episodes()
        self._needs_reset = trial_end
        info = {"episode_end": np.full(self.num_envs, episode_end), "success": success}
        return obs, rewards, false, np.full(self.num_envs, trial_end), info

    def close_extras(self, **kwargs: Any) -> None:
        for env in self.envs:
            env.close()
