"""The run folder: resolved config, metrics, atomic checkpoints, summary.

Layout (the contract in DESIGN.md): ``config.yaml``, ``metrics.csv`` (one row per iteration),
``checkpoint.pt`` (and ``checkpoint-previous.pt``, the one before it), ``summary.json``,
``tb/`` (TensorBoard), and after evaluation ``eval.json`` and ``eval.png``.
"""

from __future__ import annotations

import csv
import json
import math
import os
import socket
import time
import warnings
from pathlib import Path
from typing import Any

import torch
import yaml

from metarl.config import yaml_problem
from metarl.errors import UsageError
from metarl.files import write_atomic

CHECKPOINT = "checkpoint.pt"
LOCK = "run.lock"
PREVIOUS_CHECKPOINT = "checkpoint-previous.pt"
CONFIG = "config.yaml"
METRICS = "metrics.csv"
SUMMARY = "summary.json"


def default_run_dir(name: str) -> Path:
    """``runs/NAME-YYYYmmdd-HHMMSS`` under the working directory."""
    return Path("runs") / f"{name}-{time.strftime('%Y%m%d-%H%M%S')}"


def check_new_run_dir(path: Path) -> None:
    """Refuse to train into a folder that already holds a run."""
    if path.exists() and (not path.is_dir() or any(path.iterdir())):
        raise UsageError(
            f"run folder {path} already exists and is not empty "
            "(use --resume to continue it, or another --out)"
        )


def save_checkpoint(path: Path, state: dict[str, Any]) -> None:
    """Atomically write ``state`` to ``path/checkpoint.pt``; the checkpoint it replaces
    becomes ``checkpoint-previous.pt``, the fallback should the new one ever be unreadable."""
    write_atomic(path / CHECKPOINT, lambda f: torch.save(state, f), path / PREVIOUS_CHECKPOINT)


def load_checkpoint(path: Path) -> dict[str, Any]:
    """Read a run's checkpoint, with a one-line error when it is missing or unreadable.

    When ``checkpoint.pt`` is damaged (or was lost between the renames of a save) and
    ``checkpoint-previous.pt`` is sound, that one is used, with a warning naming both.
    """
    file, previous = path / CHECKPOINT, path / PREVIOUS_CHECKPOINT
    if not file.is_file() and not previous.is_file():
        raise UsageError(f"no checkpoint in {path} (expected {file})")
    try:
        return _read_checkpoint(file)
    except UsageError as err:
        if not previous.is_file():
            raise
        state = _read_checkpoint(previous)
        warnings.warn(
            f"{err}; using {previous} (iteration {state['iteration']}) instead", stacklevel=2
        )
        return state


def _read_checkpoint(file: Path) -> dict[str, Any]:
    if not file.is_file():
        raise UsageError(f"checkpoint {file} is missing")
    try:
        state = torch.load(file, map_location="cpu", weights_only=False)
    except Exception as err:  # torch raises many types for a damaged file
        raise UsageError(
            f"checkpoint {file} is corrupt or truncated "
            f"({type(err).__name__}: {str(err).splitlines()[0][:120]})"
        ) from None
    if not isinstance(state, dict) or "iteration" not in state or "agent" not in state:
        raise UsageError(f"checkpoint {file} is not a metarl checkpoint")
    return state


def write_yaml(path: Path, data: dict[str, Any]) -> None:
    write_atomic(path, lambda f: f.write(yaml.safe_dump(data, sort_keys=False).encode()))


def write_json(path: Path, data: dict[str, Any]) -> None:
    """Write ``data`` as strict JSON: a non-finite number (the nan half-width of a one-value
    interval, say) becomes ``null``, which every JSON parser reads."""
    text = json_text(data) + "\n"
    write_atomic(path, lambda f: f.write(text.encode()))


def json_text(data: Any) -> str:
    """``data`` as strict, indented JSON: a non-finite number becomes ``null``."""
    return json.dumps(_finite(data), indent=2, allow_nan=False)


def _finite(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    return value


def read_json(path: Path) -> dict[str, Any]:
    """A JSON file written by :func:`write_json`, with a one-line error when unreadable."""
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError) as err:
        raise UsageError(f"cannot read {path}: {err}") from None


def read_run_config(path: Path) -> dict[str, Any]:
    """The resolved config a run was trained with; one-line UsageError when unreadable."""
    file = path / CONFIG
    if not file.is_file():
        raise UsageError(f"{path} is not a run folder (no {CONFIG})")
    try:
        data = yaml.safe_load(file.read_text())
    except (OSError, yaml.YAMLError) as err:
        raise UsageError(f"{file} is unreadable ({yaml_problem(err)})") from None
    if not isinstance(data, dict) or "agent" not in data or "name" not in data:
        raise UsageError(f"{file} is not a metarl run config (no 'name' and 'agent' keys)")
    return data


class RunLock:
    """The run folder's one writer: ``run.lock`` holds the writer's PID and host.

    A second writer is refused with a UsageError naming the holder. A lock left by a process
    that no longer exists on this host is taken over, with a warning; one from another host
    cannot be checked, so it is refused with the file to delete should that host be gone.
    """

    def __init__(self, path: Path) -> None:
        self.file = path / LOCK
        self.owner = f"{os.getpid()} {socket.gethostname()}"
        self.held = False

    def check(self) -> None:
        """Raise UsageError if another live process holds the folder (takes nothing)."""
        holder = self._holder()
        if holder is not None and self._alive(*holder):
            pid, host = holder
            raise UsageError(
                f"{self.file.parent} is in use by process {pid} on {host} "
                f"(one writer per run folder; if that process is gone, delete {self.file})"
            )

    def acquire(self) -> None:
        """Take the lock (the folder must exist), or raise UsageError as :meth:`check`.

        The lock file appears whole, owner line included (a hard link of a file written
        first), so another process never reads a lock that is still being written.
        """
        for _ in range(3):
            if self._create():
                self.held = True
                return
            self.check()
            pid, host = self._holder() or (0, "")
            warnings.warn(
                f"taking over {self.file} from process {pid} on {host}, which has ended",
                stacklevel=2,
            )
            self.file.unlink(missing_ok=True)
        self.check()
        raise UsageError(f"could not take {self.file}: other processes keep taking it over")

    def _create(self) -> bool:
        """Link a file holding our owner line to the lock's name; False if one exists."""
        tmp = self.file.with_name(f".{LOCK}.{os.getpid()}.tmp")
        tmp.write_text(self.owner + "\n")
        try:
            os.link(tmp, self.file)
            return True
        except FileExistsError:
            return False
        finally:
            tmp.unlink(missing_ok=True)

    def release(self) -> None:
        """Remove the lock if it is still ours (never another process's)."""
        if self.held and self._holder() == self._parse(self.owner):
            self.file.unlink(missing_ok=True)
        self.held = False

    def __enter__(self) -> RunLock:
        self.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()

    def _holder(self) -> tuple[int, str] | None:
        try:
            return self._parse(self.file.read_text())
        except FileNotFoundError:
            return None
        except (OSError, ValueError):  # a damaged lock: nobody can be holding it properly
            return 0, "?"

    @staticmethod
    def _parse(owner: str) -> tuple[int, str]:
        pid, host = owner.split(maxsplit=1)
        return int(pid), host.strip()

    @staticmethod
    def _alive(pid: int, host: str) -> bool:
        if host != socket.gethostname():
            return host != "?"
        if pid <= 0:
            return False
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:  # exists, owned by another user
            return True
        return True


class MetricsLog:
    """``metrics.csv``, one row per iteration; on resume, rows past the checkpoint are dropped
    so the curve continues exactly where the checkpoint left it."""

    def __init__(self, path: Path, keep_below: int = 0) -> None:
        self.file = path / METRICS
        rows = []
        if keep_below and self.file.is_file():
            with self.file.open() as f:
                rows = [r for r in csv.DictReader(f) if int(r["iteration"]) < keep_below]
        self.fields: list[str] = list(rows[0]) if rows else []
        self._write(rows, mode="w")

    def _write(self, rows: list[dict], mode: str) -> None:
        with self.file.open(mode, newline="") as f:
            writer = csv.DictWriter(f, fieldnames=self.fields, extrasaction="ignore")
            if mode == "w" and self.fields:
                writer.writeheader()
            writer.writerows(rows)

    def append(self, row: dict[str, float]) -> None:
        if not self.fields:  # the first row names the columns
            self.fields = list(row)
            self._write([row], mode="w")
        else:
            self._write([row], mode="a")


def read_metrics(path: Path) -> list[dict[str, float]]:
    """The rows of a run's ``metrics.csv`` as floats."""
    with (path / METRICS).open() as f:
        return [{k: float(v) for k, v in row.items()} for row in csv.DictReader(f)]
