"""A real two-node Ray cluster on loopback (one CPU each) running a job by ``ray job submit``."""

import json
import os
import secrets
import shutil
import socket
import subprocess
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
RAY = shutil.which("ray")
if RAY is None:
    pytest.skip("the ray command is not installed", allow_module_level=True)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def ray_node(args: list[str], env: dict[str, str], log: Path) -> subprocess.Popen:
    """``ray start ... --block``: stopping this process stops the node it started. Every port
    is a free one, not Ray's default, which another Ray on this machine (an earlier test's
    local instance, say) may hold; the node's output goes to ``log``, shown on failure."""
    ports = [
        f"--dashboard-agent-listen-port={free_port()}",
        f"--dashboard-agent-grpc-port={free_port()}",
        f"--metrics-export-port={free_port()}",
        f"--node-manager-port={free_port()}",
        f"--object-manager-port={free_port()}",
        f"--runtime-env-agent-port={free_port()}",
    ]
    with log.open("ab") as out:
        return subprocess.Popen(
            [RAY, "start", "--block", "--num-cpus=1", "--disable-usage-stats", *ports, *args],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )


def wait_for_nodes(
    address: str, count: int, env: dict[str, str], logs: list[Path], timeout: float = 180
) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        status = subprocess.run(
            [RAY, "status", f"--address={address}"], env=env, capture_output=True, text=True
        )
        if status.returncode == 0 and status.stdout.count(" node_") >= count:
            return
        time.sleep(2)
    tails = "".join(f"\n--- {p.name}:\n{p.read_text()[-3000:]}" for p in logs if p.is_file())
    raise AssertionError(f"the cluster at {address} did not reach {count} nodes{tails}")


def test_a_job_submitted_to_a_two_node_cluster_writes_its_run_folder(tmp_path):
    # the cluster's own token: a clean machine has no ~/.ray/auth_token, and `ray start`
    # with token authentication makes none
    env = {
        **os.environ,
        "RAY_AUTH_MODE": "token",
        "RAY_AUTH_TOKEN": secrets.token_hex(32),
        "RAY_worker_niceness": "0",
    }
    gcs, dashboard = free_port(), free_port()
    address = f"127.0.0.1:{gcs}"
    logs = [tmp_path / "head.log", tmp_path / "worker.log"]
    nodes = [
        ray_node(
            [
                "--head",
                f"--port={gcs}",
                "--include-dashboard=true",
                "--dashboard-host=127.0.0.1",
                f"--dashboard-port={dashboard}",
                f"--ray-client-server-port={free_port()}",
            ],
            env,
            logs[0],
        )
    ]
    try:
        wait_for_nodes(address, 1, env, logs)
        nodes.append(ray_node([f"--address={address}"], env, logs[1]))
        wait_for_nodes(address, 2, env, logs)
        out = tmp_path / "run"
        command = (
            [RAY, "job", "submit", f"--address=http://127.0.0.1:{dashboard}"]
            + ["--working-dir", str(ROOT), "--", "metarl", "train", "snail-bandit"]
            + ["--backend", "ray", "--ray-address", "auto", "--workers", "2"]
            + ["--set", "train.iterations=2", "--set", "trials_per_iteration=64"]
            + ["--out", str(out)]
        )
        for _ in range(20):  # the job agent starts a little after the nodes: Ray says retry
            job = subprocess.run(command, env=env, capture_output=True, text=True, timeout=600)
            if "No available agent to submit job" not in job.stderr:
                break
            time.sleep(3)
        assert job.returncode == 0, job.stdout[-2000:] + job.stderr[-2000:]
        assert "succeeded" in job.stdout + job.stderr
        summary = json.loads((out / "summary.json").read_text())
        assert summary["status"] == "finished" and summary["iterations"] == 2
        assert (out / "checkpoint.pt").is_file() and (out / "metrics.csv").is_file()
    finally:
        for node in reversed(nodes):
            node.terminate()
        for node in nodes:
            node.wait(timeout=120)
        current = Path("/tmp/ray/ray_current_cluster")  # else a later ray.init() joins it
        if current.is_file() and current.read_text().strip().endswith(f":{gcs}"):
            current.unlink()
