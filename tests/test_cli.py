import os
import subprocess
import sys

import pytest

from metarl.cli import main


def run_cli(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def assert_one_line_error(code, err, *fragments):
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("metarl: error:"), err
    assert "Traceback" not in err
    for fragment in fragments:
        assert fragment in lines[0]


def test_list_shows_the_bandit_experiments(capsys):
    code, out, _ = run_cli(capsys, "list")
    assert code == 0
    assert "snail-bandit" in out and "lstm-bandit" in out


@pytest.mark.parametrize(
    ("argv", "fragments"),
    [
        (
            ["train", "snail-bandt"],
            ["unknown experiment 'snail-bandt'", "did you mean 'snail-bandit'"],
        ),
        (["train", "snail-bandit", "--set", "ppo.lrr=0.1"], ["ppo.lrr", "did you mean 'ppo.lr'"]),
        (["train", "snail-bandit", "--set", "env.num_arms=0"], ["env.num_arms", "got 0"]),
        (["train", "snail-bandit", "--set", "env.horizon=-5"], ["env.horizon", "got -5"]),
        (["train", "snail-bandit", "--set", "env.horizon=ten"], ["env.horizon", "expected int"]),
        (["train", "snail-bandit", "--set", "model.blocks=[tc]"], ["model.blocks[0]"]),
        (["train", "snail-bandit", "--set", "novalue"], ["KEY=VALUE"]),
        (["train", "snail-bandit", "--set", "envv.horizon=3"], ["envv", "did you mean 'env'"]),
        (["train", "--resume", "/nonexistent/run"], ["not a run folder"]),
        (["eval", "/nonexistent/run"], ["not a run folder"]),
        (
            ["train", "snail-bandit", "--backend", "ray", "--ray-address", "127.0.0.1:1"],
            ["cannot reach a Ray cluster at 127.0.0.1:1"],
        ),
    ],
)
def test_bad_input_gets_one_line_and_exit_2(capsys, tmp_path, argv, fragments):
    code, _, err = run_cli(
        capsys,
        *argv,
        *(["--out", str(tmp_path / "r")] if argv[0] == "train" and "--resume" not in argv else []),
    )
    assert_one_line_error(code, err, *fragments)
    assert not (tmp_path / "r").exists()


def test_existing_run_folder_is_not_touched(capsys, tmp_path):
    (tmp_path / "keep.txt").write_text("precious")
    code, _, err = run_cli(capsys, "train", "snail-bandit", "--out", str(tmp_path))
    assert_one_line_error(code, err, "already exists")
    assert [p.name for p in tmp_path.iterdir()] == ["keep.txt"]


def test_missing_checkpoint_on_resume(capsys, tmp_path):
    (tmp_path / "config.yaml").write_text("name: snail-bandit\nagent: rl2-bandit\n")
    code, _, err = run_cli(capsys, "train", "--resume", str(tmp_path))
    assert_one_line_error(code, err, "no checkpoint")


def test_console_script_exit_code_and_no_traceback():
    proc = subprocess.run(
        [sys.executable, "-m", "metarl.cli", "train", "nope"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr and "unknown experiment 'nope'" in proc.stderr


def test_closed_pipe_ends_quietly_with_141():
    """``metarl list | head -1``: the reader leaving early is no error and prints no traceback."""
    read_end, write_end = os.pipe()
    os.close(read_end)  # every write the child makes fails, as after ``head`` has exited
    try:
        proc = subprocess.run(
            [sys.executable, "-m", "metarl.cli", "list"],
            stdout=write_end,
            stderr=subprocess.PIPE,
            text=True,
            timeout=120,
        )
    finally:
        os.close(write_end)
    assert proc.returncode == 141
    assert proc.stderr == ""
