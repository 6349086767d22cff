"""Experiment configuration: typed dataclasses loaded from YAML and validated once.

Every experiment is one YAML file in ``configs/``. Its top-level keys are ``name``, ``agent``,
``seed`` and one section per dataclass field of the agent's configuration class; the loader
rejects unknown keys (suggesting the closest valid one), wrong types and out-of-range values,
always naming the key. ``--set section.key=value`` overrides parse their value as YAML.
"""

from __future__ import annotations

import dataclasses
import difflib
import numbers
import types
import typing
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import yaml

from metarl.devices import CUDA, resolve_device
from metarl.errors import ConfigError

if TYPE_CHECKING:
    import torch

T = TypeVar("T")


@dataclasses.dataclass
class TrainConfig:
    """How long to train and how often to log and checkpoint.

    Attributes:
        iterations: number of training iterations (each: sample a batch, one learner update).
        checkpoint_minutes: wall-clock minutes between periodic checkpoints.
        time_limit_minutes: stop cleanly after this many minutes (0: no limit).
        threads: torch intra-op threads of the learner (0: torch's default). Small models
            train faster on one thread, and leave the other cores to rollout workers.
        device: where the learner's model, optimiser state and batches live: ``auto``
            (CUDA where available, else the CPU), ``cpu``, ``cuda``, ``cuda:N`` or ``mps``
            (``--device``); checked against this machine at start-up.
    """

    iterations: int = 100
    checkpoint_minutes: float = 5.0
    time_limit_minutes: float = 0.0
    threads: int = 0
    device: str = "auto"

    def __post_init__(self) -> None:
        require_positive_ints(self, "train", ("iterations",))
        require(
            self.checkpoint_minutes > 0,
            "train.checkpoint_minutes",
            self.checkpoint_minutes,
            "a positive number",
        )
        require(
            self.time_limit_minutes >= 0,
            "train.time_limit_minutes",
            self.time_limit_minutes,
            "a number >= 0",
        )
        resolve_device(self.device)  # ConfigError now, before anything is written

    @property
    def torch_device(self) -> torch.device:
        """:attr:`device` on this machine (``auto`` resolved)."""
        return resolve_device(self.device)


@dataclasses.dataclass
class SamplerConfig:
    """Where rollouts run.

    Attributes:
        backend: ``local`` (in this process) or ``ray`` (``workers`` Ray actors).
        workers: number of Ray rollout actors (ignored by the local backend).
        ray_address: address of a running Ray cluster (``auto``, ``host:port``); empty starts a
            local Ray instance.
        shards: the batch is cut into this many shards, each with its own seed; workers take
            shards, so results do not depend on the backend or the number of workers.
        max_restarts: Ray workers that may die and be replaced within one iteration before
            the run stops (with a checkpoint of the iterations done).
        gpus_per_worker: GPUs (a fraction allowed) each Ray rollout actor asks for, for
            model-heavy acting; 0 (the default): actors need no GPU.
        device: where rollout workers act: ``cpu`` (the default: CPU copies of the
            weights, which small policies act fastest with) or ``cuda``/``cuda:N``, on the
            sampling machine's GPU (the Ray backend then needs ``gpus_per_worker`` > 0, the
            local one a GPU here). Environments always step on the CPU.
    """

    backend: str = "local"
    workers: int = 2
    ray_address: str = ""
    shards: int = 4
    max_restarts: int = 3
    gpus_per_worker: float = 0.0
    device: str = "cpu"

    def __post_init__(self) -> None:
        require(
            self.backend in ("local", "ray"), "sampler.backend", self.backend, "'local' or 'ray'"
        )
        require_positive_ints(self, "sampler", ("workers", "shards"))
        require(self.max_restarts >= 0, "sampler.max_restarts", self.max_restarts, ">= 0")
        require(self.gpus_per_worker >= 0, "sampler.gpus_per_worker", self.gpus_per_worker, ">= 0")
        require(
            self.device == "cpu" or CUDA.fullmatch(str(self.device)) is not None,
            "sampler.device",
            self.device,
            "cpu, cuda or cuda:N",
        )
        if self.device != "cpu" and self.backend == "ray":
            require(
                self.gpus_per_worker > 0,
                "sampler.device",
                self.device,
                "cpu unless sampler.gpus_per_worker > 0 (a Ray actor sees a GPU only if it asks)",
            )
        elif self.device != "cpu":
            resolve_device(self.device, "sampler.device")


@dataclasses.dataclass
class EvalConfig:
    """How a run is evaluated: what every experiment's ``eval`` section holds. A recipe's
    section extends this class with its own settings only.

    Attributes:
        episodes: held-out tasks or test episodes (``metarl eval --episodes``); at least 2,
            for a confidence interval.
        seed: seeds the held-out tasks, so that every run is measured on the same ones; its
            default, 2**31 - 1, is far from training seeds.
    """

    episodes: int = 1000
    seed: int = 2_147_483_647

    def __post_init__(self) -> None:
        require(self.episodes >= 2, "eval.episodes", self.episodes, "an integer >= 2")


def require(ok: bool, key: str, value: Any, expected: str) -> None:
    """Raise :class:`ConfigError` naming ``key`` unless ``ok``."""
    if not ok:
        raise ConfigError(f"config key '{key}': got {value!r}, expected {expected}")


def is_positive_int(value: object) -> bool:
    """Whether ``value`` is an integer >= 1, Python's or NumPy's (a bool is not a count)."""
    return isinstance(value, numbers.Integral) and not isinstance(value, bool) and value >= 1


def require_positive(owner: str, name: str, value: object) -> int:
    """``value`` as an int, or ValueError ``"{owner}: {name} must be a positive integer, got
    {value!r}"``: the check of a count given to a constructor or function. The one copy for
    the whole library; configuration keys use :func:`require_positive_ints` instead."""
    if not is_positive_int(value):
        raise ValueError(f"{owner}: {name} must be a positive integer, got {value!r}")
    return int(value)


def require_positive_ints(section: Any, prefix: str, keys: tuple[str, ...]) -> None:
    """:func:`require` that each named field of a config section is an integer >= 1
    (``prefix`` is the section's key, empty for the top level)."""
    for key in keys:
        value = getattr(section, key)
        dotted = f"{prefix}.{key}" if prefix else key
        require(is_positive_int(value), dotted, value, "an integer >= 1")


def _closest(key: str, valid: list[str], prefix: str = "") -> str:
    """A hint naming the closest valid key (with its section prefix), or listing them all."""
    match = difflib.get_close_matches(key, valid, n=1, cutoff=0.5)
    dotted = f"{prefix}." if prefix else ""
    return f"; did you mean '{dotted}{match[0]}'?" if match else f"; valid keys: {', '.join(valid)}"


def _convert(value: Any, hint: Any, key: str) -> Any:
    origin = typing.get_origin(hint)
    if dataclasses.is_dataclass(hint):
        return from_dict(hint, value, key)
    if origin in (typing.Union, types.UnionType):
        options = typing.get_args(hint)
        if value is None and type(None) in options:
            return None
        candidates = [o for o in options if o is not type(None)]
        for option in candidates[:-1]:  # the first type that takes the value
            try:
                return _convert(value, option, key)
            except ConfigError:
                pass
        return _convert(value, candidates[-1], key)
    if origin in (list, tuple):
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"config key '{key}': got {value!r}, expected a list")
        (item,) = typing.get_args(hint)[:1]
        return origin(_convert(v, item, f"{key}[{i}]") for i, v in enumerate(value))
    if hint is float and isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    if hint is float and isinstance(value, str):  # YAML 1.1 reads 1e-3 as a string
        try:
            return float(value)
        except ValueError:
            pass
    if hint in (int, str, bool) and type(value) is hint:
        return value
    raise ConfigError(
        f"config key '{key}': got {value!r} ({type(value).__name__}), expected {hint.__name__}"
    )


def from_dict(cls: type[T], data: Any, prefix: str = "") -> T:
    """Build dataclass ``cls`` from a mapping, checking every key and type."""
    if not isinstance(data, dict):
        raise ConfigError(f"config section '{prefix or cls.__name__}' must be a mapping")
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    kwargs = {}
    for key, value in data.items():
        full = f"{prefix}.{key}" if prefix else str(key)
        if key not in names:
            raise ConfigError(f"unknown config key '{full}'{_closest(str(key), names, prefix)}")
        kwargs[key] = _convert(value, hints[key], full)
    try:
        return cls(**kwargs)
    except TypeError as err:  # a required field is missing
        raise ConfigError(f"config section '{prefix or cls.__name__}': {err}") from None


def to_dict(config: Any) -> dict[str, Any]:
    """The plain-dict form of a config dataclass, as written to ``config.yaml``."""
    return dataclasses.asdict(config)


def set_key(data: dict[str, Any], assignment: str) -> None:
    """Apply one ``section.key=value`` override (value parsed as YAML) to a raw config dict."""
    if "=" not in assignment:
        raise ConfigError(f"--set expects KEY=VALUE, got {assignment!r}")
    path, raw = assignment.split("=", 1)
    *parents, leaf = path.strip().split(".")
    node = data
    for i, part in enumerate(parents):
        if not isinstance(node.get(part), dict):
            raise ConfigError(
                f"unknown config key '{'.'.join(parents[: i + 1])}'"
                f"{_closest(part, list(node), '.'.join(parents[:i]))}"
            )
        node = node[part]
    try:
        node[leaf] = yaml.safe_load(raw)
    except yaml.YAMLError as err:
        raise ConfigError(
            f"--set {path}: value {raw!r} is not valid YAML ({yaml_problem(err)})"
        ) from None


def config_names() -> list[str]:
    """Names of the experiments shipped in ``configs/``."""
    return sorted(
        p.name[:-5] for p in resources.files("configs").iterdir() if p.name.endswith(".yaml")
    )


def describe(name: str) -> str:
    """The first comment line of ``configs/NAME.yaml``: what the experiment is."""
    for line in resources.files("configs").joinpath(f"{name}.yaml").read_text().splitlines():
        if line.startswith("#"):
            return line.lstrip("# ").strip()
    return ""


def read_raw(name_or_path: str) -> dict[str, Any]:
    """Read an experiment's YAML by name (``configs/NAME.yaml``) or by path."""
    if name_or_path.endswith((".yaml", ".yml")):
        path = Path(name_or_path)
        if not path.is_file():
            raise ConfigError(f"config file not found: {path}")
        text = path.read_text()
    else:
        names = config_names()
        if name_or_path not in names:
            raise ConfigError(
                f"unknown experiment '{name_or_path}'{_closest(name_or_path, names)}"
                " (see 'metarl list')"
            )
        text = resources.files("configs").joinpath(f"{name_or_path}.yaml").read_text()
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as err:
        raise ConfigError(f"{name_or_path}: invalid YAML ({yaml_problem(err)})") from None
    if not isinstance(data, dict) or "agent" not in data:
        raise ConfigError(f"{name_or_path}: a config must be a mapping with an 'agent' key")
    return data


def yaml_problem(err: Exception) -> str:
    """A YAML error in one line: what is wrong and where (PyYAML spreads it over several)."""
    mark = getattr(err, "problem_mark", None)
    problem = getattr(err, "problem", None) or str(err).splitlines()[0]
    where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
    return f"{problem}{where}"
