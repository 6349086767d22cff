"""Random tabular MDPs (Duan et al. 2016): the task distribution, its environments."""

import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

from envs.tabular_mdp import (
    TabularMDPEnv,
    TabularMDPVectorEnv,
    decode_tasks,
    encode_tasks,
    sample_tasks,
)

S, A = 10, 5


def test_sampled_mdps_have_the_prior_moments():
    tasks = sample_tasks(np.random.default_rng(0), 4000, S, A)
    means, transitions = decode_tasks(tasks, S, A)
    assert tasks.shape == (4000, S * A * (S + 1))
    assert means.mean() == pytest.approx(1.0, abs=0.01)  # N(1, 1): 200,000 draws
    assert means.std() == pytest.approx(1.0, abs=0.01)
    assert (transitions >= 0).all()
    np.testing.assert_allclose(transitions.sum(axis=-1), 1.0, atol=1e-12)
    # a flat Dirichlet over 10 states: each probability has mean 1/10, variance 9/1100
    assert transitions.mean() == pytest.approx(0.1, abs=1e-12)
    assert transitions.var() == pytest.approx(9 / 1100, rel=0.02)


def test_rewards_are_unit_variance_normal_around_the_mean_and_moves_follow_the_transitions():
    task = sample_tasks(np.random.default_rng(1), 1, S, A)[0]
    means, transitions = decode_tasks(task, S, A)
    env = TabularMDPVectorEnv(50_000, S, A)
    env.reset(seed=2, options={"tasks": np.tile(task, (50_000, 1))})
    obs, rewards, *_ = env.step(np.full(50_000, 3))  # everyone in state 0 takes action 3
    assert rewards.mean() == pytest.approx(means[0, 3], abs=0.02)
    assert rewards.std() == pytest.approx(1.0, abs=0.01)
    reached = np.bincount(obs[:, :S].argmax(axis=1), minlength=S) / 50_000
    np.testing.assert_allclose(reached, transitions[0, 3], atol=0.01)


def test_a_trial_is_n_episodes_of_10_steps_each_from_state_0():
    env = TabularMDPEnv(episodes_per_trial=3)
    obs, _ = env.reset(seed=0)
    rng = np.random.default_rng(0)
    ends = []
    for t in range(30):
        assert obs[:S].sum() == 1 and (obs[-1] == 1) == (t % 10 == 0)
        if obs[-1]:
            assert env.state == 0 and obs[0] == 1
        obs, _, terminated, truncated, info = env.step(int(rng.integers(A)))
        ends.append(info["episode_end"])
        assert not terminated and truncated == (t == 29)
    assert [t for t, end in enumerate(ends) if end] == [9, 19, 29]


def test_the_single_env_passes_check_env():
    check_env(TabularMDPEnv(), skip_render_check=True)


def test_the_batched_env_equals_single_envs_step_by_step():
    num, n = 4, 3
    rng = np.random.default_rng(3)
    tasks = sample_tasks(rng, num, S, A)
    tape = np.stack([rng.standard_normal((num, 10 * n)), rng.random((num, 10 * n))], axis=-1)
    actions = rng.integers(A, size=(10 * n, num))
    batched = TabularMDPVectorEnv(num, episodes_per_trial=n)
    singles = [TabularMDPEnv(episodes_per_trial=n) for _ in range(num)]
    obs, _ = batched.reset(options={"tasks": tasks, "tape": tape})
    for i, env in enumerate(singles):
        single_obs, _ = env.reset(options={"task": tasks[i], "tape": tape[i]})
        np.testing.assert_array_equal(obs[i], single_obs)
    for step_actions in actions:
        obs, rewards, terminated, truncated, info = batched.step(step_actions)
        for i, env in enumerate(singles):
            single = env.step(int(step_actions[i]))
            np.testing.assert_array_equal(obs[i], single[0])
            assert rewards[i] == single[1]
            assert (terminated[i], truncated[i]) == single[2:4]
            assert info["episode_end"][i] == single[4]["episode_end"]
    # next-step autoreset: the fixed tasks start again, reward 0, in state 0
    obs, rewards, _, truncated, info = batched.step(actions[0])
    assert not rewards.any() and not truncated.any() and not info["episode_end"].any()
    np.testing.assert_array_equal(info["task"], tasks)
    assert (obs[:, 0] == 1).all() and (obs[:, -1] == 1).all()


def test_the_batched_env_of_one_draws_what_the_single_env_draws_from_one_seed():
    single, batched = (
        TabularMDPEnv(episodes_per_trial=2),
        TabularMDPVectorEnv(1, episodes_per_trial=2),
    )
    single_obs, single_info = single.reset(seed=7)
    obs, info = batched.reset(seed=7)
    np.testing.assert_array_equal(info["task"][0], single_info["task"])
    for action in np.random.default_rng(0).integers(A, size=20):
        step = single.step(int(action))
        obs, rewards, *_ = batched.step(np.array([action]))
        np.testing.assert_array_equal(obs[0], step[0])
        assert rewards[0] == step[1]


def test_seeding_reproduces_the_task_and_the_trial():
    def trial(seed: int) -> tuple[np.ndarray, list[float]]:
        env = TabularMDPEnv(episodes_per_trial=2)
        _, info = env.reset(seed=seed)
        return info["task"], [env.step(t % A)[1] for t in range(20)]

    task, rewards = trial(11)
    again, rewards_again = trial(11)
    other, _ = trial(12)
    np.testing.assert_array_equal(task, again)
    assert rewards == rewards_again
    assert not np.array_equal(task, other)
    first = TabularMDPVectorEnv(8).reset(seed=5)[1]["task"]
    np.testing.assert_array_equal(first, TabularMDPVectorEnv(8).reset(seed=5)[1]["task"])


def test_encode_and_decode_round_trip():
    means = np.arange(S * A, dtype=float).reshape(S, A)
    transitions = np.full((S, A, S), 1 / S)
    row = encode_tasks(means, transitions)
    decoded = decode_tasks(row, S, A)
    np.testing.assert_array_equal(decoded[0], means)
    np.testing.assert_array_equal(decoded[1], transitions)


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda: TabularMDPEnv(episodes_per_trial=0), "episodes_per_trial must be a positive"),
        (lambda: TabularMDPEnv(num_states=-1), "num_states must be a positive integer, got -1"),
        (lambda: TabularMDPVectorEnv(0), "num_envs must be a positive integer, got 0"),
        (lambda: TabularMDPEnv().set_task(np.zeros(3)), "has 550 entries, got shape"),
        (
            lambda: TabularMDPEnv(2, 1).set_task(np.array([0.0, 0.0, 0.5, 0.6, 1.0, 0.0])),
            "sum to 1",
        ),
        (lambda: TabularMDPEnv().set_tape(np.zeros((100, 2)) + 1), r"must lie in \[0, 1\)"),
        (lambda: TabularMDPEnv().set_tape(np.zeros((99, 2))), r"shape \(100, 2\)"),
        (lambda: TabularMDPVectorEnv(2).set_tasks(np.zeros((3, 550))), "2 rows"),
    ],
)
def test_bad_inputs_are_refused_with_one_line(make, message):
    with pytest.raises(ValueError, match=message) as error:
        make()
    assert "\n" not in str(error.value)


def test_bad_actions_are_refused():
    env = TabularMDPVectorEnv(2)
    env.reset(seed=0)
    with pytest.raises(ValueError, match=r"actions must lie in \[0, 5\)"):
        env.step(np.array([0, 5]))
    single = TabularMDPEnv()
    single.reset(seed=0)
    with pytest.raises(ValueError, match="invalid action 7"):
        single.step(7)
