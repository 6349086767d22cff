"""The training loop shared by every experiment: iterate, log, checkpoint, stop on time.

Randomness of iteration ``i`` is derived from ``(seed, i)`` only, so a run resumed from a
checkpoint continues exactly the curve it would have drawn uninterrupted.
"""

from __future__ import annotations

import dataclasses
import math
import random
import signal
import threading
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch
from tqdm.auto import tqdm

from agents import get_recipe
from metarl import runs
from metarl.allocator import keep_freed_memory
from metarl.config import from_dict, read_raw, set_key, to_dict
from metarl.errors import RunFailed, UsageError, WorkersLost


class Agent(Protocol):
    """What a recipe builds: a meta-learner with its sampler, trained one iteration at a time.

    Attributes:
        headline: the metric shown on the progress bar and in ``summary.json``
            (``mean_return`` for RL agents, ``accuracy`` for few-shot classifiers).
    """

    headline: str

    def train_iteration(self, iteration: int) -> dict[str, float]:
        """Sample and update once; returns metrics including ``headline`` and ``env_steps``
        (environment steps in RL, training episodes or images in few-shot mode)."""
        ...

    def state_dict(self) -> dict[str, Any]: ...

    def load_state_dict(self, state: dict[str, Any]) -> None: ...

    def evaluate(self, episodes: int) -> dict[str, Any]:
        """Measure on held-out tasks; returns the fields of ``eval.json``."""
        ...

    def close(self) -> None: ...


@dataclasses.dataclass
class Run:
    """A finished (or stopped) training run.

    Attributes:
        path: the run folder.
        config: the resolved configuration.
        summary: the contents of ``summary.json``.
    """

    path: Path
    config: Any
    summary: dict[str, Any]

    def evaluate(self, episodes: int | None = None) -> dict[str, Any]:
        """Evaluate this run (see :func:`metarl.evaluate`)."""
        from metarl.eval.report import evaluate_run

        return evaluate_run(self.path, episodes)


def resolve_config(raw: dict[str, Any]) -> Any:
    """Validate a raw config dict into the typed config of its agent's recipe."""
    return from_dict(get_recipe(str(raw.get("agent"))).Config, raw)


def apply_fewshot_options(
    raw: dict[str, Any],
    *,
    ways: int | None = None,
    shots: int | None = None,
    data_dir: str | Path | None = None,
) -> dict[str, Any]:
    """``raw`` with the few-shot command-line options applied to its ``eval`` and ``data``
    sections; UsageError if they are given for an experiment that has no dataset."""
    given = {"--ways": ways, "--shots": shots, "--data-dir": data_dir}
    if all(v is None for v in given.values()):
        return raw
    if "data" not in raw:
        options = ", ".join(k for k, v in given.items() if v is not None)
        raise UsageError(f"{options}: only few-shot experiments take these options")
    raw = {**raw, "eval": dict(raw.get("eval") or {}), "data": dict(raw["data"] or {})}
    for key, value in (("ways", ways), ("shots", shots)):
        if value is not None:
            raw["eval"][key] = value
    if data_dir is not None:
        raw["data"]["dir"] = str(data_dir)
    return raw


def build_config(
    experiment: str | None,
    overrides: Mapping[str, Any] | Sequence[str] = (),
    resume: str | Path | None = None,
) -> dict[str, Any]:
    """The raw config of a new run (by name or path) or of the run being resumed, with
    ``--set`` style overrides applied."""
    if resume is not None:
        raw = runs.read_run_config(Path(resume))
        if experiment and not experiment.endswith((".yaml", ".yml")) and experiment != raw["name"]:
            raise UsageError(f"--resume {resume} holds a '{raw['name']}' run, not '{experiment}'")
    elif experiment:
        raw = read_raw(experiment)
    else:
        raise UsageError("name an experiment (see 'metarl list') or --resume a run folder")
    items = overrides.items() if isinstance(overrides, Mapping) else None
    for assignment in [f"{k}={v}" for k, v in items] if items is not None else overrides:
        set_key(raw, assignment)
    return raw


def train(
    experiment: str | None = None,
    *,
    out: str | Path | None = None,
    overrides: Mapping[str, Any] | Sequence[str] = (),
    seed: int | None = None,
    backend: str | None = None,
    workers: int | None = None,
    ray_address: str | None = None,
    resume: str | Path | None = None,
    time_limit: float | None = None,
    data_dir: str | Path | None = None,
    progress: bool = True,
) -> Run:
    """Train an experiment by name (``configs/NAME.yaml``) or path and return the run.

    Args:
        experiment: experiment name or YAML path; optional with ``resume``.
        out: run folder (default ``runs/NAME-TIMESTAMP``); must be new or empty.
        overrides: ``{"ppo.lr": 1e-3}`` or ``["ppo.lr=1e-3"]``.
        seed: overrides the config's seed.
        backend, workers, ray_address: override the ``sampler`` section.
        resume: a run folder to continue from its checkpoint.
        time_limit: stop cleanly after this many minutes (checkpoint and summary written).
        data_dir: few-shot experiments: the dataset folder (overrides ``data.dir``).
        progress: show a progress bar.

    Example:
        >>> run = metarl.train("snail-bandit", time_limit=5)  # doctest: +SKIP
        >>> run.evaluate()["value"]  # doctest: +SKIP
    """
    raw = build_config(experiment, overrides, resume)
    if seed is not None:
        raw["seed"] = seed
    for key, value in (("backend", backend), ("workers", workers), ("ray_address", ray_address)):
        if value is not None:
            raw.setdefault("sampler", {})[key] = value
    if time_limit is not None:
        raw.setdefault("train", {})["time_limit_minutes"] = time_limit
    raw = apply_fewshot_options(raw, data_dir=data_dir)
    config = resolve_config(raw)
    checkpoint = runs.load_checkpoint(Path(resume)) if resume is not None else None
    path = Path(resume) if resume is not None else Path(out or runs.default_run_dir(config.name))
    if resume is None:
        runs.check_new_run_dir(path)
    keep_freed_memory()
    threads = torch.get_num_threads()
    if config.train.threads:  # for this run only: a notebook keeps its own setting
        torch.set_num_threads(config.train.threads)
    agent = get_recipe(config.agent).build(config)
    try:
        return _loop(agent, config, path, checkpoint, progress)
    finally:
        agent.close()
        torch.set_num_threads(threads)


def _loop(
    agent: Agent, config: Any, path: Path, checkpoint: dict[str, Any] | None, progress: bool
) -> Run:
    from torch.utils.tensorboard import SummaryWriter

    path.mkdir(parents=True, exist_ok=True)
    runs.write_yaml(path / runs.CONFIG, to_dict(config))
    start, env_steps, elapsed = 0, 0, 0.0
    if checkpoint is not None:
        agent.load_state_dict(checkpoint["agent"])
        start, env_steps = checkpoint["iteration"], checkpoint["env_steps"]
        elapsed = checkpoint["elapsed"]
        if "rng" in checkpoint:
            _set_rng_states(checkpoint["rng"])
    metrics = runs.MetricsLog(path, keep_below=start)
    writer = SummaryWriter(str(path / "tb"))
    train_cfg = config.train
    limit = train_cfg.time_limit_minutes * 60
    began = time.monotonic()
    last_save = began
    iteration, status, last = start, "finished", {}

    def save() -> None:
        runs.save_checkpoint(
            path,
            {
                "iteration": iteration,
                "agent": agent.state_dict(),
                "env_steps": env_steps,
                "elapsed": elapsed + time.monotonic() - began,
                "config": to_dict(config),
                "rng": _rng_states(),
            },
        )

    stop = _StopRequest()
    previous = (  # signal handlers live in the main thread (a Tune trial runs in another)
        {sig: signal.signal(sig, stop) for sig in (signal.SIGINT, signal.SIGTERM)}
        if threading.current_thread() is threading.main_thread()
        else {}
    )
    bar = tqdm(
        total=train_cfg.iterations,
        initial=start,
        disable=not progress,
        desc=config.name,
        unit="it",
        dynamic_ncols=True,
    )
    try:
        while iteration < train_cfg.iterations:
            tick = time.monotonic()
            torch.manual_seed(config.seed * 1_000_003 + iteration)
            last = agent.train_iteration(iteration)
            if not math.isfinite(last.get("loss", 0.0)):
                raise FloatingPointError(f"the training loss is {last['loss']}")
            env_steps += int(last["env_steps"])
            iteration += 1
            now = time.monotonic()
            row = {
                "iteration": iteration - 1,
                "total_env_steps": env_steps,
                "wall_time": round(elapsed + now - began, 3),
                "steps_per_s": round(last["env_steps"] / max(now - tick, 1e-9), 1),
                **last,
            }
            metrics.append(row)
            for key, value in row.items():
                writer.add_scalar(key, value, iteration - 1)
            postfix = {
                agent.headline: f"{last[agent.headline]:.3f}",
                "steps/s": f"{row['steps_per_s']:.0f}",
            }
            if limit:
                postfix["left"] = f"{max(0.0, limit - (now - began)) / 60:.1f}min"
            bar.set_postfix(postfix, refresh=False)
            bar.update()
            if now - last_save >= train_cfg.checkpoint_minutes * 60:
                save()
                last_save = now
            if limit and now - began >= limit and iteration < train_cfg.iterations:
                status = "time_limit"
                break
            if stop.signal is not None:
                status = "interrupted"
                break
    except KeyboardInterrupt:  # a second signal: the iteration in progress is abandoned,
        raise KeyboardInterrupt(  # half-updated, so the last periodic checkpoint stays
            f"interrupted twice: {path / runs.CHECKPOINT} holds the last periodic checkpoint"
        ) from None
    except WorkersLost as err:  # the iteration never reached the update: state is whole
        save()
        raise RunFailed(
            f"{err}; {path / runs.CHECKPOINT} holds the {iteration} iterations done "
            f"(continue with --resume {path})"
        ) from None
    except FloatingPointError as err:  # no checkpoint of the diverged state
        raise RunFailed(
            f"iteration {iteration} diverged ({err}); {path / runs.CHECKPOINT} holds the last "
            "good state"
        ) from None
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        bar.close()
        writer.close()
    save()
    summary = {
        "experiment": config.name,
        "status": status,
        "iterations": iteration,
        "env_steps": env_steps,
        "wall_time_s": round(elapsed + time.monotonic() - began, 1),
        f"final_{agent.headline}": last.get(agent.headline),
    }
    runs.write_json(path / runs.SUMMARY, summary)
    if status == "interrupted":
        raise KeyboardInterrupt
    return Run(path=path, config=config, summary=summary)


def _rng_states() -> dict[str, Any]:
    """The global random states (torch, numpy, random). Recipes draw from generators seeded
    by (seed, iteration), and the loop reseeds torch every iteration, so resuming does not
    need these; they are kept so that code drawing from the global streams resumes too."""
    return {
        "torch": torch.get_rng_state(),
        "numpy": np.random.get_state(),
        "python": random.getstate(),
    }


def _set_rng_states(states: dict[str, Any]) -> None:
    torch.set_rng_state(states["torch"])
    np.random.set_state(states["numpy"])
    random.setstate(states["python"])


class _StopRequest:
    """SIGINT / SIGTERM handler: the first signal asks the loop to stop once the iteration
    in progress is complete (so the checkpoint holds a whole update, and a resumed run
    continues exactly); a second one interrupts at once."""

    def __init__(self) -> None:
        self.signal: int | None = None

    def __call__(self, signum: int, frame: object) -> None:
        if self.signal is not None:
            raise KeyboardInterrupt
        self.signal = signum
