"""Random tabular MDPs (Duan et al. 2016): the task distribution, its environments, the
baselines and the ``rl2-mdp`` recipe."""

import json

import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

import metarl
from envs import make_task_env, make_task_vector_env
from envs.tabular_mdp import (
    TabularMDPEnv,
    TabularMDPVectorEnv,
    decode_tasks,
    encode_tasks,
    sample_tasks,
)
from metarl import runs
from metarl.errors import ConfigError
from metarl.eval.mdp_baselines import (
    TUNING_GRIDS,
    EpsilonGreedyPolicy,
    GreedyPolicy,
    OraclePolicy,
    PosteriorModel,
    PSRLPolicy,
    RandomPolicy,
    Setting,
    mdp_trials,
    run_baseline,
    tuned_constant,
    value_iteration,
)
from metarl.eval.paired import paired
from tests.test_benchmarks import benchmark_script

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
    env = TabularMDPVectorEnv(20_000, S, A)
    env.reset(seed=2, options={"tasks": np.tile(task, (20_000, 1))})
    obs, rewards, *_ = env.step(np.full(20_000, 3))  # everyone in state 0 takes action 3
    assert rewards.mean() == pytest.approx(means[0, 3], abs=0.03)
    assert rewards.std() == pytest.approx(1.0, abs=0.01)
    reached = np.bincount(obs[:, :S].argmax(axis=1), minlength=S) / 20_000
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


def test_the_maml_family_is_one_episode_per_task_with_one_task_for_all_sub_envs():
    """``TabularMDP`` of ``envs.make_task_env`` / ``make_task_vector_env``: a gymnasium
    episode is one episode of ``horizon`` steps from state 0; ``reset(options={"task": row})``
    gives every sub-environment that MDP, the batched env stepping as the single ones."""
    num, horizon = 3, 10
    rng = np.random.default_rng(4)
    task = sample_tasks(rng, 1, S, A)[0]
    tape = np.stack([rng.standard_normal((num, horizon)), rng.random((num, horizon))], axis=-1)
    batched = make_task_vector_env("TabularMDP", horizon, num)
    singles = [make_task_env("TabularMDP", horizon) for _ in range(num)]
    batched.reset(options={"task": task, "tape": tape})
    np.testing.assert_array_equal(batched.tasks, np.tile(task, (num, 1)))
    for i, env in enumerate(singles):
        env.reset(options={"task": task, "tape": tape[i]})
    for t, step_actions in enumerate(rng.integers(A, size=(horizon, num))):
        _, rewards, terminated, truncated, _ = batched.step(step_actions)
        for i, env in enumerate(singles):
            single = env.step(int(step_actions[i]))
            assert rewards[i] == single[1] and (terminated[i], truncated[i]) == single[2:4]
        assert truncated.all() == (t == horizon - 1) and not terminated.any()
    with pytest.raises(ValueError, match="one row"):
        batched.set_task(np.tile(task, (num, 1)))


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


def test_value_iteration_matches_a_hand_solved_two_state_mdp():
    """State 0 pays 1 for staying (a0) or 0 for a 60% chance of reaching state 1 (a1); state
    1 pays 2 for staying (a1). With 2 steps to go staying in state 0 is best (2 > 1.6); with
    3, the detour is (3.2 > 3)."""
    rewards = np.array([[1.0, 0.0], [0.0, 2.0]])
    transitions = np.array([[[1.0, 0.0], [0.4, 0.6]], [[1.0, 0.0], [0.0, 1.0]]])
    q = value_iteration(rewards, transitions, 3)
    expected = [[[3.0, 3.2], [2.0, 6.0]], [[2.0, 1.6], [1.0, 4.0]], [[1.0, 0.0], [0.0, 2.0]]]
    np.testing.assert_allclose(q, expected)
    batched = value_iteration(np.stack([rewards, -rewards]), np.stack([transitions] * 2), 3)
    np.testing.assert_allclose(batched[0], expected)
    np.testing.assert_array_equal(batched[1], value_iteration(-rewards, transitions, 3))


def test_the_posterior_update_matches_the_conjugate_formulas():
    """Three rewards 3, 0, 1.5 of (s0, a1) under the N(1, 1) prior with unit noise: precision
    1 + 3 = 4, mean (1 + 4.5) / 4 = 1.375, std 0.5; two moves to s1 seen (the third step
    ended its episode) make its Dirichlet (1, 3). PSRL's draws follow that posterior."""
    model = PosteriorModel(1, 2, 2)
    s0, a1 = np.array([0]), np.array([1])
    model.update(s0, a1, np.array([3.0]), np.array([1]))
    model.update(s0, a1, np.array([0.0]), np.array([1]))
    model.update(s0, a1, np.array([1.5]), None)
    mean, std = model.reward_posterior()
    assert (mean[0, 0, 1], std[0, 0, 1]) == (1.375, 0.5)
    assert (mean[0, 1, 0], std[0, 1, 0]) == (1.0, 1.0)  # unvisited: the prior
    np.testing.assert_array_equal(model.dirichlet()[0, 0, 1], [1.0, 3.0])
    np.testing.assert_array_equal(model.dirichlet()[0, 1, 1], [1.0, 1.0])

    psrl = PSRLPolicy()
    psrl.reset(Setting(50_000, 2, 2, 1, 1), np.random.default_rng(0))
    psrl.model.visits[:] = model.visits
    psrl.model.reward_sums[:] = model.reward_sums
    psrl.plan()
    drawn = psrl.q[:, -1, 0, 1]  # one step to go: the drawn mean reward itself
    assert drawn.mean() == pytest.approx(1.375, abs=0.01)
    assert drawn.std() == pytest.approx(0.5, abs=0.01)


def test_the_oracle_earns_its_planned_value_and_bounds_the_learners():
    tasks, tape, seed = mdp_trials(np.random.SeedSequence(0), 400, S, A, 30)
    means, transitions = decode_tasks(tasks, S, A)
    planned = value_iteration(means, transitions, 10)[:, 0, 0].max(axis=1)
    scores = {}
    for policy in (OraclePolicy(tasks), PSRLPolicy(), GreedyPolicy(), RandomPolicy()):
        returns = run_baseline(policy, tasks, tape, seed, S, A, 10)
        assert returns.shape == (400, 3)
        scores[policy.name] = returns.sum(axis=1)
    per_episode = scores["oracle"] / 3
    assert abs(per_episode.mean() - planned.mean()) < 2 * per_episode.std() / np.sqrt(400)
    for name in ("psrl", "greedy", "random"):
        assert (scores["oracle"] - scores[name]).mean() > 0
    assert paired(scores["psrl"], scores["random"], higher_is_better=True)["verdict"] == "better"


def test_held_out_trials_extend_with_the_trial_and_baselines_repeat_with_their_seed():
    short = mdp_trials(np.random.SeedSequence(4), 20, S, A, 100)
    long = mdp_trials(np.random.SeedSequence(4), 20, S, A, 250)
    np.testing.assert_array_equal(short[0], long[0])
    np.testing.assert_array_equal(short[1], long[1][:, :100])
    tasks, tape, seed = short
    once = run_baseline(PSRLPolicy(), tasks, tape, seed, S, A, 10)
    np.testing.assert_array_equal(once, run_baseline(PSRLPolicy(), tasks, tape, seed, S, A, 10))


def test_constants_are_tuned_on_their_own_tasks_and_cached(tmp_path, monkeypatch):
    monkeypatch.setenv("METARL_CACHE_DIR", str(tmp_path))
    tuned_constant.cache_clear()
    epsilon = tuned_constant("epsilon_greedy", 3, 2, 4, 2)
    assert epsilon in TUNING_GRIDS["epsilon_greedy"]
    cached = json.loads((tmp_path / "gittins" / "tuned-v1.json").read_text())
    assert cached == {"mdp_epsilon_greedy,3,2,4,2": epsilon}
    policy = EpsilonGreedyPolicy()
    policy.reset(Setting(5, 3, 2, 4, 2), np.random.default_rng(0))
    assert policy.settings() == {"epsilon": epsilon}
    tuned_constant.cache_clear()


def test_snail_mdp_trains_and_is_evaluated_beside_the_baselines(tmp_path):
    overrides = {
        "train.iterations": 2,
        "trials_per_iteration": 16,
        "sampler.shards": 2,
        "env.episodes_per_trial": 3,
    }
    run = metarl.train("snail-mdp", out=tmp_path / "run", progress=False, overrides=overrides)
    assert runs.load_checkpoint(run.path)["iteration"] == 2
    report = metarl.evaluate(run.path, episodes=50)
    assert json.loads((run.path / "eval.json").read_text()) == json.loads(json.dumps(report))
    assert report["metric"] == "return" and report["curve_of"] == "episode"
    names = {"random", "psrl", "psrl_tuned", "greedy", "epsilon_greedy", "oracle"}
    assert set(report["baselines"]) == names == set(report["paired"])
    assert report["curve"]["x"] == [1, 2, 3] and len(report["curve"]["oracle"]) == 3
    assert report["value"] == pytest.approx(sum(report["curve"]["agent"]), abs=1e-3)
    assert report["baselines"]["oracle"] > report["baselines"]["random"]
    assert report["paired"]["oracle"]["tasks"] == 50 and report["gains"]["x"] == [2, 3]
    assert len(report["scores"]) == 50  # per task, for metarl compare
    assert np.mean(report["scores"]) == pytest.approx(report["value"], abs=1e-6)


def test_a_bad_episode_count_is_a_config_error():
    with pytest.raises(ConfigError, match=r"'env.episodes_per_trial': got 0, expected an integer"):
        metarl.train("snail-mdp", overrides={"env.episodes_per_trial": 0}, progress=False)


@pytest.mark.benchmark
def test_the_batched_env_steps_a_million_steps_per_second_at_batch_1000():
    throughput = benchmark_script("mdp_throughput")
    assert throughput.steps_per_second(1000, 2000, 10) >= 1_000_000
