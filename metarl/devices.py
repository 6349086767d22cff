"""Where a run's learner computes: ``train.device`` resolved to a ``torch.device``, checked
against this machine, the moves between it and the CPU that environments and rollout
workers use, and torch's CPU threads for a stretch of work.

Environments and rollout workers stay on the CPU (they act step by step on small batches);
the learner's model, optimiser state and batches live on the run's device.
"""

from __future__ import annotations

import contextlib
import os
import re
import sys
from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING

from metarl.errors import ConfigError

if TYPE_CHECKING:  # torch is imported on first use: 'metarl list' reads configs without it
    import torch
    from torch import Tensor

CHOICES = "auto, cpu, cuda, cuda:N or mps"


CUDA = re.compile(r"cuda(?::(\d+))?")
"""``cuda`` or ``cuda:N``, N captured."""


def resolve_device(text: str, key: str = "train.device") -> torch.device:
    """The device that ``text`` names on this machine: ``auto`` (CUDA where available,
    else the CPU), ``cpu``, ``cuda``, ``cuda:N`` or ``mps``; ConfigError in one line naming
    ``key`` when the string is unknown or this machine does not have that device."""
    import torch

    text = text.strip().lower() if isinstance(text, str) else text
    if text == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if text == "cpu":
        return torch.device("cpu")
    match = CUDA.fullmatch(text) if isinstance(text, str) else None
    if match:
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        index = int(match.group(1) or 0)
        if index >= count:
            where = f"this machine has {count} CUDA device{'s' * (count != 1)}"
            raise ConfigError(
                f"config key '{key}': got {text!r}, but {where} (use --device cpu or auto)"
            )
        return torch.device("cuda", index)
    if text == "mps":
        if sys.platform != "darwin" or not torch.backends.mps.is_available():
            raise ConfigError(
                f"config key '{key}': got 'mps', but Apple's Metal (MPS) is not available "
                "on this machine (use --device cpu or auto)"
            )
        return torch.device("mps")
    raise ConfigError(f"config key '{key}': got {text!r}, expected {CHOICES}")


def on_cpu(state: Mapping[str, Tensor]) -> dict[str, Tensor]:
    """``state`` (weights, or a task's adapted parameters) detached and on the CPU: what
    rollout workers act with, in this process or as Ray actors without a GPU."""
    return {name: value.detach().cpu() for name, value in state.items()}


@contextlib.contextmanager
def torch_threads(threads: int) -> Iterator[None]:
    """Torch's intra-op threads set to ``threads`` (0: left as they are) inside the block,
    and the caller's setting restored after it."""
    import torch

    before = torch.get_num_threads()
    if threads:
        torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def usable_cpus() -> int:
    """The CPUs this process may run on (its affinity where the system tells it)."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1
