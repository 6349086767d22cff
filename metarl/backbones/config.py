"""The ``model:`` section of black-box experiments: which sequence backbone, and its sizes.

One section serves every mode (bandit and maze policies, Santoro's online classifier), so a
config switches SNAIL, LSTM and MANN with ``--set model.backbone=...``.
"""

from __future__ import annotations

import dataclasses

from metarl.backbones import BACKBONES, SequenceBackbone, build_backbone, parse_block
from metarl.backbones.mann import CONTROLLERS
from metarl.config import require, require_positive_ints


@dataclasses.dataclass
class ModelConfig:
    """The sequence backbone (heads are linear and belong to the agent).

    Attributes:
        backbone: ``snail``, ``lstm`` or ``mann``.
        projection_size: width of the input projection (0: none; snail and lstm).
        blocks: SNAIL's blocks in order, each ``"tc FILTERS"`` or ``"attention KEY VALUE"``.
        hidden_size: LSTM units, or MANN's controller units.
        layers: stacked LSTM layers (lstm only).
        memory_slots, memory_width, read_heads: MANN's N, W and H.
        gamma: MANN's usage decay.
        controller: MANN's controller, ``lstm`` or ``mlp``.
        key_strength: MANN learns a key strength β per read (else β = 1, as Santoro et al.).
        compile_step: MANN's training step through ``torch.compile`` (snail and lstm run
            fused kernels already and ignore it).
    """

    backbone: str = "snail"
    projection_size: int = 32
    blocks: list[str] = dataclasses.field(
        default_factory=lambda: ["tc 32", "tc 32", "attention 32 32"]
    )
    hidden_size: int = 64
    layers: int = 1
    memory_slots: int = 128
    memory_width: int = 40
    read_heads: int = 4
    gamma: float = 0.95
    controller: str = "lstm"
    key_strength: bool = True
    compile_step: bool = False

    def __post_init__(self) -> None:
        require(
            self.backbone in BACKBONES,
            "model.backbone",
            self.backbone,
            " or ".join(repr(k) for k in BACKBONES),
        )
        require(
            self.projection_size >= 0,
            "model.projection_size",
            self.projection_size,
            "an integer >= 0",
        )
        for i, text in enumerate(self.blocks):
            try:
                parse_block(text)
            except ValueError:
                require(
                    False,
                    f"model.blocks[{i}]",
                    text,
                    "'tc FILTERS' or 'attention KEY_SIZE VALUE_SIZE'",
                )
        require(len(self.blocks) >= 1, "model.blocks", self.blocks, "at least one block")
        keys = ("hidden_size", "layers", "memory_slots", "memory_width", "read_heads")
        require_positive_ints(self, "model", keys)
        require(
            self.read_heads <= self.memory_slots,
            "model.read_heads",
            self.read_heads,
            f"at most model.memory_slots ({self.memory_slots})",
        )
        require(0 <= self.gamma <= 1, "model.gamma", self.gamma, "a number in [0, 1]")
        require(
            self.controller in CONTROLLERS,
            "model.controller",
            self.controller,
            " or ".join(repr(k) for k in CONTROLLERS),
        )

    def build(self, input_size: int, max_len: int) -> SequenceBackbone:
        """The backbone for inputs of ``input_size`` and sequences of at most ``max_len``."""
        projection = self.projection_size or None
        if self.backbone == "snail":
            blocks = [parse_block(b) for b in self.blocks]
            return build_backbone(
                "snail", input_size, max_len, blocks=blocks, projection_size=projection
            )
        if self.backbone == "mann":
            return build_backbone(
                "mann",
                input_size,
                max_len,
                hidden_size=self.hidden_size,
                memory_slots=self.memory_slots,
                memory_width=self.memory_width,
                read_heads=self.read_heads,
                gamma=self.gamma,
                controller=self.controller,
                key_strength=self.key_strength,
                compile_step=self.compile_step,
            )
        return build_backbone(
            "lstm",
            input_size,
            max_len,
            hidden_size=self.hidden_size,
            num_layers=self.layers,
            projection_size=projection,
        )
