import json
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

import metarl
from metarl import runs

SMALL = {
    "trials_per_iteration": 256,
    "env.num_arms": 2,
    "env.horizon": 10,
    "sampler.shards": 2,
    "ppo.lr": 0.003,
}


def test_ppo_improves_the_return_on_a_small_bandit(tmp_path):
    run = metarl.train(
        "snail-bandit",
        out=tmp_path / "run",
        progress=False,
        overrides={**SMALL, "train.iterations": 40},
    )
    returns = [r["mean_return"] for r in runs.read_metrics(run.path)]
    # random play earns 5.0 per trial; the best arm of two uniform arms is worth 6.67
    assert np.mean(returns[:3]) < 5.3
    assert np.mean(returns[-5:]) > np.mean(returns[:3]) + 0.5


def curve(path) -> list[dict[str, float]]:
    """A run's metrics without its timings, which differ from run to run."""
    return [
        {k: v for k, v in r.items() if k != "wall_time" and not k.endswith("_per_s")}
        for r in runs.read_metrics(path)
    ]


def test_resume_continues_the_same_curve(tmp_path):
    overrides = {**SMALL, "train.iterations": 6}
    whole = metarl.train("lstm-bandit", out=tmp_path / "whole", progress=False, overrides=overrides)
    half = metarl.train(
        "lstm-bandit",
        out=tmp_path / "half",
        progress=False,
        overrides={**overrides, "train.iterations": 3},
    )
    assert runs.load_checkpoint(half.path)["iteration"] == 3
    resumed = metarl.train(resume=half.path, progress=False, overrides={"train.iterations": 6})
    assert resumed.summary["iterations"] == 6
    assert curve(whole.path) == curve(resumed.path)


def test_run_folder_and_eval_report(tmp_path):
    run = metarl.train(
        "snail-bandit",
        out=tmp_path / "run",
        progress=False,
        overrides={**SMALL, "train.iterations": 2},
    )
    for name in ("config.yaml", "metrics.csv", "checkpoint.pt", "summary.json"):
        assert (run.path / name).is_file(), name
    assert (run.path / "tb").is_dir()
    report = run.evaluate(episodes=200)
    on_disk = json.loads((run.path / "eval.json").read_text())
    assert on_disk == json.loads(json.dumps(report))
    assert (run.path / "eval.png").stat().st_size > 10_000
    assert report["metric"] == "cumulative_reward" and report["episodes"] == 200
    assert set(report["baselines"]) >= {
        "random",
        "greedy",
        "epsilon_greedy",
        "ucb1",
        "thompson",
        "gittins",
    }
    assert len(report["curve"]["x"]) == 10 == len(report["curve"]["agent"])
    assert report["baselines"]["gittins"] > report["baselines"]["random"]
    assert 0 < report["ci95"] < 1


def test_time_limit_stops_cleanly_with_a_checkpoint(tmp_path):
    run = metarl.train(
        "snail-bandit",
        out=tmp_path / "run",
        progress=False,
        time_limit=0.001,
        overrides={**SMALL, "train.iterations": 1000},
    )
    assert run.summary["status"] == "time_limit"
    assert runs.load_checkpoint(run.path)["iteration"] == run.summary["iterations"] < 1000


def test_corrupt_checkpoint_is_refused(tmp_path):
    run = metarl.train(
        "snail-bandit",
        out=tmp_path / "run",
        progress=False,
        overrides={**SMALL, "train.iterations": 1},
    )
    data = (run.path / "checkpoint.pt").read_bytes()
    (run.path / "checkpoint.pt").write_bytes(data[: len(data) // 2])
    with pytest.raises(metarl.errors.UsageError, match="corrupt or truncated"):
        metarl.train(resume=run.path, progress=False)


def test_sigterm_then_resume_equals_the_uninterrupted_run(tmp_path):
    """SIGTERM mid-run: the iteration in progress completes, a checkpoint is written, exit
    130; --resume then gives metrics identical to a run never stopped."""
    args = ["--set", "trials_per_iteration=64", "--set", "train.iterations=40"]
    command = [sys.executable, "-m", "metarl.cli", "train", "lstm-bandit", *args]
    process = subprocess.Popen([*command, "--out", str(tmp_path / "stopped")])
    metrics = tmp_path / "stopped" / "metrics.csv"
    deadline = time.monotonic() + 120
    while not (metrics.is_file() and len(metrics.read_text().splitlines()) > 3):
        assert time.monotonic() < deadline and process.poll() is None
        time.sleep(0.05)
    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=120) == 130
    done = runs.load_checkpoint(tmp_path / "stopped")["iteration"]
    assert 3 <= done < 40
    resumed = metarl.train(resume=tmp_path / "stopped", progress=False)
    whole = metarl.train(
        "lstm-bandit",
        out=tmp_path / "whole",
        progress=False,
        overrides=["trials_per_iteration=64", "train.iterations=40"],
    )
    assert resumed.summary["iterations"] == 40
    assert curve(whole.path) == curve(resumed.path)


def test_a_corrupt_checkpoint_falls_back_to_the_previous_one(tmp_path):
    first = metarl.train(
        "snail-bandit",
        out=tmp_path / "run",
        progress=False,
        overrides={**SMALL, "train.iterations": 1},
    )
    run = metarl.train(resume=first.path, progress=False, overrides={"train.iterations": 2})
    assert runs.load_checkpoint(run.path)["iteration"] == 2
    data = (run.path / "checkpoint.pt").read_bytes()
    (run.path / "checkpoint.pt").write_bytes(data[: len(data) // 2])
    with pytest.warns(UserWarning, match=r"corrupt or truncated.*checkpoint-previous.pt"):
        assert runs.load_checkpoint(run.path)["iteration"] == 1
    (run.path / "checkpoint-previous.pt").write_bytes(b"junk")
    with pytest.raises(metarl.errors.UsageError, match="checkpoint-previous.pt is corrupt"):
        runs.load_checkpoint(run.path)
