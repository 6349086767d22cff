"""The README's benchmark targets as tests; long, so only run with ``pytest -m benchmark``."""

import importlib.util
import time
from pathlib import Path
from types import ModuleType

import pytest

import metarl

pytestmark = pytest.mark.benchmark


def benchmark_script(name: str) -> ModuleType:
    """A script of ``benchmarks/`` (not a package) as a module."""
    path = Path(__file__).parents[1] / "benchmarks" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(f"benchmarks_{name}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_snail_bandit_default_config_reaches_gittins_within_15_minutes(tmp_path):
    start = time.monotonic()
    run = metarl.train("snail-bandit", out=tmp_path / "run", progress=False)
    assert time.monotonic() - start <= 15 * 60
    report = run.evaluate(episodes=10_000)
    assert report["value"] >= 0.97 * report["baselines"]["gittins"]


def test_protonet_reaches_97_percent_on_5_way_1_shot_in_30_minutes(tmp_path, omniglot_data):
    run = metarl.train(
        "protonet-omniglot", out=tmp_path / "run", time_limit=30, data_dir=omniglot_data
    )
    assert run.evaluate()["value"] >= 0.97


def test_maml_reaches_97_percent_on_5_way_1_shot_in_60_minutes(tmp_path, omniglot_data):
    run = metarl.train("maml-omniglot", out=tmp_path / "run", time_limit=60, data_dir=omniglot_data)
    assert run.evaluate()["value"] >= 0.97


def test_maml_nav2d_one_step_halves_the_distance_to_zero_within_20_cpu_minutes(tmp_path):
    start = time.process_time()
    run = metarl.train("maml-nav2d", out=tmp_path / "run", time_limit=20, progress=False)
    assert time.process_time() - start <= 20 * 60
    report = run.evaluate()
    assert abs(report["value"]) <= abs(report["baselines"]["pre_adaptation"]) / 2


def test_maml_halfcheetah_vel_beats_pre_adaptation_and_the_pretrained_policy(tmp_path):
    run = metarl.train(
        "maml-halfcheetah-vel",
        out=tmp_path / "run",
        backend="ray",
        workers=2,
        time_limit=60,
        overrides={"env.meta_batch": 20, "eval.pretrain_iterations": 30},
        progress=False,
    )
    report = run.evaluate()
    for baseline in ("pre_adaptation", "pretrained_finetuned"):
        margin = report["ci95"] + report["baselines_ci95"][baseline]
        assert report["value"] > report["baselines"][baseline] + margin


def test_mann_bandit_reaches_gittins(tmp_path):
    run = metarl.train("mann-bandit", out=tmp_path / "run", progress=False)
    report = run.evaluate(episodes=10_000)
    assert report["value"] >= 0.97 * report["baselines"]["gittins"]


def test_mann_omniglot_reaches_80_percent_at_the_2nd_instance_ahead_of_an_lstm(
    tmp_path, omniglot_data
):
    reports = {
        backbone: metarl.train(
            "mann-omniglot",
            out=tmp_path / backbone,
            time_limit=60,
            data_dir=omniglot_data,
            overrides={"model.backbone": backbone, "model.hidden_size": size},
        ).evaluate()
        for backbone, size in (("mann", 200), ("lstm", 256))
    }
    assert reports["mann"]["value"] >= 0.80
    assert reports["mann"]["value"] - reports["mann"]["ci95"] > (
        reports["lstm"]["value"] + reports["lstm"]["ci95"]
    )


def test_snail_maze_reuses_the_first_episode_in_the_second(tmp_path):
    run = metarl.train("snail-maze", out=tmp_path / "run", time_limit=50, progress=False)
    report = run.evaluate()
    first, second = report["curve"]["agent"]
    assert second <= 0.7 * first
    assert second <= 1.5 * report["baselines"]["oracle"]


def test_maze_env_steps_200k_per_second_at_batch_1000():
    import numpy as np

    from envs.mazes import MazeVectorEnv

    env = MazeVectorEnv(1000, size=5)
    env.reset(seed=0)
    rng = np.random.default_rng(0)
    actions = rng.integers(4, size=(500, 1000))
    start = time.perf_counter()
    for step in actions:
        env.step(step)
    assert 500 * 1000 / (time.perf_counter() - start) >= 200_000


def test_ray_at_one_worker_samples_within_10_percent_of_the_local_backend():
    sampling = benchmark_script("episode_sampling")
    local, ray = (
        sampling.steps_per_second("maml-halfcheetah-vel", backend, 1, tasks=8, repeats=4)
        for backend in ("local", "ray")
    )
    assert ray >= 0.9 * local, f"Ray {ray:,.0f} vs local {local:,.0f} env steps/s"
