"""Sequence backbones for black-box meta-learners, behind one interface and one factory."""

from __future__ import annotations

from typing import Any

from metarl.backbones.base import BackboneState, SequenceBackbone, check_backbone
from metarl.backbones.conv4 import Conv4
from metarl.backbones.lstm import LSTMBackbone, LSTMState
from metarl.backbones.mann import MANN, MANNState
from metarl.backbones.snail import (
    DEFAULT_BLOCKS,
    SNAIL,
    AttentionBlock,
    AttentionBlockSpec,
    BlockSpec,
    DenseBlock,
    SNAILState,
    TCBlock,
    TCBlockSpec,
    parse_block,
)

BACKBONES: dict[str, type[SequenceBackbone]] = {"lstm": LSTMBackbone, "mann": MANN, "snail": SNAIL}


def build_backbone(kind: str, input_size: int, max_len: int, **kwargs: Any) -> SequenceBackbone:
    """Build the backbone named ``kind`` (a key of ``BACKBONES``); ``kwargs`` go to its class."""
    if kind not in BACKBONES:
        raise ValueError(f"unknown backbone kind {kind!r}; valid kinds: {', '.join(BACKBONES)}")
    return BACKBONES[kind](input_size=input_size, max_len=max_len, **kwargs)


__all__ = [
    "BACKBONES",
    "DEFAULT_BLOCKS",
    "SNAIL",
    "AttentionBlock",
    "AttentionBlockSpec",
    "BackboneState",
    "BlockSpec",
    "Conv4",
    "DenseBlock",
    "LSTMBackbone",
    "LSTMState",
    "MANN",
    "MANNState",
    "SNAILState",
    "SequenceBackbone",
    "TCBlock",
    "TCBlockSpec",
    "build_backbone",
    "check_backbone",
    "parse_block",
]
