"""Mixed precision of a learner's training updates (``train.amp``): forward passes under
``torch.autocast`` in bfloat16 or float16, and for float16 a gradient scaler, whose loss
scaling keeps small gradients from underflowing to zero.

Parameters and optimiser state stay in float32; only the operations autocast lists run in
the lower precision. ``fp16`` needs a GPU (autocast in float16 on the CPU is slow and its
scaler pointless there), so the configuration refuses it on the CPU.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import torch
from torch import Tensor

from metarl.config import require

MODES = {"off": None, "bf16": torch.bfloat16, "fp16": torch.float16}


def check_amp(mode: str, device: torch.device, key: str = "train.amp") -> None:
    """ConfigError naming ``key`` unless ``mode`` is a precision this device trains in."""
    require(mode in MODES, key, mode, "off, bf16 or fp16")
    require(
        mode != "fp16" or device.type != "cpu",
        key,
        mode,
        "off or bf16 on the CPU (fp16 needs a GPU: --device cuda)",
    )


class MixedPrecision:
    """The precision of one learner's updates on ``device``.

    Args:
        mode: ``off``, ``bf16`` or ``fp16`` (checked by :func:`check_amp`).
        device: the learner's device.
    """

    def __init__(self, mode: str, device: torch.device) -> None:
        check_amp(mode, device)
        self.mode, self.device = mode, device
        self.scaler = torch.amp.GradScaler(device.type) if mode == "fp16" else None

    @contextlib.contextmanager
    def autocast(self) -> Iterator[None]:
        """The forward passes of an update (and their backward) in the chosen precision."""
        if self.mode == "off":
            yield
            return
        with torch.autocast(self.device.type, dtype=MODES[self.mode]):
            yield

    def backward(self, loss: Tensor) -> None:
        """``loss.backward()``, the loss scaled first under fp16."""
        (loss if self.scaler is None else self.scaler.scale(loss)).backward()

    def step(self, optimizer: torch.optim.Optimizer) -> None:
        """``optimizer.step()``; under fp16 on unscaled gradients, skipped (and the scale
        lowered) when they overflowed."""
        if self.scaler is None:
            optimizer.step()
            return
        self.scaler.step(optimizer)
        self.scaler.update()

    def state_dict(self) -> dict[str, Any]:
        return {} if self.scaler is None else self.scaler.state_dict()

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if self.scaler is not None and state:
            self.scaler.load_state_dict(state)
