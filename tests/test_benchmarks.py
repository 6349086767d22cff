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
