import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env as gym_check_env
from stable_baselines3.common.env_checker import check_env

from envs.bandits import BernoulliBanditEnv, BernoulliBanditVectorEnv


def test_single_env_passes_sb3_and_gymnasium_checks():
    check_env(BernoulliBanditEnv(num_arms=4, horizon=6), warn=True)
    gym_check_env(BernoulliBanditEnv(num_arms=4, horizon=6), skip_render_check=True)


def test_trial_lasts_horizon_pulls_then_truncates():
    env = BernoulliBanditEnv(num_arms=3, horizon=5)
    env.reset(seed=0)
    flags = [env.step(0)[3] for _ in range(5)]
    assert flags == [False, False, False, False, True]


def test_same_seed_same_tasks_and_rewards():
    def trial(seed):
        env = BernoulliBanditEnv(num_arms=5, horizon=20)
        _, info = env.reset(seed=seed)
        return info["task"], [env.step(t % 5)[1] for t in range(20)]

    task_a, rewards_a = trial(3)
    task_b, rewards_b = trial(3)
    task_c, _ = trial(4)
    np.testing.assert_array_equal(task_a, task_b)
    assert rewards_a == rewards_b
    assert not np.allclose(task_a, task_c)


def test_reward_frequency_matches_arm_mean():
    env = BernoulliBanditVectorEnv(20_000, num_arms=2, horizon=1)
    env.reset(seed=1, options={"tasks": np.tile([0.2, 0.7], (20_000, 1))})
    _, rewards, *_ = env.step(np.ones(20_000, dtype=np.int64))
    assert abs(rewards.mean() - 0.7) < 0.01


def test_vector_env_equals_copies_of_single_env():
    """With deterministic arms (means 0 or 1) the batched env and N single envs agree."""
    rng = np.random.default_rng(0)
    tasks = rng.integers(0, 2, size=(8, 4)).astype(float)
    actions = rng.integers(0, 4, size=(7, 8))
    vec = BernoulliBanditVectorEnv(8, num_arms=4, horizon=3)
    vec.reset(seed=0, options={"tasks": tasks})
    singles = [BernoulliBanditEnv(num_arms=4, horizon=3) for _ in range(8)]
    for env, task in zip(singles, tasks, strict=True):
        env.reset(seed=0, options={"task": task})
    done = np.zeros(8, dtype=bool)
    for step_actions in actions:
        _, rewards, term, trunc, _ = vec.step(step_actions)
        for i, env in enumerate(singles):
            if done[i]:  # next-step autoreset: a reset step with reward 0
                env.reset()
                expected = (0.0, False, False)
            else:
                _, r, te, tr, _ = env.step(int(step_actions[i]))
                expected = (r, te, tr)
            assert (rewards[i], term[i], trunc[i]) == expected
        done = term | trunc


def test_vector_env_draws_fresh_tasks_after_autoreset():
    vec = BernoulliBanditVectorEnv(4, num_arms=3, horizon=1)
    _, info = vec.reset(seed=0)
    vec.step(np.zeros(4, dtype=np.int64))
    _, rewards, _, _, info2 = vec.step(np.zeros(4, dtype=np.int64))
    assert np.all(rewards == 0)
    assert not np.allclose(info["task"], info2["task"])


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [({"num_arms": 0}, "num_arms"), ({"horizon": -3}, "horizon"), ({"num_arms": 2.5}, "num_arms")],
)
def test_bad_sizes_are_rejected(kwargs, message):
    with pytest.raises(ValueError, match=message):
        BernoulliBanditEnv(**kwargs)
    with pytest.raises(ValueError, match=message):
        BernoulliBanditVectorEnv(4, **kwargs)


def test_bad_actions_and_tasks_are_rejected():
    vec = BernoulliBanditVectorEnv(3, num_arms=2, horizon=2)
    vec.reset(seed=0)
    with pytest.raises(ValueError, match="actions must lie"):
        vec.step(np.array([0, 1, 2]))
    with pytest.raises(ValueError, match="shape"):
        vec.step(np.array([0, 1]))
    with pytest.raises(ValueError, match="shape"):
        vec.reset(options={"tasks": np.zeros((2, 2))})
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        BernoulliBanditEnv(num_arms=2).set_task(np.array([0.5, 1.5]))


def test_a_fixed_reward_tape_pays_by_pull_count():
    """The j-th pull of arm a pays ``u[a, j] < mean[a]``, whichever order arms are pulled
    in, in the single env and the vector env alike; a new trial replays the tape."""
    means = np.array([0.5, 0.5])
    tape = np.array([[0.1, 0.9, 0.2], [0.9, 0.1, 0.8]])  # arm 0: 1 0 1, arm 1: 0 1 0
    single = BernoulliBanditEnv(num_arms=2, horizon=3)
    single.reset(seed=0, options={"task": means, "reward_uniforms": tape})
    assert [single.step(a)[1] for a in (1, 0, 1)] == [0.0, 1.0, 1.0]
    single.reset()
    assert [single.step(a)[1] for a in (0, 0, 0)] == [1.0, 0.0, 1.0]
    vec = BernoulliBanditVectorEnv(2, num_arms=2, horizon=3)
    vec.reset(
        options={"tasks": np.stack([means, means]), "reward_uniforms": np.stack([tape, tape])}
    )
    rewards = [vec.step(np.array(pair))[1].tolist() for pair in ((1, 0), (0, 0), (1, 0))]
    assert rewards == [[0.0, 1.0], [1.0, 0.0], [1.0, 1.0]]


@pytest.mark.parametrize(
    ("tape", "message"),
    [(np.zeros((2, 2)), r"shape \(2, 3\)"), (np.full((2, 3), 1.0), r"\[0, 1\)")],
)
def test_a_bad_reward_tape_is_refused(tape, message):
    env = BernoulliBanditEnv(num_arms=2, horizon=3)
    with pytest.raises(ValueError, match=message):
        env.reset(options={"reward_uniforms": tape})
