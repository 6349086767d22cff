from typing import Any

import numpy as np
import pytest
import torch

from envs.navigation import Navigation2DEnv
from metarl.eval.ppo_baseline import ppo_scratch_curve

GOAL = np.array([0.4, 0.4])


class CountingNavigation(Navigation2DEnv):
    """Navigation that records, per instance, its steps and the task it was set to."""

    instances: list["CountingNavigation"] = []

    def __init__(self, horizon: int) -> None:
        super().__init__(horizon=horizon)
        self.steps = 0
        self.set_to: Any = None
        CountingNavigation.instances.append(self)

    def set_task(self, task: Any) -> None:
        super().set_task(task)
        self.set_to = task

    def step(self, action: np.ndarray) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        self.steps += 1
        return super().step(action)


def short_navigation() -> Navigation2DEnv:
    return Navigation2DEnv(horizon=10)


def test_curve_shape_and_each_task_trains_on_exactly_points_times_steps_per_point():
    CountingNavigation.instances = []
    tasks = [GOAL, np.array([-0.3, 0.2])]
    curve = ppo_scratch_curve(
        lambda: CountingNavigation(horizon=10), tasks, 128, 2, 2, seed=0, n_epochs=1
    )
    assert curve.shape == (2, 3)
    assert np.all(np.isfinite(curve))
    # per task: a training env, then an evaluation env (2 episodes × 10 steps × 3 points)
    train, evaluation = CountingNavigation.instances[0::2], CountingNavigation.instances[1::2]
    assert [env.steps for env in train] == [2 * 128] * 2
    assert [env.steps for env in evaluation] == [3 * 2 * 10] * 2
    for env, task in zip(train + evaluation, tasks + tasks, strict=True):
        assert env.set_to is task


def test_same_seed_same_curve_and_torch_threads_restored():
    threads = torch.get_num_threads()

    def run(seed: int) -> np.ndarray:
        return ppo_scratch_curve(short_navigation, [GOAL], 100, 2, 3, seed, n_epochs=2)

    first = run(3)
    assert torch.get_num_threads() == threads
    np.testing.assert_array_equal(first, run(3))
    assert not np.array_equal(first, run(4))


@pytest.mark.parametrize(
    ("overrides", "named"),
    [
        ({"steps_per_point": 0}, "steps_per_point"),
        ({"steps_per_point": 10.5}, "steps_per_point"),
        ({"points": -1}, "points"),
        ({"points": True}, "points"),
        ({"eval_episodes": 0}, "eval_episodes"),
        ({"tasks": []}, "tasks"),
        ({"n_steps": 30}, "n_steps"),
        ({"seed": 0.5}, "seed"),
        ({"policy": "CnnPolicy"}, "policy"),
        ({"steps_per_point": 2 * 4099}, "steps_per_point"),  # no usable rollout length
    ],
)
def test_bad_inputs_raise_naming_the_argument(overrides, named):
    args = {"tasks": [GOAL], "steps_per_point": 100, "points": 1, "eval_episodes": 1, "seed": 0}
    args.update(overrides)  # keys that are not parameters go to PPO
    with pytest.raises(ValueError, match=named):
        ppo_scratch_curve(short_navigation, **args)


def test_ppo_learns_to_approach_a_fixed_goal():
    """From a random start (about -6 per 10-step episode), 2000 steps bring it closer
    (about -4.5; the best is about -1.3); the margin held over 8 seeds."""
    curve = ppo_scratch_curve(short_navigation, [GOAL], 1000, 2, 10, seed=0)[0]
    assert curve[-1] > curve[0] + 0.5


def test_tasks_trained_in_worker_processes_give_the_same_curve():
    tasks = [GOAL, np.array([-0.3, 0.2]), np.array([0.1, -0.4])]
    args = (short_navigation, tasks, 100, 1, 2, 5)
    one = ppo_scratch_curve(*args, n_epochs=1)
    np.testing.assert_array_equal(ppo_scratch_curve(*args, workers=2, n_epochs=1), one)
