"""The README's benchmark targets as tests; long, so only run with ``pytest -m benchmark``."""

import time

import pytest

import metarl

pytestmark = pytest.mark.benchmark


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
