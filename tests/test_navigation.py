import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env
from stable_baselines3.common.env_checker import check_env as sb3_check_env

from envs import make_task_env
from envs.navigation import Navigation2DEnv, sample_goals


def test_passes_gymnasium_and_sb3_checks():
    check_env(Navigation2DEnv(horizon=5), skip_render_check=True)
    sb3_check_env(make_task_env("Navigation2D", 5))  # actions in [-1, 1], as SB3 advises


def test_an_episode_ends_within_a_hundredth_of_the_goal():
    env = Navigation2DEnv(horizon=10)
    env.reset(options={"task": np.array([0.1, -0.095])})
    assert env.step(np.array([0.05, -0.05]))[2] is False
    _, reward, terminated, truncated, _ = env.step(np.array([0.05, -0.05]))
    assert terminated and not truncated and reward == pytest.approx(-0.005)
    env.reset(options={"task": np.array([0.1, -0.08])})
    assert not env.step(np.array([0.1, -0.1]))[2]  # 0.02 off in y


def test_the_task_env_takes_actions_in_the_unit_box():
    env = make_task_env("Navigation2D", 3)
    assert (env.action_space.low == -1).all() and (env.action_space.high == 1).all()
    env.reset(options={"task": np.array([0.5, 0.5])})
    obs = env.step(np.array([1.0, -0.5]))[0]
    np.testing.assert_allclose(obs, [0.1, -0.05])


def test_reward_is_minus_the_distance_after_the_clipped_move():
    env = Navigation2DEnv(horizon=3)
    env.reset(options={"task": np.array([0.3, -0.4])})
    obs, reward, terminated, truncated, _ = env.step(np.array([1.0, 0.05]))  # x clipped to 0.1
    np.testing.assert_allclose(obs, [0.1, 0.05])
    assert reward == pytest.approx(-np.hypot(0.2, 0.45))
    assert not terminated and not truncated
    env.step(np.zeros(2))
    assert env.step(np.zeros(2))[3]  # truncated at the horizon


def test_setting_the_task_changes_the_reward():
    env = Navigation2DEnv()
    rewards = []
    for goal in ([0.1, 0.0], [-0.5, 0.5]):
        env.reset(seed=0, options={"task": np.array(goal)})
        rewards.append(env.step(np.array([0.1, 0.0]))[1])
    assert rewards[0] == pytest.approx(0.0) and rewards[1] == pytest.approx(-np.hypot(0.6, 0.5))


def test_goals_are_uniform_in_the_square_and_seeded():
    goals = sample_goals(np.random.default_rng(0), 20_000)
    assert goals.min() >= -0.5 and goals.max() <= 0.5
    np.testing.assert_allclose(goals.mean(0), [0, 0], atol=0.01)
    env_a, env_b = Navigation2DEnv(), Navigation2DEnv()
    assert np.array_equal(env_a.reset(seed=3)[1]["task"], env_b.reset(seed=3)[1]["task"])


@pytest.mark.parametrize("task", [np.zeros(3), np.array([np.nan, 0.0])])
def test_bad_tasks_are_rejected(task):
    with pytest.raises(ValueError, match="finite goal of shape"):
        Navigation2DEnv().set_task(task)


def test_vector_env_equals_copies_of_the_single_env_under_next_step_autoreset():
    from gymnasium.vector import SyncVectorEnv

    from envs.navigation import Navigation2DVectorEnv

    goal = np.array([0.2, -0.3])
    batched = Navigation2DVectorEnv(3, horizon=2)
    copies = SyncVectorEnv([lambda: Navigation2DEnv(horizon=2)] * 3)
    outputs = []
    for env in (batched, copies):
        rng = np.random.default_rng(0)
        obs, _ = env.reset(seed=1, options={"task": goal})
        steps = [(obs,)]
        for _ in range(5):  # two episodes and the autoreset step between them
            steps.append(env.step(rng.uniform(-0.2, 0.2, size=(3, 2)))[:4])
        outputs.append(steps)
    for a, b in zip(*outputs, strict=True):
        for x, y in zip(a, b, strict=True):
            np.testing.assert_allclose(x, y, rtol=1e-6)
    assert outputs[0][2][3].all() and not outputs[0][3][1].any()  # truncation, then reward 0


def test_vector_env_ends_each_episode_on_its_own_as_the_copies_do():
    from gymnasium.vector import SyncVectorEnv

    from envs.navigation import Navigation2DVectorEnv

    goal = np.array([0.2, -0.2])
    moves = np.array([[0.1, -0.1], [0.1, 0.0], [0.0, 0.0]])  # the first reaches it in 2 steps
    outputs = []
    for env in (
        Navigation2DVectorEnv(3, horizon=4),
        SyncVectorEnv([lambda: Navigation2DEnv(4)] * 3),
    ):
        env.reset(seed=1, options={"task": goal})
        outputs.append([env.step(moves)[:4] for _ in range(6)])
    for a, b in zip(*outputs, strict=True):
        for x, y in zip(a, b, strict=True):
            np.testing.assert_allclose(x, y, rtol=1e-6)
    ours = outputs[0]
    assert [step[2][0] for step in ours] == [False, True, False, False, True, False]
    assert ours[2][1][0] == 0 and ours[3][1][1] < 0  # the first restarts; the others go on
    assert ours[3][3][1:].all()  # truncated at the horizon


def test_vector_env_rejects_bad_moves():
    from envs.navigation import Navigation2DVectorEnv

    env = Navigation2DVectorEnv(2, horizon=3)
    env.reset(seed=0)
    with pytest.raises(ValueError, match="finite moves of shape"):
        env.step(np.zeros((3, 2)))
