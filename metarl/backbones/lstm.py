"""An LSTM sequence backbone: the memory of RL² (Duan et al. 2016, "RL²: Fast Reinforcement
Learning via Slow Reinforcement Learning"; Wang et al. 2016, "Learning to reinforcement
learn"), and the recurrent baseline for SNAIL."""

from __future__ import annotations

import dataclasses

from torch import Tensor, nn

from metarl.backbones.base import BackboneState, SequenceBackbone, input_projection
from metarl.config import require_positive


@dataclasses.dataclass(kw_only=True)
class LSTMState(BackboneState):
    """The LSTM's hidden and cell states, each (num_layers, B, hidden_size), zero at t = 0."""

    h: Tensor
    c: Tensor

    def select(self, rows: Tensor) -> LSTMState:
        return dataclasses.replace(self, batch_size=len(rows), h=self.h[:, rows], c=self.c[:, rows])


class LSTMBackbone(SequenceBackbone[LSTMState]):
    """An optional linear input projection, then a (stacked) LSTM; features are its last
    layer's hidden states.

    ``step`` replaces the state's tensors rather than writing into them, so unlike SNAIL's it
    may run with gradients on (backpropagation through time, step by step).

    Args:
        input_size: width of one input vector.
        max_len: longest sequence accepted (the LSTM itself has no limit; the bound keeps it
            interchangeable with SNAIL).
        hidden_size: LSTM units per layer, hence ``output_size``.
        num_layers: stacked LSTM layers.
        projection_size: width of the linear input projection; ``None`` feeds the input as is.
    """

    def __init__(
        self,
        input_size: int,
        max_len: int,
        hidden_size: int = 256,
        num_layers: int = 1,
        projection_size: int | None = None,
    ) -> None:
        super().__init__(input_size, max_len)
        require_positive("LSTMBackbone", "hidden_size", hidden_size)
        require_positive("LSTMBackbone", "num_layers", num_layers)
        self.projection = input_projection("LSTMBackbone", input_size, projection_size)
        width = input_size if projection_size is None else projection_size
        self.lstm = nn.LSTM(width, hidden_size, num_layers, batch_first=True)
        self.output_size = hidden_size

    def forward(self, x: Tensor) -> Tensor:
        """Features (B, T, hidden_size) of whole sequences (B, T, input_size)."""
        self._check_sequence(x)
        features, _ = self.lstm(self.projection(x))
        return features

    def initial_state(self, batch_size: int, max_len: int | None = None) -> LSTMState:
        """Zero (h, c) for ``batch_size`` sequences of at most ``max_len`` steps."""
        batch_size, max_len = self._state_size(batch_size, max_len)
        like = self._parameter_like()
        shape = (self.lstm.num_layers, batch_size, self.lstm.hidden_size)
        return LSTMState(
            batch_size=batch_size, max_len=max_len, h=like.new_zeros(shape), c=like.new_zeros(shape)
        )

    def step(self, x: Tensor, state: LSTMState) -> tuple[Tensor, LSTMState]:
        """Features (B, hidden_size) of the next inputs (B, input_size); updates ``state``."""
        state.advance(x, self.input_size)
        features, (state.h, state.c) = self.lstm(
            self.projection(x).unsqueeze(1), (state.h, state.c)
        )
        return features.squeeze(1), state
