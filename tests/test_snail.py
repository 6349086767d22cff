"""SNAIL backbone: architecture, causality, step-wise cache == full forward, errors."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from metarl.backbones import (
    SNAIL,
    AttentionBlock,
    AttentionBlockSpec,
    DenseBlock,
    SNAILState,
    TCBlock,
    TCBlockSpec,
    build_backbone,
    check_backbone,
)

MIXED = (AttentionBlockSpec(4, 3), TCBlockSpec(5), AttentionBlockSpec(6, 2), TCBlockSpec(3))


@pytest.fixture(autouse=True)
def _seed() -> None:
    torch.manual_seed(0)


def test_default_is_the_papers_bandit_policy_network() -> None:
    model = SNAIL(input_size=12, max_len=10)
    assert isinstance(model.projection, torch.nn.Linear)
    assert model.projection.out_features == 32
    assert [type(b) for b in model.blocks] == [TCBlock, TCBlock, AttentionBlock]
    assert [b.dense[0].filters for b in model.blocks[:2]] == [32, 32]
    attention = model.blocks[2]
    assert (attention.key_size, attention.value_size) == (32, 32)
    # 32 projected + 4 dense blocks x 32 filters in each TC block + a 32-wide read
    assert model.output_size == 32 + 4 * 32 + 4 * 32 + 32
    assert SNAIL(12, 500).output_size == 32 + 9 * 32 + 9 * 32 + 32


@pytest.mark.parametrize(
    ("seq_len", "dilations"),
    [
        (1, [1]),
        (2, [1]),
        (3, [1, 2]),
        (10, [1, 2, 4, 8]),
        (16, [1, 2, 4, 8]),
        (17, [1, 2, 4, 8, 16]),
        (500, [1, 2, 4, 8, 16, 32, 64, 128, 256]),
    ],
)
def test_tc_block_dilations_double_up_to_ceil_log2_seq_len(seq_len: int, dilations: list) -> None:
    block = TCBlock(in_channels=3, seq_len=seq_len, filters=2)
    assert block.dilations == dilations
    assert block.out_channels == 3 + 2 * len(dilations)


@pytest.mark.parametrize("seq_len", [2, 10, 16, 17])
def test_tc_block_sees_the_whole_sequence(seq_len: int) -> None:
    model = SNAIL(3, seq_len, blocks=[TCBlockSpec(4)], projection_size=None)
    x = torch.randn(2, seq_len, 3, requires_grad=True)
    model(x)[:, -1, 3:].sum().backward()  # the TC block's own channels, at the last step
    assert (x.grad[:, 0] != 0).any(), "the first input is outside the receptive field"


@pytest.mark.parametrize(
    ("kwargs", "expected"),
    [
        ({"blocks": [TCBlockSpec(4)], "projection_size": None}, 5 + 3 * 4),
        ({"blocks": [AttentionBlockSpec(8, 3)], "projection_size": 7}, 7 + 3),
        ({"blocks": MIXED, "projection_size": 6}, 6 + 3 + 3 * 5 + 2 + 3 * 3),
    ],
)
def test_output_size_counts_every_appended_channel(kwargs: dict, expected: int) -> None:
    model = SNAIL(5, 8, **kwargs)
    assert model.output_size == expected
    assert model(torch.randn(2, 8, 5)).shape == (2, 8, expected)


@pytest.mark.parametrize("batch_size", [1, 4, 32])
@pytest.mark.parametrize(
    ("max_len", "kwargs"),
    [(10, {}), (1, {}), (17, {"blocks": MIXED, "projection_size": 6})],
)
def test_causal_and_step_matches_forward(batch_size: int, max_len: int, kwargs: dict) -> None:
    check_backbone(SNAIL(5, max_len, **kwargs), batch_size=batch_size)


def test_step_matches_forward_on_sequences_shorter_than_max_len() -> None:
    check_backbone(SNAIL(5, 40, blocks=MIXED), batch_size=3, seq_len=7)


def test_step_matches_forward_exactly_in_float64() -> None:
    check_backbone(SNAIL(5, 12, blocks=MIXED).double(), batch_size=4, atol=1e-12)


def test_check_backbone_catches_a_future_leak_and_a_step_mismatch() -> None:
    class PeeksAhead(SNAIL):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return super().forward(x.roll(-1, dims=1))

    class SteppedWrong(SNAIL):
        def step(self, x: torch.Tensor, state: SNAILState) -> tuple[torch.Tensor, SNAILState]:
            features, state = super().step(x, state)
            return features + 1e-3, state

    with pytest.raises(AssertionError, match="depends on later inputs"):
        check_backbone(PeeksAhead(4, 6))
    with pytest.raises(AssertionError, match="differs from forward"):
        check_backbone(SteppedWrong(4, 6))


@pytest.mark.parametrize("prefix", [1, 2, 7, 16])
def test_forward_last_equals_forward_on_each_whole_sequence(prefix: int) -> None:
    """The shared-prefix path (one sequence per few-shot query) against the plain forward,
    values and gradients, in float64; dilations 1 to 16 read inside and before the prefix."""
    model = SNAIL(5, 17, blocks=MIXED).double()
    shared = torch.randn(3, prefix, 5, dtype=torch.float64, requires_grad=True)
    last = torch.randn(3, 4, 5, dtype=torch.float64, requires_grad=True)
    fast = model.forward_last(shared, last)
    whole = torch.stack(
        [model(torch.cat([shared, last[:, m : m + 1]], 1))[:, -1] for m in range(4)], 1
    )
    torch.testing.assert_close(fast, whole, rtol=0, atol=1e-12)
    weights = torch.randn_like(fast)
    grads = [torch.autograd.grad((out * weights).sum(), [shared, last]) for out in (fast, whole)]
    for a, b in zip(*grads, strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-12)


def test_every_parameter_gets_a_gradient() -> None:
    model = SNAIL(5, 12, blocks=MIXED)
    model(torch.randn(3, 12, 5)).square().sum().backward()
    for name, parameter in model.named_parameters():
        assert parameter.grad is not None and parameter.grad.abs().sum() > 0, name


def test_state_lasts_max_len_steps_then_fails_clearly() -> None:
    model = SNAIL(4, 5)
    with torch.no_grad():
        state = model.initial_state(batch_size=2)
        for _ in range(5):
            _, state = model.step(torch.randn(2, 4), state)
        with pytest.raises(RuntimeError, match="state is full.*max_len=5"):
            model.step(torch.randn(2, 4), state)
        short = model.initial_state(2, max_len=3)
        for _ in range(3):
            _, short = model.step(torch.randn(2, 4), short)
        with pytest.raises(RuntimeError, match="max_len=3"):
            model.step(torch.randn(2, 4), short)
    with pytest.raises(ValueError, match="exceeds the backbone's max_len=5"):
        model.initial_state(2, max_len=6)


def test_step_refuses_to_run_with_gradients_on() -> None:
    model = SNAIL(4, 5)
    state = model.initial_state(2)
    with pytest.raises(RuntimeError, match=r"torch\.no_grad\(\)"):
        model.step(torch.randn(2, 4), state)
    with torch.inference_mode():
        state = model.initial_state(2)
        features, state = model.step(torch.randn(2, 4), state)
    assert features.shape == (2, model.output_size) and state.t == 1


def test_inputs_of_the_wrong_shape_are_rejected() -> None:
    model = SNAIL(4, 5)
    with pytest.raises(ValueError, match=r"\(B, T, 4\) with 1 <= T <= max_len=5"):
        model(torch.randn(2, 6, 4))
    with pytest.raises(ValueError, match=r"\(B, T, 4\)"):
        model(torch.randn(2, 4))
    with torch.no_grad(), pytest.raises(ValueError, match=r"shape \(2, 4\)"):
        model.step(torch.randn(3, 4), model.initial_state(2))


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"input_size": 0}, "SNAIL: input_size must be a positive integer, got 0"),
        ({"max_len": 0}, "SNAIL: max_len must be a positive integer, got 0"),
        ({"max_len": 2.5}, "max_len must be a positive integer, got 2.5"),
        ({"projection_size": -3}, "projection_size must be a positive integer, got -3"),
        ({"blocks": []}, "at least one"),
        ({"blocks": [TCBlockSpec(0)]}, "TCBlock: filters must be a positive integer, got 0"),
        ({"blocks": [AttentionBlockSpec(4, 0)]}, "value_size must be a positive integer"),
        ({"blocks": ["tc"]}, "unknown block spec 'tc'"),
    ],
)
def test_bad_constructor_arguments_raise_value_error(kwargs: dict, message: str) -> None:
    arguments = {"input_size": 4, "max_len": 5, **kwargs}
    with pytest.raises(ValueError, match=message):
        SNAIL(**arguments)


def test_bad_block_arguments_raise_value_error() -> None:
    with pytest.raises(ValueError, match="DenseBlock: dilation must be a positive integer"):
        DenseBlock(4, 4, dilation=0)
    with pytest.raises(ValueError, match="AttentionBlock: key_size"):
        AttentionBlock(4, key_size=0, value_size=4)
    with pytest.raises(ValueError, match="initial_state: batch_size"):
        SNAIL(4, 5).initial_state(0)


def test_build_backbone_makes_a_snail_and_names_valid_kinds_otherwise() -> None:
    model = build_backbone("snail", input_size=6, max_len=10, projection_size=16)
    assert isinstance(model, SNAIL)
    assert (model.input_size, model.max_len, model.output_size) == (6, 10, 16 + 128 + 128 + 32)
    with pytest.raises(
        ValueError, match="unknown backbone kind 'gru'; valid kinds: lstm, mann, snail"
    ):
        build_backbone("gru", input_size=6, max_len=10)


@pytest.mark.parametrize(("dilation", "steps"), [(1, 9), (2, 9), (3, 9), (8, 9), (9, 9), (16, 9)])
def test_dense_block_is_a_gated_causal_dilated_convolution(dilation: int, steps: int) -> None:
    """Against ``conv1d`` of kernel 2 on the input padded with ``dilation`` zeros, in float64:
    output and gradients, on each side of where the lagged tap becomes its own product."""
    block = DenseBlock(3, 2, dilation).double()
    x = torch.randn(2, steps, 3, dtype=torch.float64, requires_grad=True)
    kernel = torch.stack([block.weight[:, 4:].T, block.weight[:, :4].T], -1)  # (2F, C, [lag, now])
    pre = F.conv1d(F.pad(x.transpose(1, 2), (dilation, 0)), kernel, block.bias, dilation=dilation)
    a, b = pre.transpose(1, 2).chunk(2, dim=-1)
    expected = torch.cat([x, torch.tanh(a) * torch.sigmoid(b)], dim=-1)
    out = block(x)
    torch.testing.assert_close(out, expected, rtol=0, atol=1e-12)
    grads = torch.autograd.grad((out * out).sum(), [x, block.weight, block.bias])
    ref = torch.autograd.grad((expected * expected).sum(), [x, block.weight, block.bias])
    for got, want in zip(grads, ref, strict=True):
        torch.testing.assert_close(got, want, rtol=0, atol=1e-12)
