"""SNAIL: temporal convolutions and causal soft attention (Mishra et al. 2018, "A Simple
Neural Attentive Meta-Learner", ICLR).

Temporal-convolution (TC) blocks aggregate the whole past at high bandwidth; attention
blocks pinpoint single past steps. Every block appends its features to its input, so the
output holds the (projected) input and the features of every block.

Step-wise mode keeps one features row per sequence in which each block reads its input
channels and writes its own, and caches per block what later steps need: a dense block the
contribution of its lagged kernel tap (a ring of ``dilation`` rows, O(1) per step), an
attention block the past keys and values (O(t) per step).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from metarl.backbones.base import BackboneState, SequenceBackbone, input_projection
from metarl.config import require_positive


@dataclasses.dataclass(frozen=True)
class TCBlockSpec:
    """A TC block with ``filters`` channels per dense block: the paper's TCBlock(T, filters)."""

    filters: int


@dataclasses.dataclass(frozen=True)
class AttentionBlockSpec:
    """An attention block: the paper's AttentionBlock(key_size, value_size)."""

    key_size: int
    value_size: int


BlockSpec = TCBlockSpec | AttentionBlockSpec


def parse_block(text: str) -> BlockSpec:
    """``"tc FILTERS"`` or ``"attention KEY_SIZE VALUE_SIZE"`` (a config file's spelling) as
    a block spec; ValueError otherwise."""
    kind, *sizes = text.split()
    if kind == "tc" and len(sizes) == 1 and sizes[0].isdigit():
        return TCBlockSpec(int(sizes[0]))
    if kind == "attention" and len(sizes) == 2 and all(x.isdigit() for x in sizes):
        return AttentionBlockSpec(int(sizes[0]), int(sizes[1]))
    raise ValueError(f"not a SNAIL block: {text!r}")


# The paper's policy network for multi-armed bandits and tabular MDPs (appendix C).
DEFAULT_BLOCKS: tuple[BlockSpec, ...] = (
    TCBlockSpec(32),
    TCBlockSpec(32),
    AttentionBlockSpec(32, 32),
)


def _gated(pre: Tensor) -> Tensor:
    """WaveNet's gated activation tanh(a) * sigmoid(b), with a and b the halves of ``pre``."""
    a, b = pre.chunk(2, dim=-1)
    return torch.tanh(a) * torch.sigmoid(b)


def _gated_into(pre: Tensor, out: Tensor) -> None:
    """:func:`_gated` for step-wise inference, written into ``out``; overwrites ``pre``.

    Uses tanh(a) = 2 sigmoid(2a) - 1, so both halves take one sigmoid pass: on CPU, tanh
    costs about twice a sigmoid and this gate about 0.6 of the plain one at batch 1000.
    """
    a, b = pre.chunk(2, dim=-1)
    a.mul_(2)
    pre.sigmoid_()
    torch.addcmul(b.neg(), a, b, value=2, out=out)


class DenseBlock(nn.Module):
    """Causal dilated convolution of kernel size 2 with gated activation; its ``filters``
    output channels are appended to the input.

    The kernel's two taps form one matrix ``weight`` (in_channels, 4 * filters): columns
    [:2F] act on x_t, columns [2F:] on x_{t - dilation} (zero before the start); within each
    half, the first F feed tanh and the last F the sigmoid gate.

    Args:
        in_channels: input width C; the output has C + filters channels.
        filters: output channels F.
        dilation: lag, in steps, of the kernel's second tap.
    """

    def __init__(self, in_channels: int, filters: int, dilation: int) -> None:
        super().__init__()
        require_positive("DenseBlock", "in_channels", in_channels)
        require_positive("DenseBlock", "filters", filters)
        require_positive("DenseBlock", "dilation", dilation)
        self.in_channels = in_channels
        self.filters = filters
        self.dilation = dilation
        self.out_channels = in_channels + filters
        self.weight = nn.Parameter(torch.empty(in_channels, 4 * filters))
        self.bias = nn.Parameter(torch.empty(2 * filters))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """nn.Conv1d's default initialisation: uniform in +-1/sqrt(fan_in), fan_in = 2C."""
        bound = 1.0 / math.sqrt(2 * self.in_channels)
        nn.init.uniform_(self.weight, -bound, bound)
        nn.init.uniform_(self.bias, -bound, bound)

    def forward(self, x: Tensor) -> Tensor:
        """(B, T, C) -> (B, T, C + F).

        Only the first T - d steps' lagged taps are read (by steps d..T-1). Where that saves a
        quarter or more of them (4d >= T), they are a product of their own: trials that end
        early (mazes) leave the widest, most dilated layers reading little or nothing but
        padding. Below that one product of both taps is faster (measured on one CPU thread).
        """
        width, steps, lag = 2 * self.filters, x.shape[1], self.dilation
        if 4 * lag < steps:
            now, lagged = (x @ self.weight).chunk(2, dim=-1)
            pre = now + F.pad(lagged, (0, 0, lag, 0))[:, :steps]
        else:
            pre = x @ self.weight[:, :width]
            if lag < steps:
                pre = pre + F.pad(x[:, : steps - lag] @ self.weight[:, width:], (0, 0, lag, 0))
        return torch.cat([x, _gated(pre + self.bias)], dim=-1)

    def forward_last(self, x: Tensor, last: Tensor) -> tuple[Tensor, Tensor]:
        """:meth:`forward` of a prefix (B, P, C), and of M alternative next steps (B, M, C)
        each read as step P after that prefix: ((B, P, C + F), (B, M, C + F))."""
        width, steps = 2 * self.filters, x.shape[1]
        pre = last @ self.weight[:, :width] + self.bias
        if steps >= self.dilation:  # step P's lagged tap: step P - dilation of the prefix
            lagged = x[:, steps - self.dilation] @ self.weight[:, width:]
            pre = pre + lagged.unsqueeze(1)
        return self(x), torch.cat([last, _gated(pre)], dim=-1)

    def initial_cache(self, batch_size: int, max_len: int, like: Tensor) -> Tensor:
        """Ring of lagged-tap contributions (dilation, B, 2F); empty if no step reads one."""
        rows = self.dilation if self.dilation < max_len else 0
        return like.new_empty(rows, batch_size, 2 * self.filters)

    def step(self, features: Tensor, ring: Tensor, t: int, max_len: int) -> None:
        """Read step t's input from ``features[:, :C]``, write ours into the next F columns.

        Step t's lagged tap is computed only if step t + dilation < max_len will read it;
        before step ``dilation`` the lagged tap reads the zero padding, so adds nothing.
        """
        width = 2 * self.filters
        slot = t % self.dilation
        keep = t + self.dilation < max_len
        taps = features[:, : self.in_channels] @ (self.weight if keep else self.weight[:, :width])
        pre = taps[:, :width]
        if t >= self.dilation:
            pre.add_(ring[slot])
        if keep:
            ring[slot] = taps[:, width:]
        _gated_into(pre.add_(self.bias), features[:, self.in_channels : self.out_channels])


class TCBlock(nn.Module):
    """Dense blocks with dilations 1, 2, 4, ..., 2^(n-1), n = ceil(log2 seq_len) (at least 1).

    The receptive field, 2^n steps, covers a whole sequence. (The paper's pseudo-code starts
    at dilation 2; starting at 1 reaches every lag, not only the even ones.)

    Args:
        in_channels: input width C; the output has C + n * filters channels.
        seq_len: longest sequence T, which sets n.
        filters: output channels of each dense block.
    """

    def __init__(self, in_channels: int, seq_len: int, filters: int) -> None:
        super().__init__()
        require_positive("TCBlock", "in_channels", in_channels)
        require_positive("TCBlock", "seq_len", seq_len)
        require_positive("TCBlock", "filters", filters)
        layers = max(1, (seq_len - 1).bit_length())
        self.dense = nn.ModuleList(
            DenseBlock(in_channels + i * filters, filters, 2**i) for i in range(layers)
        )
        self.in_channels = in_channels
        self.out_channels = in_channels + layers * filters

    @property
    def dilations(self) -> list[int]:
        """The dense blocks' dilations, in order."""
        return [block.dilation for block in self.dense]

    def forward(self, x: Tensor) -> Tensor:
        """(B, T, C) -> (B, T, C + n * filters)."""
        for block in self.dense:
            x = block(x)
        return x

    def forward_last(self, x: Tensor, last: Tensor) -> tuple[Tensor, Tensor]:
        """:meth:`DenseBlock.forward_last` through every dense block."""
        for block in self.dense:
            x, last = block.forward_last(x, last)
        return x, last

    def initial_cache(self, batch_size: int, max_len: int, like: Tensor) -> list[Tensor]:
        """One ring per dense block."""
        return [block.initial_cache(batch_size, max_len, like) for block in self.dense]

    def step(self, features: Tensor, rings: list[Tensor], t: int, max_len: int) -> None:
        """Read step t's input from ``features[:, :C]``, write ours after it."""
        for block, ring in zip(self.dense, rings, strict=True):
            block.step(features, ring, t, max_len)


class AttentionBlock(nn.Module):
    """Causal single-head soft attention; the read is appended to the input.

    Step t attends to steps s <= t with weights softmax_s(q_t . k_s / sqrt(key_size)).

    Args:
        in_channels: input width C; the output has C + value_size channels.
        key_size: width of queries and keys.
        value_size: width of values, hence of the read.
    """

    def __init__(self, in_channels: int, key_size: int, value_size: int) -> None:
        super().__init__()
        require_positive("AttentionBlock", "in_channels", in_channels)
        require_positive("AttentionBlock", "key_size", key_size)
        require_positive("AttentionBlock", "value_size", value_size)
        self.in_channels = in_channels
        self.key_size = key_size
        self.value_size = value_size
        self.out_channels = in_channels + value_size
        self.query_key_value = nn.Linear(in_channels, 2 * key_size + value_size)

    def _split(self, x: Tensor) -> tuple[Tensor, ...]:
        return self.query_key_value(x).split([self.key_size, self.key_size, self.value_size], -1)

    def forward(self, x: Tensor) -> Tensor:
        """(B, T, C) -> (B, T, C + value_size)."""
        query, key, value = self._split(x)
        read = F.scaled_dot_product_attention(query, key, value, is_causal=True)
        return torch.cat([x, read], dim=-1)

    def forward_last(self, x: Tensor, last: Tensor) -> tuple[Tensor, Tensor]:
        """:meth:`forward` of a prefix (B, P, C), and of M alternative next steps (B, M, C),
        each attending to the prefix and to itself."""
        query, key, value = self._split(x)
        prefix = torch.cat(
            [x, F.scaled_dot_product_attention(query, key, value, is_causal=True)], dim=-1
        )
        q, k, v = self._split(last)
        logits = torch.cat([q @ key.transpose(1, 2), (q * k).sum(-1, keepdim=True)], dim=-1)
        weights = torch.softmax(logits * self.key_size**-0.5, dim=-1)
        steps = x.shape[1]
        read = weights[..., :steps] @ value + weights[..., steps:] * v
        return prefix, torch.cat([last, read], dim=-1)

    def initial_cache(self, batch_size: int, max_len: int, like: Tensor) -> tuple[Tensor, Tensor]:
        """Keys (B, max_len, key_size) and values (B, max_len, value_size); row s set at step s."""
        return (
            like.new_empty(batch_size, max_len, self.key_size),
            like.new_empty(batch_size, max_len, self.value_size),
        )

    def step(self, features: Tensor, cache: tuple[Tensor, Tensor], t: int, max_len: int) -> None:
        """Read step t's input from ``features[:, :C]``, write the read after it.

        (``max_len`` is unused: every step's key and value are kept.)
        """
        query, key, value = self._split(features[:, : self.in_channels])
        keys, values = cache
        keys[:, t] = key
        values[:, t] = value
        logits = torch.bmm(keys[:, : t + 1], query.unsqueeze(-1)).squeeze(-1)
        weights = torch.softmax(logits.mul_(self.key_size**-0.5), dim=-1)
        read = torch.bmm(weights.unsqueeze(1), values[:, : t + 1]).squeeze(1)
        features[:, self.in_channels : self.out_channels] = read


@dataclasses.dataclass(kw_only=True)
class SNAILState(BackboneState):
    """SNAIL's step-wise caches, preallocated and updated in place.

    Per sequence, a TC block holds 2F floats for each of its dilations below max_len, and an
    attention block (key_size + value_size) * max_len floats: about 390 kB for the default
    SNAIL at max_len = 500, 10 kB at max_len = 10.

    Attributes:
        caches: one per block, in order: a TC block's list of rings, an attention block's
            (keys, values).
    """

    caches: list[list[Tensor] | tuple[Tensor, Tensor]]

    def select(self, rows: Tensor) -> SNAILState:
        caches = [
            [ring[:, rows] for ring in cache]  # a TC block's rings (dilation, B, 2F)
            if isinstance(cache, list)
            else (cache[0][rows], cache[1][rows])  # an attention block's keys and values
            for cache in self.caches
        ]
        return dataclasses.replace(self, batch_size=len(rows), caches=caches)


class SNAIL(SequenceBackbone[SNAILState]):
    """SNAIL as a sequence backbone: an optional linear input projection, then TC and
    attention blocks as listed. Heads (policy, value, classifier) are not part of it.

    The default is the paper's policy network for bandits and tabular MDPs: a 32-unit
    projection, TCBlock(T, 32), TCBlock(T, 32), AttentionBlock(32, 32).

    Args:
        input_size: width of one input vector.
        max_len: longest sequence T; sets the depth of every TC block.
        blocks: the blocks, in order, as :class:`TCBlockSpec` / :class:`AttentionBlockSpec`.
        projection_size: width of the linear input projection; ``None`` feeds the input as is.
    """

    step_cost = 1.0  # convolutions and attention over the whole sequence at once

    def __init__(
        self,
        input_size: int,
        max_len: int,
        blocks: Sequence[BlockSpec] = DEFAULT_BLOCKS,
        projection_size: int | None = 32,
    ) -> None:
        super().__init__(input_size, max_len)
        self.projection = input_projection("SNAIL", input_size, projection_size)
        width = input_size if projection_size is None else projection_size
        self._embedding_size = width
        kinds = "TCBlockSpec or AttentionBlockSpec"
        if not blocks:
            raise ValueError(f"SNAIL: blocks must list at least one {kinds}")
        layers: list[TCBlock | AttentionBlock] = []
        for spec in blocks:
            if isinstance(spec, TCBlockSpec):
                layers.append(TCBlock(width, max_len, spec.filters))
            elif isinstance(spec, AttentionBlockSpec):
                layers.append(AttentionBlock(width, spec.key_size, spec.value_size))
            else:
                raise ValueError(f"SNAIL: unknown block spec {spec!r}; expected a {kinds}")
            width = layers[-1].out_channels
        self.blocks = nn.ModuleList(layers)
        self.output_size = width

    def forward(self, x: Tensor) -> Tensor:
        """Features (B, T, output_size) of whole sequences (B, T, input_size)."""
        self._check_sequence(x)
        h = self.projection(x)
        for block in self.blocks:
            h = block(h)
        return h

    def forward_last(self, prefix: Tensor, last: Tensor) -> Tensor:
        """Features (B, M, output_size) at the last step of M sequences per row that share
        the prefix (B, P, input_size) and end in ``last`` (B, M, input_size): equal to
        ``forward(cat([prefix, last[:, m:m+1]], 1))[:, -1]`` for each m, with the prefix
        computed once (causality: no prefix step sees what follows it)."""
        self._check_sequence(torch.cat([prefix, last[:, :1]], 1))
        h, step = self.projection(prefix), self.projection(last)
        for block in self.blocks:
            h, step = block.forward_last(h, step)
        return step

    def initial_state(self, batch_size: int, max_len: int | None = None) -> SNAILState:
        """Empty caches for ``batch_size`` sequences of at most ``max_len`` steps."""
        batch_size, max_len = self._state_size(batch_size, max_len)
        like = self._parameter_like()
        caches = [block.initial_cache(batch_size, max_len, like) for block in self.blocks]
        return SNAILState(batch_size=batch_size, max_len=max_len, caches=caches)

    def step(self, x: Tensor, state: SNAILState) -> tuple[Tensor, SNAILState]:
        """Features (B, output_size) of the next inputs (B, input_size); updates ``state``.

        The caches are written in place, so this cannot be differentiated: call it under
        ``torch.no_grad()`` or ``torch.inference_mode()``, and train with :meth:`forward`.
        """
        if torch.is_grad_enabled():
            raise RuntimeError(
                "SNAIL.step updates its caches in place and cannot be differentiated: call it "
                "under torch.no_grad() or torch.inference_mode(), and train with forward()"
            )
        t = state.advance(x, self.input_size)
        like = self._parameter_like()
        features = like.new_empty(state.batch_size, self.output_size)
        features[:, : self._embedding_size] = self.projection(x)
        for block, cache in zip(self.blocks, state.caches, strict=True):
            block.step(features, cache, t, state.max_len)
        return features, state
