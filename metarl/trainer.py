"""The training loop shared by every experiment: iterate, log, checkpoint, stop on time.

Randomness of iteration ``i`` is derived from ``(seed, i)`` only, so a run resumed from a
checkpoint continues exactly the curve it would have drawn uninterrupted.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import os
import random
import signal
import threading
import time
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch
from tqdm.auto import tqdm

from metarl import runs
from metarl.config import to_dict
from metarl.devices import usable_cpus
from metarl.errors import RunFailed, UsageError, WorkersLost
from metarl.experiment import (
    apply_fewshot_options,
    build_config,
    check_resume,
    resolve_config,
    thread_policy,
)
from metarl.registry import get_recipe


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
    device: str | None = None,
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
        device: where the learner trains (overrides ``train.device``: auto, cpu, cuda,
            cuda:N or mps); checked before the run folder is made.
        progress: show a progress bar.

    Example:
        >>> run = metarl.train("snail-bandit", time_limit=5)  # doctest: +SKIP
        >>> run.evaluate()["value"]  # doctest: +SKIP
    """
    if resume is not None and out is not None:
        raise UsageError("--out cannot be given with --resume: a run continues in its own folder")
    if resume is not None and seed is not None:
        raise UsageError(
            "--seed cannot change on --resume: the checkpoint was trained with its own"
        )
    raw = build_config(experiment, overrides, resume)
    if seed is not None:
        raw["seed"] = seed
    for key, value in (("backend", backend), ("workers", workers), ("ray_address", ray_address)):
        if value is not None:
            raw.setdefault("sampler", {})[key] = value
    for key, value in (("time_limit_minutes", time_limit), ("device", device)):
        if value is not None:
            raw.setdefault("train", {})[key] = value
    raw = apply_fewshot_options(raw, data_dir=data_dir)
    config = resolve_config(raw)
    _check_sampler(config, workers_given=workers is not None)
    if resume is None:
        path = Path(out or runs.default_run_dir(config.name))
        runs.check_new_run_dir(path)
        checkpoint = None
    else:
        path = Path(resume)
        runs.RunLock(path).check()
        checkpoint = runs.load_checkpoint(path)
        check_resume(checkpoint["config"], to_dict(config))
        linear = getattr(getattr(config, "optim", None), "schedule", None) == "linear"
        _check_iterations_left(path, checkpoint["iteration"], config.train.iterations, linear)
    with thread_policy(config):
        try:
            agent = get_recipe(config.agent).build(config)
        except KeyboardInterrupt:
            untouched = "is as it was" if resume is not None else "was not created"
            message = f"interrupted before training started; {path} {untouched}"
            raise KeyboardInterrupt(message) from None
        try:
            if checkpoint is not None:
                agent.load_state_dict(checkpoint["agent"])
            path.mkdir(parents=True, exist_ok=True)
            with runs.RunLock(path):
                return _loop(agent, config, path, checkpoint, progress)
        finally:
            agent.close()


def _check_sampler(config: Any, workers_given: bool) -> None:
    """Refuse sampler settings that would be silently ignored or oversubscribe this machine."""
    sampler = getattr(config, "sampler", None)
    if sampler is None:
        return
    if sampler.backend == "local" and workers_given:
        raise UsageError(
            "--workers applies to Ray rollout workers; add --backend ray "
            "(the local backend samples in this process)"
        )
    cpus = usable_cpus()
    if sampler.backend == "ray" and not sampler.ray_address and sampler.workers > cpus:
        raise UsageError(
            f"{sampler.workers} Ray workers on this machine's {cpus} CPUs; use at most {cpus}, "
            "or give --ray-address to run them on a cluster"
        )


def _check_iterations_left(path: Path, done: int, iterations: int, linear: bool) -> None:
    """A resumed run must have iterations left to train. One with a linear schedule ends
    with its rate at 0, so more training is a new run (``check_resume``)."""
    if done >= iterations:
        state = "finished its" if done == iterations else f"done {done} iterations, beyond"
        more = max(2 * done, done + 1)
        further = (
            f"start a new run with train.iterations={more} (its linear schedule ended at rate 0)"
            if linear
            else f"metarl train --resume {path} --set train.iterations={more}"
        )
        raise UsageError(
            f"{path} has {state} train.iterations={iterations}; to train further: {further}"
        )


def _loop(
    agent: Agent, config: Any, path: Path, checkpoint: dict[str, Any] | None, progress: bool
) -> Run:
    from torch.utils.tensorboard import SummaryWriter

    runs.write_yaml(path / runs.CONFIG, to_dict(config))
    start, env_steps, elapsed = 0, 0, 0.0
    if checkpoint is not None:
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
    saved = start if checkpoint is not None else None  # the iteration checkpoint.pt holds
    unit = getattr(agent, "step_unit", "env_steps")
    if checkpoint is not None and (path / "eval.json").is_file():
        warnings.warn(
            f"{path / 'eval.json'} and eval.png describe an earlier checkpoint; "
            f"run 'metarl eval {path}' again once this training ends",
            stacklevel=2,
        )

    def save() -> None:
        nonlocal saved
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
        saved = iteration

    stop, finishing = _StopRequest(), False
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
            env_steps += int(last[unit])
            iteration += 1
            now = time.monotonic()
            row = {
                "iteration": iteration - 1,
                f"total_{unit}": env_steps,
                "wall_time": round(elapsed + now - began, 3),
                f"{unit}_per_s": round(last[unit] / max(now - tick, 1e-9), 1),
                **last,
            }
            metrics.append(row)
            for key, value in row.items():
                writer.add_scalar(key, value, iteration - 1)
            postfix = {
                agent.headline: f"{last[agent.headline]:.3f}",
                f"{unit.replace('env_', '')}/s": f"{row[f'{unit}_per_s']:.0f}",
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
            if stop.signal is not None and iteration < train_cfg.iterations:
                status = "interrupted"
                break
        finishing = True  # a second signal now interrupts the final save, not an update
        save()
        summary = {
            "experiment": config.name,
            "status": status,
            "iterations": iteration,
            unit: env_steps,
            "wall_time_s": round(elapsed + time.monotonic() - began, 1),
            f"final_{agent.headline}": last.get(agent.headline),
        }
        runs.write_json(path / runs.SUMMARY, summary)
    except KeyboardInterrupt:  # a second signal: the iteration in progress is abandoned,
        step = "the final save" if finishing else f"iteration {iteration}"  # half-updated,
        raise KeyboardInterrupt(  # so the last checkpoint stays as it was (written whole)
            f"interrupted twice, {step} abandoned; {_saved_state(path, saved)}"
        ) from None
    except WorkersLost as err:  # the iteration never reached the update: state is whole
        save()
        raise RunFailed(
            f"{err}; {path / runs.CHECKPOINT} holds the {iteration} iterations done "
            f"(continue with --resume {path})"
        ) from None
    except FloatingPointError as err:  # no checkpoint of the diverged state
        raise RunFailed(
            f"iteration {iteration} diverged ({err}); {_saved_state(path, saved)}"
        ) from None
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        bar.close()
        writer.close()
    if status == "interrupted":
        raise KeyboardInterrupt(
            f"stopped after {iteration} iterations; {_saved_state(path, saved)}"
        )
    return Run(path=path, config=config, summary=summary)


def _saved_state(path: Path, saved: int | None) -> str:
    """What the run folder holds to continue from, in words, with the command to do so."""
    if saved is None:
        return f"nothing was saved ({path} holds no checkpoint yet)"
    return (
        f"{path / runs.CHECKPOINT} holds the first {saved} iterations; continue with: "
        f"metarl train --resume {path}"
    )


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
        name = signal.Signals(signum).name
        message = (
            f"\nmetarl: {name}: stopping after the iteration in progress; "
            f"a second {name} abandons it\n"
        )
        # os.write: a print here could re-enter a write to stderr that the signal interrupted;
        # a closed stderr must not turn the clean stop into a crash
        with contextlib.suppress(OSError):
            os.write(2, message.encode())
