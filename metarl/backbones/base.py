"""The sequence-backbone interface shared by black-box meta-learners (SNAIL, RL²'s LSTM, ...).

A backbone maps a sequence of input vectors to a sequence of features, causally: the feature
at step t depends on inputs 0..t only, and memory is empty at t = 0. It runs in two modes
that must agree: :meth:`SequenceBackbone.forward` on whole sequences (training), and
:meth:`SequenceBackbone.step` one step at a time on a batch of sequences (acting), carrying a
state so that a step never recomputes the prefix. Backbones know nothing of RL: the inputs
may as well be (image embedding, previous label) pairs of a few-shot episode.
"""

from __future__ import annotations

import abc
import dataclasses
from typing import ClassVar, Generic, Self, TypeVar

import numpy as np
import torch
from torch import Tensor, nn
from torch.nn import functional as F

from metarl.config import require_positive


def input_projection(owner: str, input_size: int, projection_size: int | None) -> nn.Module:
    """A linear projection to ``projection_size`` features, or the identity for ``None``."""
    if projection_size is None:
        return nn.Identity()
    require_positive(owner, "projection_size", projection_size)
    return nn.Linear(input_size, projection_size)


@dataclasses.dataclass(kw_only=True)
class BackboneState(abc.ABC):
    """Step-wise memory of a batch of sequences, all at the same step.

    Subclasses add the backbone's caches. A state is updated in place by ``step`` (for
    speed: caches are preallocated, never copied), so keep no reference to an older one.

    Attributes:
        batch_size: number of sequences stepped together.
        max_len: number of steps the state has room for.
        t: steps taken so far; the next input is step ``t`` of each sequence.
    """

    batch_size: int
    max_len: int
    t: int = 0

    def advance(self, x: Tensor, input_size: int) -> int:
        """Check that ``x`` (B, input_size) is a valid next input, count it, return its step."""
        if x.shape != (self.batch_size, input_size):
            raise ValueError(
                f"step input must have shape ({self.batch_size}, {input_size}) to match the "
                f"state and backbone, got {tuple(x.shape)}"
            )
        if self.t >= self.max_len:
            raise RuntimeError(
                f"state is full: it was made for max_len={self.max_len} steps; start a new one "
                "with initial_state() for the next sequence"
            )
        self.t += 1
        return self.t - 1

    @abc.abstractmethod
    def select(self, rows: Tensor) -> Self:
        """The state of the sequences ``rows`` (indices into the batch), in that order, to
        step on with only them: a sampler drops trials that have ended."""


StateT = TypeVar("StateT", bound=BackboneState)


class SequenceBackbone(nn.Module, abc.ABC, Generic[StateT]):
    """A causal sequence model: (B, T, input_size) -> (B, T, output_size), T <= max_len.

    Attributes:
        input_size: width of one input vector.
        output_size: width of one feature vector.
        max_len: longest sequence the backbone accepts, in both modes.
    """

    input_size: int
    output_size: int
    max_len: int
    step_cost: ClassVar[float] = 4.0
    """The fixed cost of one time step of a training pass, in sequences' worth of its cost
    per sequence; it sets :meth:`forward_ragged`'s groups (measured on one CPU thread: an
    LSTM's ~4, SNAIL's ~1, MANN's ~60, whose step is many small operations)."""

    def __init__(self, input_size: int, max_len: int) -> None:
        """Validate and store the sizes; a subclass sets ``output_size`` once it is built."""
        super().__init__()
        name = type(self).__name__
        require_positive(name, "input_size", input_size)
        require_positive(name, "max_len", max_len)
        self.input_size = int(input_size)
        self.max_len = int(max_len)

    @abc.abstractmethod
    def forward(self, x: Tensor) -> Tensor:
        """Features (B, T, output_size) of whole sequences (B, T, input_size)."""

    def forward_ragged(self, x: Tensor, lengths: Tensor) -> Tensor:
        """``forward`` for sequences of which only the first ``lengths[b]`` steps count
        (trials that ended early, padded to a common T): the batch runs in groups of similar
        length (:func:`length_groups`), each cut to its longest member, so the padding costs
        little. Features at counted steps equal ``forward(x)``'s up to rounding (the backbone
        is causal); later steps hold placeholders."""
        batch, length = x.shape[:2]
        counts = lengths.cpu().numpy()
        order = np.argsort(counts, kind="stable")
        parts = []
        for group in length_groups(counts[order], self.step_cost):
            rows = torch.as_tensor(order[group], device=x.device)
            span = int(counts[order[group[-1]]])
            parts.append(F.pad(self(x[rows, :span]), (0, 0, 0, length - span)))
        inverse = torch.as_tensor(np.argsort(order, kind="stable"), device=x.device)
        return torch.cat(parts)[inverse]

    @abc.abstractmethod
    def initial_state(self, batch_size: int, max_len: int | None = None) -> StateT:
        """Empty memory for ``batch_size`` sequences of at most ``max_len`` steps.

        ``max_len`` defaults to, and may not exceed, the backbone's own. Create and step a
        state under the same autograd mode (``torch.inference_mode`` tensors cannot be
        updated outside it).
        """

    @abc.abstractmethod
    def step(self, x: Tensor, state: StateT) -> tuple[Tensor, StateT]:
        """Features (B, output_size) of the next inputs (B, input_size), and the state after.

        Equals ``forward`` on the whole prefix, at the last step. Raises RuntimeError when
        the state already holds ``max_len`` steps.
        """

    def _check_sequence(self, x: Tensor) -> None:
        if x.dim() != 3 or x.shape[-1] != self.input_size or not 1 <= x.shape[1] <= self.max_len:
            raise ValueError(
                f"{type(self).__name__} expects inputs of shape (B, T, {self.input_size}) with "
                f"1 <= T <= max_len={self.max_len}, got {tuple(x.shape)}"
            )

    def _state_size(self, batch_size: int, max_len: int | None) -> tuple[int, int]:
        """Validate ``initial_state``'s arguments; fill in the default ``max_len``."""
        name = f"{type(self).__name__}.initial_state"
        require_positive(name, "batch_size", batch_size)
        max_len = self.max_len if max_len is None else max_len
        require_positive(name, "max_len", max_len)
        if max_len > self.max_len:
            raise ValueError(
                f"{name}: max_len={max_len} exceeds the backbone's max_len={self.max_len}"
            )
        return int(batch_size), int(max_len)

    def _parameter_like(self) -> Tensor:
        """A parameter, whose dtype and device the state's tensors take."""
        return next(self.parameters())


def length_groups(
    lengths: np.ndarray, step_cost: float = 4.0, group_cost: float = 32.0
) -> list[np.ndarray]:
    """Split sequences sorted by ascending length into consecutive groups, each to be run cut
    to its longest member, minimising the modelled cost Σ max_g · (n_g + step_cost) +
    group_cost: a group pays its n_g rows for max_g steps, a per-step overhead worth
    ``step_cost`` rows (a recurrent step's) and a per-call overhead worth ``group_cost``
    row-steps. Exact by dynamic programming over the cut points; returns index arrays."""
    lengths = np.asarray(lengths)
    if np.any(np.diff(lengths) < 0):
        raise ValueError("length_groups expects lengths sorted in ascending order")
    count = len(lengths)
    best = np.zeros(count + 1)
    cut = np.zeros(count + 1, dtype=int)
    for end in range(1, count + 1):
        starts = np.arange(end)
        costs = best[:end] + lengths[end - 1] * (end - starts + step_cost) + group_cost
        cut[end] = int(np.argmin(costs))
        best[end] = costs[cut[end]]
    groups = []
    end = count
    while end > 0:
        groups.append(np.arange(cut[end], end))
        end = cut[end]
    return groups[::-1]


def check_backbone(
    backbone: SequenceBackbone, batch_size: int = 3, seq_len: int | None = None, atol: float = 1e-5
) -> None:
    """Check that ``backbone`` honours the interface, in the spirit of gymnasium's ``check_env``.

    Verifies output shapes, causality through gradients (d out_t / d x_s is zero for every
    s > t and non-zero for some s <= t) and that ``step`` reproduces ``forward`` to ``atol``
    over a whole sequence of ``seq_len`` steps (default: ``max_len``). Raises AssertionError
    naming the first violation.
    """
    seq_len = backbone.max_len if seq_len is None else seq_len
    like = backbone._parameter_like()
    x = like.new_empty(batch_size, seq_len, backbone.input_size).normal_().requires_grad_()
    out = backbone(x)
    expected = (batch_size, seq_len, backbone.output_size)
    if out.shape != expected:
        raise AssertionError(f"forward returned shape {tuple(out.shape)}, expected {expected}")
    for t in range(seq_len):
        (grad,) = torch.autograd.grad(out[:, t].sum(), x, retain_graph=True)
        influence = grad.abs().sum(dim=(0, 2))
        if influence[t + 1 :].any():
            leaks = (influence[t + 1 :] != 0).nonzero().flatten() + t + 1
            raise AssertionError(f"output at step {t} depends on later inputs {leaks.tolist()}")
        if not influence[: t + 1].any():
            raise AssertionError(f"output at step {t} depends on no input at steps 0..{t}")
    with torch.no_grad():
        state = backbone.initial_state(batch_size, seq_len)
        for t in range(seq_len):
            y, state = backbone.step(x[:, t], state)
            error = (y - out[:, t]).abs().max().item()
            if error > atol:
                raise AssertionError(f"step output at step {t} differs from forward by {error:.3g}")
