"""MANN: a controller with an external memory written by least-recently-used access (Santoro
et al. 2016, "Meta-Learning with Memory-Augmented Neural Networks", ICML).

At step t the controller reads (x_t, r_{t-1}) and emits, per read head h, a key k_t^h, a
write gate α_t^h and a key strength β_t^h. With memory M (N slots × W), usage w^u and the
previous step's read weights w^r and least-used weights w^lu:

1. write weights   w^w_t = σ(α_t) w^r_{t-1} + (1 - σ(α_t)) w^lu_{t-1};
2. write           the least-used slot (smallest w^u_{t-1}) is zeroed, then
                   M_t(i) = M_{t-1}(i) + Σ_h w^w_t^h(i) k_t^h;
3. read            w^r_t(i) = softmax_i(β_t K(k_t, M_t(i))), K the cosine similarity,
                   r_t = Σ_i w^r_t(i) M_t(i);
4. usage           w^u_t = γ w^u_{t-1} + Σ_h (w^r_t^h + w^w_t^h);
5. least used      w^lu_t(i) = 1 for the n slots of smallest w^u_t, n = number of read
                   heads (ties go to the lower slot, so there are exactly n), else 0.

The features are (h_t, r_t). The key strength β (Graves et al. 2014's content addressing) is
our addition: plain cosine logits lie in [-1, 1], so a read over 128 slots can hardly be
sharper than uniform; ``key_strength=False`` gives the paper's β = 1.

Memory lives in the state, so it is wiped whenever a new state is made: once per task, and
never between the episodes of one trial (they are one sequence).
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable
from typing import Any, NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from metarl.backbones.base import BackboneState, SequenceBackbone
from metarl.backbones.cosine_attention import cosine_attention
from metarl.config import require_positive

CONTROLLERS = ("lstm", "mlp")
INITIAL_STRENGTH = 9.0  # softplus(9) + 1 ≈ 10


def least_used(usage: Tensor, n: int) -> Tensor:
    """w^lu: 1.0 at the ``n`` slots of smallest usage (B, N), lower slots first on ties."""
    order = torch.argsort(usage, dim=-1, stable=True)[:, :n]
    return torch.zeros_like(usage).scatter_(-1, order, 1.0)


def lrua_write(
    memory: Tensor,
    usage: Tensor,
    keys: Tensor,
    gate: Tensor,
    prev_read: Tensor,
    prev_least_used: Tensor,
) -> tuple[Tensor, Tensor]:
    """Steps 1 and 2: the write weights (B, H, N) and the memory after writing (B, N, W).

    Args:
        memory: M_{t-1} (B, N, W).
        usage: w^u_{t-1} (B, N); its smallest slot is zeroed before the write.
        keys: k_t (B, H, W), written as well as used to read.
        gate: σ(α_t) (B, H), already squashed.
        prev_read: w^r_{t-1} (B, H, N).
        prev_least_used: w^lu_{t-1} (B, N).
    """
    gate = gate.unsqueeze(-1)
    write = gate * prev_read + (1 - gate) * prev_least_used.unsqueeze(1)
    keep = 1 - F.one_hot(usage.argmin(dim=-1), usage.shape[-1]).to(memory.dtype)
    return write, memory * keep.unsqueeze(-1) + write.transpose(1, 2) @ keys


@functools.cache
def compiled_cell() -> Callable[..., tuple[Tensor, MANNState]]:
    """:meth:`MANN._cell` compiled once per process, for shapes fixed in training (an eager
    step costs mostly per-operation overhead; the compiled one fuses the elementwise work)."""
    return torch.compile(MANN._cell, dynamic=False)


class ControllerWeights(NamedTuple):
    """The weights a step multiplies: the controller's first layer by what it multiplies,
    the inputs x_t (and the bias) and the recurrent inputs (h_{t-1} for an LSTM, then
    r_{t-1}: one matrix, so a step takes one product), and the heads' layer."""

    inputs: Tensor
    bias: Tensor
    recurrent: Tensor
    heads: Tensor


class DeferredWeightGradient(torch.autograd.Function):
    """Zeros (T, B, out) whose backward is the gradient of ``weight`` in ``F.linear(inputs[t],
    weight)`` summed over the steps t, as one product over all T * B rows.

    A step's products of size B = 16 run a matrix multiply far below its speed, and their
    weight gradients, taken per step, cost as much again; here ``forward`` multiplies by
    the detached weight and adds these zeros. ``inputs`` is a view of a buffer the loop fills
    after this call, so it is kept on ``ctx`` rather than saved (no version check)."""

    @staticmethod
    def forward(ctx: Any, weight: Tensor, inputs: Tensor) -> Tensor:
        ctx.inputs = inputs
        return weight.new_zeros(*inputs.shape[:-1], weight.shape[0])

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor, None]:
        return grad.flatten(0, -2).T @ ctx.inputs.flatten(0, -2), None


@dataclasses.dataclass(kw_only=True)
class MANNState(BackboneState):
    """The controller's state and the memory of a batch of sequences.

    Attributes:
        h, c: controller hidden and cell state (B, hidden_size); ``c`` is unused by an MLP.
        memory: M (B, N, W).
        usage: w^u (B, N).
        read_weights: w^r of the last step (B, H, N).
        least_used: w^lu of the last step (B, N).
        reads: r of the last step, heads concatenated (B, H * W).
    """

    h: Tensor
    c: Tensor
    memory: Tensor
    usage: Tensor
    read_weights: Tensor
    least_used: Tensor
    reads: Tensor

    def select(self, rows: Tensor) -> MANNState:
        tensors = ("h", "c", "memory", "usage", "read_weights", "least_used", "reads")
        return dataclasses.replace(
            self, batch_size=len(rows), **{name: getattr(self, name)[rows] for name in tensors}
        )


class MANN(SequenceBackbone[MANNState]):
    """A memory-augmented network as a sequence backbone: features (h_t, r_t).

    ``step`` returns new tensors (it never writes into the state), so it may run with
    gradients on, and ``forward`` is the same cell applied step by step.

    Args:
        input_size: width of one input vector.
        max_len: longest sequence accepted (memory itself has no limit).
        hidden_size: controller units.
        memory_slots: N.
        memory_width: W, the width of keys and slots.
        read_heads: H; also n, the number of least-used slots.
        gamma: usage decay γ.
        controller: ``lstm`` or ``mlp`` (one ReLU layer).
        key_strength: learn β per head (else β = 1, as in the paper).
        compile_step: run ``forward``'s step through ``torch.compile`` when gradients are on
            (training): one step is some forty small operations, which the compiler fuses.
            The same numbers; the first update pays the compilation (20–50 s on CPU, a few
            seconds from the disk cache after), and it needs a C++ compiler on CPU.
    """

    step_cost = 64.0  # a step is some forty small operations, for one sequence or many

    def __init__(
        self,
        input_size: int,
        max_len: int,
        hidden_size: int = 200,
        memory_slots: int = 128,
        memory_width: int = 40,
        read_heads: int = 4,
        gamma: float = 0.95,
        controller: str = "lstm",
        key_strength: bool = True,
        compile_step: bool = False,
    ) -> None:
        super().__init__(input_size, max_len)
        for name, value in (
            ("hidden_size", hidden_size),
            ("memory_slots", memory_slots),
            ("memory_width", memory_width),
            ("read_heads", read_heads),
        ):
            require_positive("MANN", name, value)
        if read_heads > memory_slots:
            raise ValueError(f"MANN: read_heads={read_heads} exceeds memory_slots={memory_slots}")
        if not 0.0 <= gamma <= 1.0:
            raise ValueError(f"MANN: gamma must lie in [0, 1], got {gamma!r}")
        if controller not in CONTROLLERS:
            raise ValueError(f"MANN: controller must be one of {CONTROLLERS}, got {controller!r}")
        self.hidden_size = hidden_size
        self.memory_slots, self.memory_width, self.read_heads = (
            memory_slots,
            memory_width,
            read_heads,
        )
        self.gamma = gamma
        self.key_strength = key_strength
        self.compile_step = compile_step
        width = input_size + read_heads * memory_width
        self.controller = (
            nn.LSTMCell(width, hidden_size)
            if controller == "lstm"
            else nn.Sequential(nn.Linear(width, hidden_size), nn.ReLU())
        )
        # per head: key (W), write gate α (1), key strength β (1)
        self.heads = nn.Linear(hidden_size, read_heads * (memory_width + 2))
        if key_strength:  # start sharp (β ≈ 10): one matching slot then outweighs 127 empty
            with torch.no_grad():  # ones (e^10 vs 127 e^0); at β ≈ 1.7 it would get 4%
                self.heads.bias.view(read_heads, -1)[:, -1] = INITIAL_STRENGTH
        self.output_size = hidden_size + read_heads * memory_width

    def initial_state(self, batch_size: int, max_len: int | None = None) -> MANNState:
        """Empty memory and zero usage; w^lu_0 marks the first H slots (ties go low)."""
        batch_size, max_len = self._state_size(batch_size, max_len)
        like = self._parameter_like()
        slots, heads = self.memory_slots, self.read_heads
        usage = like.new_zeros(batch_size, slots)
        return MANNState(
            batch_size=batch_size,
            max_len=max_len,
            h=like.new_zeros(batch_size, self.hidden_size),
            c=like.new_zeros(batch_size, self.hidden_size),
            memory=like.new_zeros(batch_size, slots, self.memory_width),
            usage=usage,
            read_weights=like.new_zeros(batch_size, heads, slots),
            least_used=least_used(usage, heads),
            reads=like.new_zeros(batch_size, heads * self.memory_width),
        )

    def _weights(self) -> ControllerWeights:
        """The weights split by what they multiply. ``forward`` takes the inputs'
        pre-activations for every step of a sequence in one matrix product (and their
        weight gradient in one more) instead of one small product per step: with raw 20×20
        pixels they are most of the controller's arithmetic. The slices are taken once per
        sequence, since each slice's backward fills a zero tensor the size of the whole
        weight."""
        split = self.input_size
        if isinstance(self.controller, nn.LSTMCell):
            cell = self.controller
            inputs, reads = cell.weight_ih[:, :split], cell.weight_ih[:, split:]
            recurrent = torch.cat([cell.weight_hh, reads], 1)
            return ControllerWeights(
                inputs, cell.bias_ih + cell.bias_hh, recurrent, self.heads.weight
            )
        linear = self.controller[0]
        weight = linear.weight
        return ControllerWeights(
            weight[:, :split], linear.bias, weight[:, split:], self.heads.weight
        )

    def _recurrent_inputs(self, features: Tensor) -> Tensor:
        """What the controller's recurrent weight multiplies, from the last step's features
        (h, r): both for an LSTM, the reads alone for an MLP."""
        if isinstance(self.controller, nn.LSTMCell):
            return features
        return features[..., self.hidden_size :]

    def _cell(
        self,
        x_part: Tensor,
        s: MANNState,
        weights: ControllerWeights,
        carriers: tuple[Tensor, Tensor] | None = None,
    ) -> tuple[Tensor, MANNState]:
        """One step of the equations in the module docstring from the inputs' share of the
        controller's pre-activations; returns the features and a new state. ``carriers``
        are this step's :class:`DeferredWeightGradient` zeros, added to the recurrent and
        the heads' products when ``weights`` holds those weights detached."""
        recurrent, heads = carriers if carriers is not None else (0.0, 0.0)
        previous = torch.cat([s.h, s.reads], -1)
        pre = x_part + F.linear(self._recurrent_inputs(previous), weights.recurrent) + recurrent
        if isinstance(self.controller, nn.LSTMCell):  # gates i, f, g, o
            i, f, g, o = pre.chunk(4, -1)
            c = torch.sigmoid(f) * s.c + torch.sigmoid(i) * torch.tanh(g)
            h = torch.sigmoid(o) * torch.tanh(c)
        else:
            h, c = F.relu(pre), s.c
        out = F.linear(h, weights.heads, self.heads.bias) + heads
        out = out.view(-1, self.read_heads, self.memory_width + 2)
        keys, alpha, beta = torch.tanh(out[..., :-2]), out[..., -2], out[..., -1]
        strength = 1 + F.softplus(beta) if self.key_strength else torch.ones_like(beta)
        write, memory = lrua_write(
            s.memory, s.usage, keys, torch.sigmoid(alpha), s.read_weights, s.least_used
        )
        read = cosine_attention(keys, memory, strength)  # (B, H, N)
        reads = (read @ memory).flatten(1)
        usage = self.gamma * s.usage + (read + write).sum(1)
        state = dataclasses.replace(
            s,
            h=h,
            c=c,
            memory=memory,
            usage=usage,
            read_weights=read,
            least_used=least_used(usage, self.read_heads),
            reads=reads,
        )
        return torch.cat([h, reads], -1), state

    def forward(self, x: Tensor) -> Tensor:
        """Features (B, T, output_size) of whole sequences (B, T, input_size), memory empty
        at t = 0. The recurrent and heads' weight gradients are taken once for the whole
        sequence (:class:`DeferredWeightGradient`), from the features each step writes into
        ``seen``."""
        self._check_sequence(x)
        batch, length = x.shape[:2]
        state = self.initial_state(batch, length)
        weights = self._weights()
        seen = x.new_zeros(length + 1, batch, self.output_size)  # features of steps -1..T-1
        recurrent = DeferredWeightGradient.apply(
            weights.recurrent, self._recurrent_inputs(seen[:-1])
        )
        heads = DeferredWeightGradient.apply(weights.heads, seen[1:, :, : self.hidden_size])
        detached = weights._replace(
            recurrent=weights.recurrent.detach(), heads=weights.heads.detach()
        )
        cell = compiled_cell() if self.compile_step and torch.is_grad_enabled() else MANN._cell
        features = []
        # unbind: one backward for all steps, where indexing step t fills a zero gradient
        # of the whole sequence at every step
        inputs = F.linear(x, weights.inputs, weights.bias).unbind(1)
        steps = zip(inputs, recurrent.unbind(0), heads.unbind(0), strict=True)
        for t, (x_part, *carriers) in enumerate(steps):
            y, state = cell(self, x_part, state, detached, tuple(carriers))
            seen[t + 1] = y.detach()
            features.append(y)
        return torch.stack(features, 1)

    def step(self, x: Tensor, state: MANNState) -> tuple[Tensor, MANNState]:
        """Features (B, output_size) of the next inputs (B, input_size) and the new state."""
        state.advance(x, self.input_size)
        weights = self._weights()
        return self._cell(F.linear(x, weights.inputs, weights.bias), state, weights)
