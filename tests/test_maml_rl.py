import functools

import numpy as np
import pytest
import torch
from gymnasium.wrappers import RescaleAction

import metarl
from agents.maml_rl import build_policy
from envs import make_task_vector_env
from envs.tabular_mdp import decode_tasks, sample_tasks
from metarl.cli import main
from metarl.policies import CategoricalMLPPolicy, GaussianMLPPolicy
from metarl.rollout import EpisodeWorker, TaskShard
from metarl.runs import load_checkpoint, read_metrics

TINY = {
    "env.meta_batch": 4,
    "env.episodes_per_task": 4,
    "env.horizon": 20,
    "sampler.shards": 2,
    "policy.hidden": [16, 16],
    "train.iterations": 2,
    "eval.workers": 1,  # in-process; one test below checks that Ray actors give the same
}


def nav_worker(episodes=3, horizon=10):
    return EpisodeWorker(
        functools.partial(make_task_vector_env, "Navigation2D", horizon),
        functools.partial(GaussianMLPPolicy, 2, 2, [8]),
        episodes,
        horizon,
    )


def test_episode_worker_samples_each_task_with_its_own_parameters():
    worker = nav_worker()
    theta = {k: v.detach() for k, v in worker.policy.named_parameters()}
    shifted = {**theta, "body.2.bias": theta["body.2.bias"] + 5.0}  # mean action +5
    tasks = np.array([[0.3, 0.3], [-0.3, 0.2]])
    (own,) = worker.sample(None, [TaskShard(7, tasks)])
    (mixed,) = worker.sample(None, [TaskShard(7, tasks, [theta, shifted])])
    assert own["obs"].shape == (2, 3, 10, 2) and own["returns"].shape == (2, 3)
    np.testing.assert_array_equal(own["actions"][0], mixed["actions"][0])
    # same start and noise: the first actions differ by the shifted mean alone
    np.testing.assert_allclose(mixed["actions"][1, :, 0] - own["actions"][1, :, 0], 5.0, atol=1e-5)
    # the robot walks the clipped step of 0.1 per coordinate: its position is known
    np.testing.assert_allclose(mixed["obs"][1, :, -1], 0.9, atol=1e-6)
    (again,) = worker.sample(None, [TaskShard(7, tasks)])
    np.testing.assert_array_equal(own["actions"], again["actions"])


def test_episode_worker_draws_discrete_actions_from_each_tasks_seeded_policy():
    """On TabularMDP (one 10-step episode from state 0 per gymnasium episode), actions are
    integers drawn from each task's categorical with its own seeded noise."""
    episodes = 200
    worker = EpisodeWorker(
        functools.partial(make_task_vector_env, "TabularMDP", 10),
        functools.partial(CategoricalMLPPolicy, 11, 5, [8]),
        episodes,
        10,
    )
    tasks = sample_tasks(np.random.default_rng(0), 2, 10, 5)
    theta = {k: v.detach() for k, v in worker.policy.named_parameters()}
    probs = torch.tensor([0.5, 0.2, 0.15, 0.1, 0.05])
    # task 0: the same probabilities in every state (zero last weights, log-probability bias)
    fixed = {**theta, "body.2.weight": torch.zeros(5, 8), "body.2.bias": probs.log()}
    shard = TaskShard(3, tasks, [fixed, theta])
    (batch,) = worker.sample(None, [shard])
    actions = batch["actions"]
    assert actions.dtype == np.int64 and actions.shape == (2, episodes, 10)
    assert batch["mask"].all() and batch["obs"].shape == (2, episodes, 10, 11)
    np.testing.assert_array_equal(batch["obs"][:, :, 0, [0, 10]], 1.0)  # state 0, first step
    assert not batch["obs"][:, :, 1:, 10].any()
    frequencies = np.bincount(actions[0].ravel(), minlength=5) / actions[0].size
    np.testing.assert_allclose(frequencies, probs.numpy(), atol=0.035)  # ~3 s.e. of 2,000
    # the first step pays the mean of (state 0, action) of the task's own MDP, plus N(0, 1)
    means, _ = decode_tasks(tasks, 10, 5)
    for i in range(2):
        noise = batch["rewards"][i, :, 0] - means[i, 0, actions[i, :, 0]]
        assert abs(noise.mean()) < 3 / np.sqrt(episodes) and 0.8 < noise.std() < 1.2
    np.testing.assert_allclose(batch["returns"], batch["rewards"].sum(-1))
    (again,) = worker.sample(None, [shard])
    np.testing.assert_array_equal(actions, again["actions"])
    np.testing.assert_array_equal(batch["rewards"], again["rewards"])
    (other,) = worker.sample(None, [TaskShard(4, tasks, [fixed, theta])])
    assert not np.array_equal(actions, other["actions"])
    seeds = np.random.SeedSequence(3).generate_state(2)
    alone = worker.run_tasks([tasks[1]], [theta], [int(seeds[1])])
    np.testing.assert_array_equal(alone["actions"][0], actions[1])


def test_a_tasks_episodes_do_not_depend_on_the_tasks_sampled_beside_it():
    """Tasks run in lockstep with one batched policy call; each keeps its own seeded noise,
    and a task whose episodes all ended early stops drawing it."""
    worker = nav_worker(episodes=4, horizon=30)
    theta = {k: v.detach() for k, v in worker.policy.named_parameters()}
    sure = {**theta, "log_std": theta["log_std"] - 6.0}  # near-deterministic moves
    first_move = 0.1 * worker.policy(torch.zeros(2)).mean.clamp(-1, 1).detach().numpy()
    tasks = np.array([first_move, [0.4, -0.3], [-0.2, 0.1]])  # task 0 ends after one step
    params = [sure, theta, {k: v * 0.5 for k, v in theta.items()}]
    worker.lockstep = 2  # tasks 0 and 1 in lockstep, then task 2
    (together,) = worker.sample(None, [TaskShard(5, tasks, params)])
    seeds = np.random.SeedSequence(5).generate_state(3)
    for i in range(3):
        alone = worker.run_tasks([tasks[i]], [params[i]], [int(seeds[i])])
        for key, value in alone.items():
            np.testing.assert_array_equal(together[key][i], value[0])
    assert together["mask"][0].sum() == 4 and together["mask"][1:, :, 1].all()


def test_a_sync_vector_env_steps_only_the_episodes_still_running():
    """MuJoCo families run in a ``SyncVectorEnv``; a sub-environment whose episode ended is
    not simulated further, and the episodes equal those of the batched navigation env."""
    from gymnasium.vector import SyncVectorEnv

    from envs import UNIT
    from envs.navigation import Navigation2DEnv

    steps = []

    class Counting(Navigation2DEnv):
        def step(self, action):
            steps.append(1)
            return super().step(action)

    def copies(count):
        return SyncVectorEnv([lambda: RescaleAction(Counting(30), *UNIT)] * count)

    torch.manual_seed(0)
    sync = EpisodeWorker(copies, functools.partial(GaussianMLPPolicy, 2, 2, [8]), 4, 30)
    batched = nav_worker(episodes=4, horizon=30)
    batched.policy.load_state_dict(sync.policy.state_dict())
    theta = {k: v.detach() for k, v in sync.policy.named_parameters()}
    sure = {**theta, "log_std": theta["log_std"] - 6.0}
    first_move = 0.1 * sync.policy(torch.zeros(2)).mean.clamp(-1, 1).detach().numpy()
    shard = TaskShard(3, np.array([first_move, [0.3, -0.2]]), [sure, theta])
    (ours,) = sync.sample(None, [shard])
    (reference,) = batched.sample(None, [shard])
    assert ours["mask"][0].sum() == 4  # task 0's episodes end after one step
    assert len(steps) == ours["mask"].sum()  # no step of an ended episode
    for key in ("mask", "rewards", "returns"):
        np.testing.assert_allclose(ours[key], reference[key], rtol=1e-6)


def test_episode_worker_rewards_follow_each_task():
    worker = nav_worker(episodes=1, horizon=1)
    tasks = np.array([[0.5, 0.5], [0.0, 0.0]])
    (batch,) = worker.sample(None, [TaskShard(0, tasks)])
    moved = 0.1 * np.clip(batch["actions"][:, 0, 0], -1, 1)  # actions in [-1, 1]: moves of 0.1
    np.testing.assert_allclose(
        batch["rewards"][:, 0, 0], -np.linalg.norm(moved - tasks, axis=-1), rtol=1e-5
    )


def test_maml_nav2d_iteration_is_the_same_on_the_local_and_ray_backends(tmp_path):
    runs = {
        backend: metarl.train(
            "maml-nav2d",
            out=tmp_path / backend,
            overrides={**TINY, "train.iterations": 1},
            backend=backend,
            workers=2 if backend == "ray" else None,  # the local backend refuses workers
            progress=False,
        )
        for backend in ("local", "ray")
    }
    states = [load_checkpoint(r.path)["agent"]["policy"] for r in runs.values()]
    for name in states[0]:
        torch.testing.assert_close(states[0][name], states[1][name], rtol=0, atol=0)
    assert runs["local"].summary["final_mean_return"] == runs["ray"].summary["final_mean_return"]


def test_a_resumed_run_continues_the_uninterrupted_one(tmp_path):
    whole = metarl.train("maml-nav2d", out=tmp_path / "whole", overrides=TINY, progress=False)
    first = {**TINY, "train.iterations": 1}
    metarl.train("maml-nav2d", out=tmp_path / "part", overrides=first, progress=False)
    resumed = metarl.train(
        resume=tmp_path / "part", overrides={"train.iterations": 2}, progress=False
    )
    a = load_checkpoint(whole.path)["agent"]["policy"]
    b = load_checkpoint(resumed.path)["agent"]["policy"]
    for name in a:
        torch.testing.assert_close(a[name], b[name], rtol=0, atol=0)


def test_one_inner_step_improves_the_return_after_a_few_meta_updates(tmp_path):
    overrides = {**TINY, "env.meta_batch": 10, "env.episodes_per_task": 10, "train.iterations": 6}
    run = metarl.train("maml-nav2d", out=tmp_path / "run", overrides=overrides, progress=False)
    rows = read_metrics(run.path)
    gains = [r["return_step1"] - r["return_step0"] for r in rows]
    assert np.mean(gains[-3:]) > 0
    assert rows[-1]["return_step0"] > rows[0]["return_step0"]  # the meta-policy improves too


def test_eval_reports_the_adaptation_curve_beside_both_baselines(tmp_path):
    run = metarl.train("maml-nav2d", out=tmp_path / "run", overrides=TINY, progress=False)
    settings = ["eval.pretrain_iterations=1", "eval.ppo_tasks=2"]
    report = metarl.evaluate(run.path, episodes=4, overrides=settings)
    assert report["metric"] == "return" and report["episodes"] == 4
    assert report["curve"]["x"] == [0, 1, 2, 3]
    assert set(report["curve"]) == {"x", "agent", "pretrained_finetuned", "ppo_scratch"}
    assert report["value"] == pytest.approx(report["curve"]["agent"][1])
    assert report["baselines"]["pre_adaptation"] == pytest.approx(report["curve"]["agent"][0])
    assert report["env_steps_per_step"] == 4 * 20
    assert (run.path / "eval.png").is_file()
    # paired on the same tasks: a mean difference is the difference of the means
    paired, gains = report["paired"], report["gains"]
    pre = paired["pre_adaptation"]
    assert pre["diff"] == pytest.approx(report["value"] - report["baselines"]["pre_adaptation"])
    assert pre["tasks"] == 4 and paired["pretrained_finetuned"]["tasks"] == 4
    assert paired["ppo_scratch"]["tasks"] == 2  # PPO ran on the first two tasks only
    assert gains["x"] == [1, 2, 3] and gains["mean"][0] == pytest.approx(pre["diff"])
    assert gains["ci95"][0] == pytest.approx(pre["ci95"])
    curve = report["curve"]
    assert gains["mean"][2] == pytest.approx(curve["agent"][3] - curve["agent"][0], rel=1e-4)


def test_the_pretrained_baseline_trains_beside_the_meta_learner_to_equal_env_steps(tmp_path):
    """MAML samples twice per task and iteration (before and after its inner step), the
    multi-task baseline once, so it catches up by about two iterations per meta-update; it is
    the same as a ``pretrain`` run of the same seed, and evaluation reuses it."""
    run = metarl.train("maml-nav2d", out=tmp_path / "run", overrides=TINY, progress=False)
    state = load_checkpoint(run.path)["agent"]
    trained, baseline = state["env_steps"], state["baseline"]
    per_iteration = 4 * 4 * 20  # tasks x episodes x horizon, less any episode ending early
    assert trained <= 2 * 2 * per_iteration
    assert trained <= baseline["env_steps"] < trained + per_iteration
    rows = read_metrics(run.path)
    assert all(row["pretrain_seconds"] > 0 for row in rows)
    alone = metarl.train(
        "maml-nav2d",
        out=tmp_path / "alone",
        overrides={
            **TINY,
            "learner.algorithm": "pretrain",
            "train.iterations": baseline["iterations"],
        },
        progress=False,
    )
    own = load_checkpoint(alone.path)["agent"]
    assert "baseline" not in own and own["env_steps"] == baseline["env_steps"]
    for name, value in own["policy"].items():
        torch.testing.assert_close(baseline["policy"][name], value, rtol=0, atol=0)
    report = metarl.evaluate(run.path, episodes=2, overrides=["eval.ppo_tasks=0"])
    assert report["env_steps"] == {"agent": trained, "pretrained": baseline["env_steps"]}
    fixed = metarl.evaluate(
        run.path, episodes=2, overrides=["eval.ppo_tasks=0", "eval.pretrain_iterations=1"]
    )
    assert 0 < fixed["env_steps"]["pretrained"] <= per_iteration


def test_without_pretraining_in_train_eval_pretrains_to_the_same_baseline(tmp_path):
    overrides = {**TINY, "eval.pretrain_in_train": False}
    run = metarl.train("maml-nav2d", out=tmp_path / "run", overrides=overrides, progress=False)
    assert "baseline" not in load_checkpoint(run.path)["agent"]
    assert "pretrain_seconds" not in read_metrics(run.path)[-1]
    beside = metarl.train("maml-nav2d", out=tmp_path / "beside", overrides=TINY, progress=False)
    reports = [
        metarl.evaluate(r.path, episodes=2, overrides=["eval.ppo_tasks=0"]) for r in (run, beside)
    ]
    assert reports[0]["env_steps"] == reports[1]["env_steps"]
    assert reports[0]["curve"] == reports[1]["curve"]


def test_evaluation_on_ray_actors_gives_the_in_process_curves(tmp_path):
    """``eval.workers`` spreads the evaluation's sampling (the baseline's pre-training too)
    over Ray actors when the run sampled in-process; each shard keeps its seed."""
    run = metarl.train("maml-nav2d", out=tmp_path / "run", overrides=TINY, progress=False)
    common = ["eval.ppo_tasks=0", "eval.pretrain_iterations=1"]
    local, spread = (
        metarl.evaluate(run.path, episodes=3, overrides=[*common, f"eval.workers={n}"])
        for n in (1, 2)
    )
    assert spread["curve"] == local["curve"] and spread["env_steps"] == local["env_steps"]
    assert spread["paired"] == local["paired"]


def test_evaluation_steps_take_their_own_step_sizes(tmp_path):
    """maml-nav2d evaluates with α = 0.1 and then 0.05, as the paper did; an empty list
    repeats the training's α (0.1)."""
    run = metarl.train("maml-nav2d", out=tmp_path / "run", overrides=TINY, progress=False)
    common = ["eval.ppo_tasks=0", "eval.pretrain_iterations=1", "eval.steps=2"]
    curves = {
        rates: metarl.evaluate(run.path, episodes=2, overrides=[*common, f"eval.inner_lr={rates}"])
        for rates in ("[]", "[0.1]", "[0.1,0.05]")
    }
    default = metarl.evaluate(run.path, episodes=2, overrides=common)
    agent = {rates: report["curve"]["agent"] for rates, report in curves.items()}
    assert default["curve"]["agent"] == agent["[0.1,0.05]"]
    assert agent["[]"] == agent["[0.1]"]
    assert agent["[0.1]"][:2] == agent["[0.1,0.05]"][:2]
    assert agent["[0.1]"][2] != agent["[0.1,0.05]"][2]


@pytest.mark.parametrize(
    ("assignment", "message"),
    [
        ("learner.inner_lr=-0.1", "learner.inner_lr"),
        ("learner.inner_steps=0", "learner.inner_steps"),
        ("learner.algorithm=maml2", "learner.algorithm"),
        ("env.family=Hopper", "env.family"),
        ("trpo.max_kl=0", "trpo.max_kl"),
    ],
)
def test_bad_learner_settings_exit_2_naming_the_key(tmp_path, capsys, assignment, message):
    code = main(["train", "maml-nav2d", "--out", str(tmp_path / "r"), "--set", assignment])
    assert code == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "r").exists()


def test_ray_rollout_actors_run_at_the_drivers_priority():
    import os

    import ray

    from metarl.rollout import RaySampler

    worker = nav_worker()
    kwargs = {
        "make_envs": functools.partial(make_task_vector_env, "Navigation2D", 10),
        "make_policy": functools.partial(GaussianMLPPolicy, 2, 2, [8]),
        "episodes": 3,
        "horizon": 10,
    }
    sampler = RaySampler(kwargs, workers=1, worker=EpisodeWorker)
    try:
        niceness = ray.get(sampler.actors[0].__ray_call__.remote(lambda self: os.nice(0)))
        # the driver's niceness, under `nice` too (Ray adds its setting to the inherited
        # one): Ray's default, 15 more, starves them on a busy node
        assert niceness == os.nice(0)
        tasks = np.array([[0.1, 0.2]])
        (local,) = worker.sample(None, [TaskShard(3, tasks)])
        theta = {k: v.detach() for k, v in worker.policy.named_parameters()}
        (remote,) = sampler.sample(worker.policy.state_dict(), [TaskShard(3, tasks, [theta])])
        np.testing.assert_array_equal(local["obs"], remote["obs"])
    finally:
        sampler.close()


@pytest.mark.parametrize(
    ("algorithm", "steps"), [("maml", 2), ("fomaml", 1), ("reptile", 2), ("pretrain", 1)]
)
def test_every_algorithm_runs_its_inner_steps_and_moves_theta(tmp_path, algorithm, steps):
    overrides = {**TINY, "train.iterations": 1}
    overrides |= {"learner.algorithm": algorithm, "learner.inner_steps": steps}
    run = metarl.train("maml-nav2d", out=tmp_path / "run", overrides=overrides, progress=False)
    (row,) = read_metrics(run.path)
    sampled = 0 if algorithm == "pretrain" else steps
    assert {f"return_step{j}" for j in range(sampled + 1)} <= set(row)
    assert f"return_step{sampled + 1}" not in row
    full = (sampled + 1) * 4 * 4 * 20  # samplings x tasks x episodes x horizon
    assert 0.8 * full < row["env_steps"] <= full  # less the episodes that reached their goal
    torch.manual_seed(0)
    fresh = build_policy(run.config).state_dict()
    trained = load_checkpoint(run.path)["agent"]["policy"]
    assert any(not torch.equal(fresh[k], trained[k]) for k in fresh)


def test_eval_takes_only_evaluation_settings(tmp_path, capsys):
    run = metarl.train("maml-nav2d", out=tmp_path / "run", overrides=TINY, progress=False)
    code = main(["eval", str(run.path), "--set", "learner.inner_lr=0.5"])
    assert code == 2 and "eval takes only eval.KEY=VALUE" in capsys.readouterr().err
    assert main(["eval", str(run.path), "--set", "eval.ppo_taks=1"]) == 2
    assert "did you mean 'eval.ppo_tasks'" in capsys.readouterr().err
    assert not (run.path / "eval.json").exists()


def test_maml_mdp_trains_through_the_cli_and_is_evaluated_beside_both_baselines(tmp_path):
    """MAML-TRPO with a categorical policy on tabular MDPs: two meta-updates from the
    command line, then the adaptation curve beside the fine-tuned pre-trained policy and SB3
    PPO on the Discrete action space."""
    out = tmp_path / "run"
    settings = ["train.iterations=2", "env.meta_batch=2", "env.episodes_per_task=2"]
    argv = ["train", "maml-mdp", "--out", str(out)]
    assert main([*argv, *(arg for s in settings for arg in ("--set", s))]) == 0
    rows = read_metrics(out)
    assert [row["iteration"] for row in rows] == [0, 1]
    for row in rows:
        assert row["env_steps"] == 2 * 2 * 2 * 10  # samplings x tasks x episodes x 10 steps
        values = [row[k] for k in ("return_step0", "return_step1", "pretrained_return")]
        assert np.isfinite(values).all() and 0 <= row["kl"] <= 0.01
    policy = load_checkpoint(out)["agent"]["policy"]
    assert "log_std" not in policy and policy["body.4.bias"].shape == (5,)  # 5 actions
    report = metarl.evaluate(out, episodes=3, overrides=["eval.ppo_tasks=1", "eval.workers=1"])
    assert set(report["curve"]) == {"x", "agent", "pretrained_finetuned", "ppo_scratch"}
    assert all(np.isfinite(c).all() for c in report["curve"].values())
    assert report["env_steps_per_step"] == 2 * 10
    assert report["env_steps"]["agent"] == 2 * 80
    k = report["value_after_steps"]  # metarl compare pairs the value task by task
    assert np.mean(report["scores"]) == pytest.approx(report["value"], abs=1e-6)
    assert report["curve"]["agent"][k] == pytest.approx(report["value"])
    assert len(report["scores"]) == 3 and len(report["tasks_crc32"]) == 8
