"""An experiment's configuration, from its name, a YAML path or a run folder: overrides
applied, resolved through its recipe, and checked against a checkpoint on resume.

Training and evaluation both start here, below the trainer and the evaluation report, so
neither imports the other to read a config.
"""

from __future__ import annotations

import contextlib
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from metarl import runs
from metarl.config import from_dict, read_raw, require, set_key, to_dict
from metarl.devices import torch_threads
from metarl.errors import UsageError
from metarl.registry import get_recipe

# Config keys that may change when a run is resumed: how long and how often, where rollouts
# and the learner run (a checkpoint loads on any device), where the data is, and how the run
# is evaluated.
RESUMABLE = (
    "train.iterations",
    "train.time_limit_minutes",
    "train.checkpoint_minutes",
    "train.threads",
    "train.device",
    "sampler.backend",
    "sampler.workers",
    "sampler.ray_address",
    "sampler.max_restarts",
    "sampler.gpus_per_worker",
    "sampler.device",
    "data.dir",
    "eval.",
)


def resolve_config(raw: dict[str, Any]) -> Any:
    """Validate a raw config dict into the typed config of its agent's recipe."""
    seed = raw.get("seed", 0)
    require(type(seed) is int and 0 <= seed < 2**32, "seed", seed, "an integer in 0 .. 2**32 - 1")
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


def for_evaluation(raw: dict[str, Any], device: str | None = None) -> dict[str, Any]:
    """A run's raw config as evaluation uses it: rollouts in this process, no mixed
    precision (evaluation never autocasts, and fp16 would refuse a CPU), no training task
    threads (``eval.workers`` sets its threads; a GPU refuses them), and ``device``
    (default: the run's own) for the model."""
    raw = dict(raw)
    if "sampler" in raw:
        raw["sampler"] = {**raw["sampler"], "backend": "local"}
    if "task_threads" in (raw.get("learner") or {}):
        raw["learner"] = {**raw["learner"], "task_threads": 1}
    train = dict(raw.get("train") or {})
    if "amp" in train:
        train["amp"] = "off"
    if device is not None:
        train["device"] = device
    raw["train"] = train
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


def _flatten(data: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    flat = {}
    for key, value in data.items():
        if isinstance(value, Mapping):
            flat.update(_flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def check_resume(trained: Mapping[str, Any], resumed: Mapping[str, Any]) -> None:
    """Refuse a resumed config that changes what the checkpoint was trained with.

    Args:
        trained: the config held by the checkpoint.
        resumed: the resolved config of the resumed run, overrides applied.
    """
    # keys added since the checkpoint was written take their defaults, as on resume; a
    # config this version cannot read is compared as it is recorded
    with contextlib.suppress(UsageError):
        trained = to_dict(resolve_config(dict(trained)))
    old, new = _flatten(trained), _flatten(resumed)
    changed = sorted(
        key
        for key in old.keys() | new.keys()
        if old.get(key) != new.get(key) and not key.startswith(RESUMABLE)
    )
    before, after = old.get("train.iterations"), new.get("train.iterations")
    if old.get("optim.schedule") == "linear" and before and after and after > before:
        raise UsageError(
            "--resume cannot change train.iterations of a run whose optim.schedule is linear: "
            f"its rate reaches 0 at iteration {before} and would stay 0 after it; start a new "
            f"run with train.iterations={after}"
        )
    if changed:
        keys = ", ".join(f"{k} ({old.get(k)!r} -> {new.get(k)!r})" for k in changed)
        raise UsageError(
            f"--resume cannot change {keys}: the checkpoint was trained with them; only "
            f"{', '.join(k + '*' if k.endswith('.') else k for k in RESUMABLE)} may change "
            "(start a new run for the others)"
        )


def thread_policy(config: Any) -> contextlib.AbstractContextManager[None]:
    """Torch's intra-op threads as the run's ``train.threads`` asks, for training and for its
    evaluation alike; the caller's setting is restored after (a notebook keeps its own)."""
    return torch_threads(config.train.threads)
