"""LSTM backbone (RL²): causality, step-wise state == full forward, errors."""

from __future__ import annotations

import pytest
import torch

from metarl.backbones import LSTMBackbone, build_backbone, check_backbone


@pytest.fixture(autouse=True)
def _seed() -> None:
    torch.manual_seed(0)


@pytest.mark.parametrize("batch_size", [1, 4, 32])
@pytest.mark.parametrize(
    "kwargs",
    [{"hidden_size": 16}, {"hidden_size": 8, "num_layers": 2, "projection_size": 6}],
)
def test_causal_and_step_matches_forward(batch_size: int, kwargs: dict) -> None:
    check_backbone(LSTMBackbone(5, 12, **kwargs), batch_size=batch_size)


def test_sizes_and_optional_projection() -> None:
    plain = LSTMBackbone(5, 12)
    assert plain.output_size == 256 and plain.lstm.input_size == 5
    assert isinstance(plain.projection, torch.nn.Identity)
    projected = LSTMBackbone(5, 12, hidden_size=8, projection_size=3)
    assert projected.output_size == 8 and projected.lstm.input_size == 3
    assert projected(torch.randn(2, 7, 5)).shape == (2, 7, 8)


def test_step_with_gradients_matches_forward_gradients() -> None:
    model = LSTMBackbone(4, 6, hidden_size=8, projection_size=5)
    x = torch.randn(3, 6, 4)
    model(x).sum().backward()
    expected = [p.grad.clone() for p in model.parameters()]
    model.zero_grad()
    state = model.initial_state(3)
    total = sum(model.step(x[:, t], state)[0].sum() for t in range(6))
    total.backward()
    for parameter, grad in zip(model.parameters(), expected, strict=True):
        torch.testing.assert_close(parameter.grad, grad, atol=1e-5, rtol=1e-4)


def test_state_lasts_max_len_steps_then_fails_clearly() -> None:
    model = LSTMBackbone(4, 3, hidden_size=8)
    with torch.no_grad():
        state = model.initial_state(2)
        for _ in range(3):
            _, state = model.step(torch.randn(2, 4), state)
        with pytest.raises(RuntimeError, match="state is full.*max_len=3"):
            model.step(torch.randn(2, 4), state)
    with pytest.raises(ValueError, match="exceeds the backbone's max_len=3"):
        model.initial_state(2, max_len=4)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"input_size": 0}, "LSTMBackbone: input_size must be a positive integer, got 0"),
        ({"max_len": 0}, "LSTMBackbone: max_len must be a positive integer, got 0"),
        ({"hidden_size": -1}, "hidden_size must be a positive integer, got -1"),
        ({"num_layers": 0}, "num_layers must be a positive integer, got 0"),
        ({"projection_size": 0}, "projection_size must be a positive integer, got 0"),
    ],
)
def test_bad_constructor_arguments_raise_value_error(kwargs: dict, message: str) -> None:
    arguments = {"input_size": 4, "max_len": 5, **kwargs}
    with pytest.raises(ValueError, match=message):
        LSTMBackbone(**arguments)


def test_build_backbone_makes_an_lstm() -> None:
    model = build_backbone("lstm", input_size=6, max_len=10, hidden_size=16)
    assert isinstance(model, LSTMBackbone)
    assert (model.input_size, model.max_len, model.output_size) == (6, 10, 16)
