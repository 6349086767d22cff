import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

from envs.locomotion import FAMILIES, LocomotionTaskEnv


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_passes_check_env(family):
    check_env(LocomotionTaskEnv(family, horizon=20), skip_render_check=True)


@pytest.mark.parametrize(
    ("family", "task", "expected"),
    [("HalfCheetahVel", 1.5, lambda v, t: -abs(v - t)), ("AntDir", -1.0, lambda v, t: t * v)],
)
def test_the_task_sets_the_forward_term_and_keeps_the_costs(family, task, expected):
    env = LocomotionTaskEnv(family, horizon=10)
    env.reset(seed=0, options={"task": task})
    action = np.full(env.action_space.shape, 0.5, dtype=np.float32)
    _, reward, _, _, info = env.step(action)
    costs = info["reward_ctrl"] + info.get("reward_contact", 0.0) + info.get("reward_survive", 0.0)
    assert reward == pytest.approx(expected(info["x_velocity"], task) + costs)


def test_halfcheetah_control_cost_is_the_papers_half_of_gymnasiums():
    env = LocomotionTaskEnv("HalfCheetahVel", horizon=10)
    env.reset(seed=0, options={"task": 1.0})
    action = np.array([1.0, -1.0, 0.5, 0.0, 0.5, 1.0], dtype=np.float32)
    info = env.step(action)[4]
    assert info["reward_ctrl"] == pytest.approx(-0.05 * 3.5)  # rllab's 0.5 * 1e-1 * sum(a^2)


def test_different_tasks_give_different_rewards_for_the_same_motion():
    env = LocomotionTaskEnv("HalfCheetahVel", horizon=10)
    rewards = []
    for task in (0.0, 2.0):
        env.reset(seed=1, options={"task": task})
        rewards.append(env.step(np.ones(6, dtype=np.float32))[1])
    assert rewards[0] != pytest.approx(rewards[1])


def test_tasks_are_drawn_from_the_family_range_and_episodes_truncate():
    env = LocomotionTaskEnv("HalfCheetahDir", horizon=3)
    env.reset(seed=0)
    assert set(env.sample_tasks(50).tolist()) == {-1.0, 1.0}
    velocities = LocomotionTaskEnv("AntVel").sample_tasks(0)
    assert velocities.shape == (0,)
    for _ in range(2):
        assert not env.step(env.action_space.sample())[3]
    assert env.step(env.action_space.sample())[3]


@pytest.mark.parametrize(("family", "task"), [("HalfCheetahVel", 2.5), ("AntDir", 0.5)])
def test_bad_tasks_are_rejected(family, task):
    with pytest.raises(ValueError, match="a task is"):
        LocomotionTaskEnv(family).set_task(task)
