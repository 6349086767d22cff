import copy
import math

import numpy as np
import pytest
import torch

from metarl.backbones import MANN, check_backbone
from metarl.backbones.cosine_attention import cosine_attention
from metarl.backbones.mann import compiled_cell, least_used, lrua_write

# A 3-slot, 2-wide memory with one head, worked by hand (module docstring's steps 1-5).
MEMORY = [[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]]
USAGE = [0.5, 0.2, 0.9]  # slot 1 is least used: zeroed before the write
PREV_READ = [0.7, 0.2, 0.1]
PREV_LEAST_USED = [0.0, 1.0, 0.0]
GATE = 0.25  # σ(α)
KEY = [0.5, -0.5]
# w^w = 0.25 w^r + 0.75 w^lu
WRITE = [0.175, 0.05 + 0.75, 0.025]
# M_t = M_{t-1} with slot 1 zeroed, plus w^w(i) k
WRITTEN = [[1.0875, -0.0875], [0.4, -0.4], [1.0125, 0.9875]]
# cosine of k with each written slot, |k|^2 = 0.5
COSINE = [
    0.5875 / math.sqrt(0.5 * 1.1903125),
    0.4 / math.sqrt(0.5 * 0.32),
    0.0125 / math.sqrt(0.5 * 2.0003125),
]


def _softmax(values: list[float]) -> list[float]:
    exps = [math.exp(v) for v in values]
    return [e / sum(exps) for e in exps]


def test_lrua_write_by_hand() -> None:
    write, memory = lrua_write(
        torch.tensor([MEMORY]),
        torch.tensor([USAGE]),
        torch.tensor([[KEY]]),
        torch.tensor([[GATE]]),
        torch.tensor([[PREV_READ]]),
        torch.tensor([PREV_LEAST_USED]),
    )
    torch.testing.assert_close(write, torch.tensor([[WRITE]]))
    torch.testing.assert_close(memory, torch.tensor([WRITTEN]))


def test_content_read_by_hand() -> None:
    weights = cosine_attention(torch.tensor([[KEY]]), torch.tensor([WRITTEN]), torch.ones(1, 1))
    torch.testing.assert_close(weights, torch.tensor([[_softmax(COSINE)]]))
    sharper = cosine_attention(
        torch.tensor([[KEY]]), torch.tensor([WRITTEN]), torch.full((1, 1), 3.0)
    )
    torch.testing.assert_close(sharper, torch.tensor([[_softmax([3 * c for c in COSINE])]]))


def test_least_used_marks_n_smallest_with_ties_low() -> None:
    usage = torch.tensor([[0.3, 0.1, 0.3, 0.2], [0.0, 0.0, 0.0, 0.0]])
    expected = torch.tensor([[0.0, 1.0, 0.0, 1.0], [1.0, 1.0, 0.0, 0.0]])
    torch.testing.assert_close(least_used(usage, 2), expected)


def test_whole_step_by_hand() -> None:
    """The cell, with its head outputs pinned by the bias, reproduces the worked example
    including the usage and least-used update (γ = 0.95)."""
    mann = MANN(1, 4, hidden_size=3, memory_slots=3, memory_width=2, read_heads=1)
    mann.key_strength = False
    with torch.no_grad():
        mann.heads.weight.zero_()
        # key = tanh(b[:2]), σ(b[2]) = 0.25, b[3] unused when β = 1
        mann.heads.bias.copy_(torch.tensor([*np.arctanh(KEY), math.log(1 / 3), 0.0]))
    state = mann.initial_state(1)
    state.memory = torch.tensor([MEMORY])
    state.usage = torch.tensor([USAGE])
    state.read_weights = torch.tensor([[PREV_READ]])
    state.least_used = torch.tensor([PREV_LEAST_USED])
    with torch.no_grad():
        features, state = mann.step(torch.zeros(1, 1), state)
    read = _softmax(COSINE)
    usage = [0.95 * u + r + w for u, r, w in zip(USAGE, read, WRITE, strict=True)]
    torch.testing.assert_close(state.memory, torch.tensor([WRITTEN]))
    torch.testing.assert_close(state.read_weights, torch.tensor([[read]]))
    torch.testing.assert_close(state.usage, torch.tensor([usage]))
    smallest = int(np.argmin(usage))
    torch.testing.assert_close(state.least_used, torch.eye(3)[smallest].unsqueeze(0))
    expected_read = torch.tensor([read]) @ torch.tensor(WRITTEN)
    torch.testing.assert_close(features[:, 3:], expected_read)
    assert state.t == 1


@pytest.mark.parametrize("controller", ["lstm", "mlp"])
def test_mann_honours_the_backbone_interface(controller: str) -> None:
    torch.manual_seed(0)
    mann = MANN(5, 9, 8, memory_slots=6, memory_width=4, read_heads=2, controller=controller)
    check_backbone(mann.double(), atol=1e-10)


def test_memory_is_wiped_by_a_new_state_only() -> None:
    """A fresh state gives a sequence the same features whatever ran before (memory wiped
    between tasks); within one sequence the last output depends on the first input (memory
    kept across a trial's episodes)."""
    torch.manual_seed(1)
    mann = MANN(3, 12, hidden_size=8, memory_slots=5, memory_width=4, read_heads=1)
    first, second = torch.randn(2, 2, 12, 3)
    with torch.no_grad():
        state = mann.initial_state(2)
        for t in range(12):
            _, state = mann.step(first[:, t], state)
        assert state.memory.abs().sum() > 0
        state, fresh = mann.initial_state(2), []
        for t in range(12):
            y, state = mann.step(second[:, t], state)
            fresh.append(y)
        torch.testing.assert_close(torch.stack(fresh, 1), mann(second))
    x = second.clone().requires_grad_()
    (grad,) = torch.autograd.grad(mann(x)[:, -1].sum(), x)
    assert grad[:, 0].abs().sum() > 0


def test_gradients_match_finite_differences() -> None:
    torch.manual_seed(2)
    mann = MANN(3, 5, hidden_size=4, memory_slots=4, memory_width=3, read_heads=2).double()
    x = torch.randn(2, 5, 3, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda x: mann(x).sum(), (x,))


@pytest.mark.parametrize("controller", ["lstm", "mlp"])
def test_weight_gradients_taken_once_per_sequence_match_finite_differences(
    controller: str,
) -> None:
    """The recurrent and heads' weight gradients, summed over the steps in one product
    (``DeferredWeightGradient``), are the gradients of the whole sequence's features."""
    torch.manual_seed(4)
    mann = MANN(3, 4, 4, memory_slots=4, memory_width=3, read_heads=2, controller=controller)
    mann = mann.double()
    names, params = zip(*mann.named_parameters(), strict=True)
    x = torch.randn(2, 4, 3, dtype=torch.float64)
    weights = torch.randn(2, 4, mann.output_size, dtype=torch.float64)

    def features(*values: torch.Tensor) -> torch.Tensor:
        out = torch.func.functional_call(mann, dict(zip(names, values, strict=True)), (x,))
        return (out * weights).sum()

    inputs = tuple(p.detach().clone().requires_grad_() for p in params)
    assert torch.autograd.gradcheck(features, inputs)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"memory_slots": 0}, "memory_slots must be a positive integer"),
        ({"read_heads": 5, "memory_slots": 4}, "read_heads=5 exceeds memory_slots=4"),
        ({"gamma": 1.5}, "gamma must lie in"),
        ({"controller": "gru"}, "controller must be one of"),
    ],
)
def test_bad_settings_are_rejected(kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        MANN(3, 5, **kwargs)


@pytest.mark.parametrize("controller", ["lstm", "mlp"])
def test_the_controller_split_into_input_and_read_parts_is_torchs_cell(controller: str) -> None:
    """The controller's pre-activations, taken in two parts (the inputs' for the whole
    sequence at once, the reads' and hidden state's per step), give torch's own cell on
    (x_t, r_{t-1})."""
    torch.manual_seed(0)
    mann = MANN(5, 3, 8, memory_slots=6, memory_width=4, read_heads=2, controller=controller)
    mann = mann.double()
    state = mann.initial_state(3)
    state.reads = torch.randn(3, 8, dtype=torch.double)
    state.h, state.c = torch.randn(2, 3, 8, dtype=torch.double)
    x = torch.randn(3, 5, dtype=torch.double)
    features, new = mann.step(x, state)
    inputs = torch.cat([x, state.reads], -1)
    if controller == "lstm":
        h, c = mann.controller(inputs, (state.h, state.c))
        torch.testing.assert_close(new.c, c)
    else:
        h = mann.controller(inputs)
    torch.testing.assert_close(new.h, h)
    torch.testing.assert_close(features[:, :8], h)


def test_the_compiled_step_gives_the_eager_features_and_gradients() -> None:
    """``compile_step`` changes the cost of a training step, not its numbers (float64)."""
    torch.manual_seed(3)
    eager = MANN(3, 5, hidden_size=4, memory_slots=4, memory_width=3, read_heads=2).double()
    compiled = copy.deepcopy(eager)
    compiled.compile_step = True
    x = torch.randn(2, 5, 3, dtype=torch.float64)
    weights = torch.randn(2, 5, eager.output_size, dtype=torch.float64)
    results = []
    for mann in (eager, compiled):
        features = mann(x)
        (features * weights).sum().backward()
        results.append((features.detach(), [p.grad for p in mann.parameters()]))
    assert compiled_cell.cache_info().currsize == 1  # the compiled path ran
    torch.testing.assert_close(results[1][0], results[0][0])
    for compiled_grad, eager_grad in zip(results[1][1], results[0][1], strict=True):
        torch.testing.assert_close(compiled_grad, eager_grad)
