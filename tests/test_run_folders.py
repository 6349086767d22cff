"""A run folder cannot be broken from the command line: every refused command exits 2 with
one line on stderr and changes no file of the run; one writer at a time; Ctrl-C says what
was saved."""

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from metarl import runs
from metarl.cli import main
from metarl.errors import UsageError
from metarl.experiment import check_resume

SMALL = [
    "--set",
    "trials_per_iteration=64",
    "--set",
    "env.num_arms=2",
    "--set",
    "env.horizon=5",
    "--set",
    "sampler.shards=1",
]


def snapshot(path: Path) -> dict[str, tuple[int, bytes]]:
    """Every file under ``path`` with its modification time and contents."""
    return {
        str(f.relative_to(path)): (f.stat().st_mtime_ns, f.read_bytes())
        for f in sorted(path.rglob("*"))
        if f.is_file()
    }


def refused(capsys, *argv: str, fragments: tuple[str, ...] = ()) -> str:
    code = main(list(argv))
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert code == 2, err
    assert len(lines) == 1 and lines[0].startswith("metarl: error:"), err
    for fragment in fragments:
        assert fragment in lines[0], lines[0]
    return lines[0]


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> Path:
    """A two-iteration snail-bandit run, evaluated, shared read-only by the tests below."""
    path = tmp_path_factory.mktemp("runs") / "run"
    common = ["--out", str(path), "--no-progress", *SMALL, "--set", "train.iterations=2"]
    assert main(["train", "snail-bandit", *common]) == 0
    assert main(["eval", str(path), "--episodes", "20"]) == 0
    return path


@pytest.mark.parametrize(
    ("argv", "fragments"),
    [
        (["--set", "model.projection_size=64"], ("model.projection_size", "--resume cannot")),
        (["--set", "ppo.lr=0.5"], ("ppo.lr (",)),
        (["--set", "sampler.shards=3"], ("sampler.shards",)),
        (["--seed", "3"], ("--seed cannot change",)),
        (["--out", "elsewhere"], ("--out cannot be given with --resume",)),
        ([], ("finished its train.iterations=2", "--set train.iterations=4")),
        (["--set", "train.iterations=1"], ("done 2 iterations", "train.iterations=4")),
        (["--workers", "2"], ("add --backend ray",)),
        (["--backend", "ray", "--workers", "500"], ("500 Ray workers", "--ray-address")),
    ],
)
def test_a_refused_resume_changes_no_file(capsys, trained, argv, fragments):
    before = snapshot(trained)
    refused(capsys, "train", "--resume", str(trained), *argv, fragments=fragments)
    assert snapshot(trained) == before


def test_a_linear_schedule_keeps_its_length_on_resume():
    """The rate falls to 0 over train.iterations; an extended run would train at 0."""
    linear = {"train": {"iterations": 2}, "optim": {"schedule": "linear"}}
    longer = {"train": {"iterations": 4}, "optim": {"schedule": "linear"}}
    with pytest.raises(UsageError, match="its rate reaches 0 at iteration 2 and would stay 0"):
        check_resume(linear, longer)
    check_resume(linear, linear)  # finishing the planned iterations
    check_resume(longer, linear)  # stopping the anneal early
    step = {"optim": {"schedule": "step"}}
    check_resume(linear | step, longer | step)


def test_a_run_is_extended_with_more_iterations_and_an_eval_override_is_allowed(
    capsys, trained, tmp_path
):
    import shutil

    copy = tmp_path / "copy"
    shutil.copytree(trained, copy)
    with pytest.warns(UserWarning, match="eval.json and eval.png describe an earlier"):
        code = main(
            ["train", "--resume", str(copy), "--no-progress", "--set", "train.iterations=3"]
            + ["--set", "eval.episodes=7"]
        )
    assert code == 0
    assert runs.load_checkpoint(copy)["iteration"] == 3
    assert not (copy / runs.LOCK).exists()


def test_eval_refuses_bad_settings_without_touching_the_run(capsys, trained):
    before = snapshot(trained)
    refused(capsys, "eval", str(trained), "--set", "ppo.lr=1", fragments=("eval.KEY=VALUE",))
    refused(capsys, "eval", str(trained), "--episodes", "1", fragments=("at least 2",))
    assert snapshot(trained) == before


def test_a_corrupt_config_yaml_is_one_line_for_eval_and_resume(capsys, trained, tmp_path):
    import shutil

    copy = tmp_path / "copy"
    shutil.copytree(trained, copy)
    (copy / "config.yaml").write_text("name: snail-bandit\nagent: [rl2-bandit\nseed: 0\n")
    before = snapshot(copy)
    refused(capsys, "eval", str(copy), fragments=("config.yaml is unreadable", "line"))
    refused(capsys, "train", "--resume", str(copy), fragments=("config.yaml is unreadable",))
    (copy / "config.yaml").write_text("- just\n- a list\n")
    refused(capsys, "eval", str(copy), fragments=("not a metarl run config",))
    assert snapshot(copy) == {**before, "config.yaml": snapshot(copy)["config.yaml"]}


@pytest.mark.parametrize(
    ("argv", "fragments"),
    [
        (["--seed", "-1"], ("'seed'", "got -1")),
        (["--seed", "4294967296"], ("'seed'",)),
        (["--workers", "2"], ("add --backend ray",)),
        (["--backend", "ray", "--workers", "500"], ("500 Ray workers",)),
    ],
)
def test_a_refused_new_run_leaves_no_folder(capsys, tmp_path, argv, fragments):
    refused(
        capsys, "train", "snail-bandit", "--out", str(tmp_path / "r"), *argv, fragments=fragments
    )
    assert not (tmp_path / "r").exists()


def test_a_broken_user_yaml_is_one_line(capsys, tmp_path):
    config = tmp_path / "mine.yaml"
    config.write_text("name: mine\nagent: rl2-bandit\nppo: {lr: [0.1\n")
    refused(capsys, "train", str(config), "--out", str(tmp_path / "r"), fragments=("invalid YAML",))
    assert not (tmp_path / "r").exists()


def test_a_second_writer_is_refused_and_a_dead_ones_lock_is_taken_over(capsys, trained, tmp_path):
    import shutil

    copy = tmp_path / "copy"
    shutil.copytree(trained, copy)
    host = socket.gethostname()
    (copy / runs.LOCK).write_text(f"{os.getpid()} {host}\n")  # a live holder: this process
    before = snapshot(copy)
    args = ["--set", "train.iterations=3", "--no-progress"]
    refused(capsys, "train", "--resume", str(copy), *args, fragments=("in use by process",))
    refused(capsys, "eval", str(copy), fragments=("in use by process",))
    assert snapshot(copy) == before
    dead = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        text=True,
        capture_output=True,
        check=True,
    )
    (copy / runs.LOCK).write_text(f"{dead.stdout.strip()} {host}\n")
    with pytest.warns(UserWarning, match="taking over"):
        assert main(["train", "--resume", str(copy), *args]) == 0
    assert not (copy / runs.LOCK).exists()
    (copy / runs.LOCK).write_text(f"{os.getpid()} another-host.example\n")
    refused(capsys, "eval", str(copy), fragments=("on another-host.example", "delete"))


def test_two_resumes_at_once_never_interleave_metrics(tmp_path):
    """The first writer holds the folder; a second --resume started meanwhile is refused."""
    path = tmp_path / "run"
    command = [sys.executable, "-m", "metarl.cli", "train"]
    first = [*command, "lstm-bandit", "--out", str(path), *SMALL, "--set", "train.iterations=2"]
    subprocess.run(first, check=True, capture_output=True, timeout=300)
    args = ["--resume", str(path), "--set", "train.iterations=400"]
    process = subprocess.Popen([*command, *args], stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while len((path / "metrics.csv").read_text().splitlines()) < 5:
        assert time.monotonic() < deadline and process.poll() is None
        time.sleep(0.05)
    second = subprocess.run([*command, *args], capture_output=True, text=True, timeout=120)
    assert second.returncode == 2 and "in use by process" in second.stderr
    process.send_signal(signal.SIGINT)
    assert process.wait(timeout=120) == 130
    message = process.stderr.read().strip().splitlines()[-1]
    done = runs.load_checkpoint(path)["iteration"]
    assert message == (
        f"metarl: interrupted: stopped after {done} iterations; {path / runs.CHECKPOINT} holds "
        f"the first {done} iterations; continue with: metarl train --resume {path}"
    )
    iterations = [row["iteration"] for row in runs.read_metrics(path)]
    assert iterations == list(range(done))


def test_ctrl_c_twice_before_any_checkpoint_says_nothing_was_saved(tmp_path):
    path = tmp_path / "run"
    command = [sys.executable, "-m", "metarl.cli", "train", "lstm-bandit", "--out", str(path)]
    process = subprocess.Popen(
        [*command, *SMALL, "--set", "trials_per_iteration=1024", "--set", "env.horizon=20"]
        + ["--set", "train.iterations=1000"],
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 120
    while not ((path / "metrics.csv").is_file() and (path / "metrics.csv").read_text()):
        assert time.monotonic() < deadline and process.poll() is None
        time.sleep(0.05)
    # iteration 0 is logged; let the loop pass its stop check into iteration 1 (~4 s long),
    # so that the first signal stops after that iteration, not after iteration 0
    time.sleep(0.5)
    lines: list[str] = []  # stderr, read on a thread so that no read blocks the test
    reader = threading.Thread(target=lambda: lines.extend(process.stderr), daemon=True)
    reader.start()
    process.send_signal(signal.SIGINT)
    acknowledged = "metarl: SIGINT: stopping after the iteration in progress; a second SIGINT"
    while not any(line.startswith(acknowledged) for line in lines):  # then the second signal
        assert time.monotonic() < deadline and process.poll() is None, lines
        time.sleep(0.05)
    process.send_signal(signal.SIGINT)
    assert process.wait(timeout=120) == 130
    reader.join(timeout=10)
    message = "".join(lines).strip().splitlines()[-1]
    assert message.startswith("metarl: interrupted: interrupted twice, iteration")
    assert message.endswith(f"nothing was saved ({path} holds no checkpoint yet)")
    assert not (path / runs.CHECKPOINT).exists() and not (path / runs.LOCK).exists()


def test_eval_prints_each_baseline_beside_the_paired_difference(capsys, trained):
    assert main(["eval", str(trained), "--episodes", "20"]) == 0
    out = capsys.readouterr().out
    report = runs.read_json(trained / "eval.json")
    for name, p in report["paired"].items():
        line = next(line for line in out.splitlines() if line.strip().startswith(name + " "))
        assert f"agent − {name}: {p['diff']:+.4f} ± {p['ci95']:.4f} ({p['verdict']})" in line
    assert set(report["paired"]) == set(report["baselines"])


def test_a_divergence_mid_run_keeps_the_last_checkpoint_and_says_which(
    capsys, tmp_path, monkeypatch
):
    from agents.rl2_agent import RL2Agent

    real = RL2Agent.train_iteration

    def diverging(self, iteration):
        metrics = real(self, iteration)
        return {**metrics, "loss": float("nan")} if iteration == 3 else metrics

    monkeypatch.setattr(RL2Agent, "train_iteration", diverging)
    path = tmp_path / "run"
    args = ["train", "lstm-bandit", "--out", str(path), "--no-progress", *SMALL]
    args += ["--set", "train.checkpoint_minutes=1e-9"]  # a checkpoint after every iteration
    assert main(args) == 1
    err = capsys.readouterr().err.strip()
    assert err == (
        "metarl: run failed: iteration 3 diverged (the training loss is nan); "
        f"{path / runs.CHECKPOINT} holds the first 3 iterations; continue with: "
        f"metarl train --resume {path}"
    )
    assert runs.load_checkpoint(path)["iteration"] == 3
    assert not (path / runs.LOCK).exists()


def test_run_files_are_strict_json_with_null_for_non_finite_numbers(tmp_path):
    import json

    runs.write_json(tmp_path / "x.json", {"ci95": float("nan"), "curve": [1.0, float("inf")]})
    text = (tmp_path / "x.json").read_text()
    assert json.loads(text, parse_constant=lambda name: pytest.fail(name)) == {
        "ci95": None,
        "curve": [1.0, None],
    }


def test_a_lock_is_released_only_by_its_owner_and_a_damaged_one_is_taken_over(tmp_path):
    lock = runs.RunLock(tmp_path)
    lock.acquire()
    assert (tmp_path / runs.LOCK).read_text() == f"{os.getpid()} {socket.gethostname()}\n"
    (tmp_path / runs.LOCK).write_text(f"1 {socket.gethostname()}-other\n")  # taken over meanwhile
    lock.release()
    assert (tmp_path / runs.LOCK).exists()  # not ours any more: left alone
    (tmp_path / runs.LOCK).write_text("garbage")
    with pytest.warns(UserWarning, match="taking over"), runs.RunLock(tmp_path):
        assert (tmp_path / runs.LOCK).read_text().startswith(f"{os.getpid()} ")
    assert list(tmp_path.iterdir()) == []  # no lock, no temporary file left


def test_a_resume_from_a_checkpoint_older_than_a_new_config_key_is_allowed(trained, tmp_path):
    """A key added to a config class since the checkpoint was written takes its default;
    only a value the checkpoint records can be changed (and refused)."""
    import shutil

    import torch

    copy = tmp_path / "copy"
    shutil.copytree(trained, copy)
    state = runs.load_checkpoint(copy)  # as an older metarl wrote it: no ppo.normalize_advantages
    del state["config"]["ppo"]["normalize_advantages"]
    torch.save(state, copy / runs.CHECKPOINT)
    config = (copy / "config.yaml").read_text()
    (copy / "config.yaml").write_text(config.replace("  normalize_advantages: true\n", ""))
    assert (
        main(["train", "--resume", str(copy), "--set", "train.iterations=3", "--no-progress"]) == 0
    )
