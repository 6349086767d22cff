import pytest
import torch
import torch.nn.functional as F
from torch import nn

from metarl.backbones import Conv4
from metarl.learners.maml import MAML, DivergenceError, Reptile, prototype_head
from metarl.learners.maml_classifier import MAMLClassifier
from metarl.learners.protonet import prototypes, squared_distances


def small_regression(seed=0):
    g = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    net = nn.Sequential(nn.Linear(2, 4), nn.Tanh(), nn.Linear(4, 1)).double()
    xs, xq = torch.randn(6, 2, generator=g).double(), torch.randn(5, 2, generator=g).double()
    ys, yq = xs.sum(1, keepdim=True).sin(), xq.sum(1, keepdim=True).sin()
    return net, (xs, ys), (xq, yq)


def meta_loss(maml, support, query, params=None):
    xs, ys = support
    phi = maml.adapt(lambda p: F.mse_loss(maml(p, xs), ys), params)
    return F.mse_loss(maml(phi, query[0]), query[1])


@pytest.mark.parametrize("steps", [1, 3])
def test_second_order_meta_gradient_matches_finite_differences(steps):
    net, support, query = small_regression()
    maml = MAML(net, inner_lr=0.3, steps=steps)
    theta = maml.meta_params()
    exact = torch.autograd.grad(meta_loss(maml, support, query), list(theta.values()))
    eps = 1e-6
    for (name, p), grad in zip(theta.items(), exact, strict=True):
        numeric = torch.zeros_like(p)
        for i in range(p.numel()):
            shifted = []
            for sign in (1, -1):
                moved = {k: v.detach().clone() for k, v in theta.items()}
                moved[name].view(-1)[i] += sign * eps
                shifted.append(meta_loss(maml, support, query, moved).item())
            numeric.view(-1)[i] = (shifted[0] - shifted[1]) / (2 * eps)
        error = (grad - numeric).norm() / numeric.norm()
        assert error <= 1e-4, (name, error)


def test_first_order_is_second_order_without_the_hessian_term():
    net, support, query = small_regression(1)
    first = MAML(net, inner_lr=0.3, steps=2, first_order=True)
    second = MAML(net, inner_lr=0.3, steps=2)
    theta = list(net.parameters())
    fo = torch.autograd.grad(meta_loss(first, support, query), theta)
    so = torch.autograd.grad(meta_loss(second, support, query), theta)
    # by hand: the query gradient taken at φ_2, with φ_2 computed as plain numbers
    phi = {k: v.detach().requires_grad_() for k, v in net.named_parameters()}
    for _ in range(2):
        loss = F.mse_loss(second(phi, support[0]), support[1])
        grads = torch.autograd.grad(loss, list(phi.values()))
        phi = {
            k: (v - 0.3 * g).detach().requires_grad_()
            for (k, v), g in zip(phi.items(), grads, strict=True)
        }
    by_hand = torch.autograd.grad(F.mse_loss(second(phi, query[0]), query[1]), list(phi.values()))
    for a, b in zip(fo, by_hand, strict=True):
        torch.testing.assert_close(a, b)
    assert any(not torch.allclose(a, b) for a, b in zip(fo, so, strict=True))


def test_each_inner_step_uses_its_own_rate():
    w = nn.Linear(1, 1, bias=False).double()
    nn.init.constant_(w.weight, 1.0)
    maml = MAML(w, inner_lr=[0.1, 0.2], steps=2)
    x, y = torch.ones(1, 1).double(), torch.zeros(1, 1).double()
    phi = maml.adapt(lambda p: 0.5 * (maml(p, x) - y).pow(2).sum())
    # loss ½w², gradient w: w ← 0.9 w, then w ← 0.8 w
    assert phi["weight"].item() == pytest.approx(0.72)


def test_reptile_moves_toward_the_known_minimisers_of_quadratics():
    model = nn.Linear(2, 1, bias=False).double()
    nn.init.constant_(model.weight, 1.0)
    reptile = Reptile(model, inner_lr=0.25, steps=3, outer_lr=0.5)
    targets = [torch.tensor([[2.0, 0.0]]).double(), torch.tensor([[0.0, -2.0]]).double()]
    adapted = [reptile.adapt(lambda p, c=c: 0.5 * (p["weight"] - c).pow(2).sum()) for c in targets]
    # SGD on ½‖w − c‖²: φ = c + (1 − α)^k (θ − c)
    for phi, c in zip(adapted, targets, strict=True):
        torch.testing.assert_close(phi["weight"], c + 0.75**3 * (torch.ones(1, 2).double() - c))
    theta = torch.ones(1, 2).double()
    mean = torch.stack([phi["weight"] for phi in adapted]).mean(0)
    reptile.update(adapted)
    torch.testing.assert_close(model.weight.detach(), theta + 0.5 * (mean - theta))


def test_prototype_head_gives_protonet_logits_up_to_a_per_query_constant():
    torch.manual_seed(0)
    support, labels, query = (
        torch.randn(1, 6, 4),
        torch.tensor([[0, 1, 2, 0, 1, 2]]),
        torch.randn(1, 5, 4),
    )
    centres = prototypes(support, labels, 3)[0]
    weight, bias = prototype_head(centres)
    head = query[0] @ weight.T + bias
    proto = -squared_distances(query, centres[None])[0]
    torch.testing.assert_close(head - proto, query[0].pow(2).sum(-1, keepdim=True).expand(5, 3))
    torch.testing.assert_close(head.softmax(-1), proto.softmax(-1))


def test_a_divergent_inner_step_is_reported():
    net, support, _ = small_regression()
    maml = MAML(net, inner_lr=0.1)
    with pytest.raises(DivergenceError, match="inner step 1: the loss is nan"):
        maml.adapt(lambda p: maml(p, support[0]).sum() * float("nan"))


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"inner_lr": -0.1}, "positive and finite"),
        ({"inner_lr": float("inf")}, "positive"),
        ({"steps": 0}, "positive integer"),
        ({"inner_lr": [0.1], "steps": 2}, "1 inner learning rates for 2 steps"),
    ],
)
def test_invalid_step_sizes_and_counts_are_rejected(kwargs, message):
    with pytest.raises(ValueError, match=message):
        MAML(nn.Linear(1, 1), **kwargs)


@pytest.mark.parametrize("proto_head", [False, True])
def test_classifier_adapts_under_no_grad_as_evaluation_runs_it(proto_head):
    torch.manual_seed(0)
    model = MAMLClassifier(Conv4(hidden=8), 8, max_ways=5, inner_lr=0.5, proto_head=proto_head)
    support_x, support_y = torch.rand(2, 5, 1, 28, 28), torch.arange(5).repeat(2, 1)
    query_x = torch.rand(2, 3, 1, 28, 28)
    with_grad = model(support_x, support_y, query_x, 5)
    with torch.no_grad():
        without = model(support_x, support_y, query_x, 5)
    torch.testing.assert_close(without, with_grad.detach())
    before = model.maml(model.initial_params(support_x[0], support_y[0], 5), query_x[0])
    assert not torch.allclose(before, with_grad[0])  # the inner step changed the logits


def test_classifier_meta_gradient_through_conv4_matches_finite_differences():
    torch.manual_seed(0)
    model = MAMLClassifier(Conv4(hidden=4), 4, max_ways=3, inner_lr=0.5).double()
    support_x, query_x = torch.rand(1, 3, 1, 28, 28).double(), torch.rand(1, 2, 1, 28, 28).double()
    support_y = torch.arange(3)[None]

    def meta_loss():
        return model(support_x, support_y, query_x, 3).square().sum()

    head = model.net[1].weight
    exact = torch.autograd.grad(meta_loss(), head)[0]
    numeric, eps = torch.zeros_like(head), 1e-6
    with torch.no_grad():  # the inner step still differentiates (torch.func.grad)
        for i in range(head.numel()):
            head.view(-1)[i] += eps
            up = meta_loss().item()
            head.view(-1)[i] -= 2 * eps
            down = meta_loss().item()
            head.view(-1)[i] += eps
            numeric.view(-1)[i] = (up - down) / (2 * eps)
    assert (exact - numeric).norm() / numeric.norm() <= 1e-4


def test_accuracy_after_each_inner_step_is_the_few_shot_adaptation_curve():
    import numpy as np

    from metarl.fewshot.protocol import evaluate_classifier

    torch.manual_seed(0)
    model = MAMLClassifier(Conv4(hidden=4), 4, max_ways=3, inner_lr=[0.5, 0.3], steps=2)
    support_x, support_y = torch.rand(2, 3, 1, 28, 28), torch.arange(3).repeat(2, 1)
    query_x = torch.rand(2, 4, 1, 28, 28)
    by_step = model.logits_by_step(support_x, support_y, query_x, 3)
    assert len(by_step) == 3
    torch.testing.assert_close(by_step[-1], model(support_x, support_y, query_x, 3).detach())
    before = model.maml(model.initial_params(support_x[1], support_y[1], 3), query_x[1])
    torch.testing.assert_close(by_step[0][1], before.detach())
    images = np.random.default_rng(0).integers(0, 255, (10, 20, 28, 28), dtype=np.uint8)
    report = evaluate_classifier(model, images, ways=3, shots=1, queries=2, episodes=4, seed=0)
    assert report["curve_of"] == "inner_steps" and report["curve"]["x"] == [0, 1, 2]
    assert len(report["curve"]["agent"]) == len(report["curve"]["pixel_nn"]) == 3
    # the curve's last point is the accuracy itself (evaluation reuses those logits)
    assert report["value"] == pytest.approx(report["curve"]["agent"][-1])
    no_curve = evaluate_classifier(
        model, images, ways=3, shots=1, queries=2, episodes=4, seed=0, curve_episodes=0
    )
    assert no_curve["value"] == pytest.approx(report["value"])


def test_more_steps_at_test_repeat_the_last_trained_rate_and_end_with_the_block():
    maml = MAML(nn.Linear(2, 1), inner_lr=[0.5, 0.3], steps=2)
    with maml.steps_at_test(4):
        assert maml.rates == [0.5, 0.3, 0.3, 0.3]
    with maml.steps_at_test(1):
        assert maml.rates == [0.5]
    assert maml.rates == [0.5, 0.3]
    with (
        pytest.raises(ValueError, match="steps must be a positive integer, got 0"),
        maml.steps_at_test(0),
    ):
        pass
    assert maml.rates == [0.5, 0.3]


def meta_batch(seed=0):
    g = torch.Generator().manual_seed(seed)
    support_x = torch.rand(3, 6, 1, 28, 28, generator=g).double()
    query_x = torch.rand(3, 4, 1, 28, 28, generator=g).double()
    return support_x, torch.tensor([0, 1, 2, 0, 1, 2]).repeat(3, 1), query_x


@pytest.mark.parametrize(
    ("first_order", "proto_head", "zero_head"),
    [(False, False, False), (True, False, False), (False, True, False), (False, False, True)],
)
def test_task_batched_and_per_episode_inner_loops_give_equal_logits_and_meta_gradients(
    first_order, proto_head, zero_head
):
    torch.manual_seed(0)
    model = MAMLClassifier(
        Conv4(hidden=4),
        4,
        max_ways=5,
        inner_lr=[0.5, 0.3],
        steps=2,
        first_order=first_order,
        proto_head=proto_head,
        zero_head=zero_head,
    ).double()
    support_x, support_y, query_x = meta_batch()
    results = []
    for batched in (True, False):
        model.batched = batched
        logits = model(support_x, support_y, query_x, 3)
        grads = torch.autograd.grad(logits.sin().sum(), list(model.parameters()), allow_unused=True)
        curve = model.logits_by_step(support_x, support_y, query_x, 3)
        results.append((logits, grads, curve))
    (logits, grads, curve), (loop_logits, loop_grads, loop_curve) = results
    torch.testing.assert_close(logits, loop_logits, rtol=1e-10, atol=1e-12)
    for a, b in zip(grads, loop_grads, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-12)
    for a, b in zip(curve, loop_curve, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("first_order", [False, True])
def test_a_zero_head_is_written_by_the_first_inner_step_from_the_support_embeddings(first_order):
    torch.manual_seed(0)
    model = MAMLClassifier(
        Conv4(hidden=4), 4, max_ways=5, inner_lr=0.5, first_order=first_order, zero_head=True
    ).double()
    support_x, support_y, query_x = meta_batch()
    xs, ys = support_x[0], support_y[0]  # 3 ways, 2 shots
    start = model.initial_params(xs, ys, 3)
    assert not start["1.weight"].any() and not start["1.bias"].any()
    phi = model.maml.adapt(lambda p: F.cross_entropy(model.maml(p, xs), ys), start)
    # at zero logits p = 1/N, so the step is α/|S| Σ_i (y_ik − 1/N) e_i; the encoder's
    # gradient is zero (the logits do not depend on it)
    embeddings = model.net[0](xs)
    targets = F.one_hot(ys, 3).double() - 1 / 3
    torch.testing.assert_close(phi["1.weight"], 0.5 / 6 * targets.T @ embeddings)
    torch.testing.assert_close(phi["1.bias"], torch.zeros(3).double())
    for name, value in model.net[0].named_parameters():
        torch.testing.assert_close(phi[f"0.{name}"], value)
    logits = model(support_x, support_y, query_x, 3)
    grads = torch.autograd.grad(logits.sum(), list(model.parameters()), allow_unused=True)
    named = dict(zip((n for n, _ in model.named_parameters()), grads, strict=True))
    assert named["net.1.weight"] is None and named["net.1.bias"] is None  # the learned head
    assert all(named[n] is not None for n in named if n.startswith("net.0."))


def test_a_head_from_prototypes_and_from_zero_are_refused_together():
    with pytest.raises(ValueError, match="prototypes or from zero, not both"):
        MAMLClassifier(Conv4(hidden=4), 4, max_ways=5, proto_head=True, zero_head=True)


def test_task_batching_runs_any_network_as_the_loop_does():
    torch.manual_seed(0)
    encoder = nn.Sequential(nn.Flatten(), nn.Linear(784, 8), nn.LayerNorm(8), nn.Tanh())
    model = MAMLClassifier(encoder, 8, max_ways=3, inner_lr=0.5).double()
    support_x, support_y, query_x = meta_batch()
    model.batched = True
    batched = model(support_x, support_y, query_x, 3)
    model.batched = False
    torch.testing.assert_close(batched, model(support_x, support_y, query_x, 3))


def test_auto_batches_tasks_on_accelerators_and_loops_over_them_on_cpu():
    model = MAMLClassifier(Conv4(hidden=4), 4, max_ways=3)
    assert model.batches_on(torch.device("cuda")) and not model.batches_on(torch.device("cpu"))
    model.batched = True
    assert model.batches_on(torch.device("cpu"))


def test_a_divergent_episode_is_reported_by_the_task_batched_inner_loop():
    model = MAMLClassifier(Conv4(hidden=4), 4, max_ways=3, inner_lr=0.5, batched=True).double()
    support_x, support_y, query_x = meta_batch()
    support_x[1, 0, 0, 0, 0] = float("nan")
    with pytest.raises(DivergenceError, match="inner step 1: the loss is nan"):
        model(support_x, support_y, query_x, 3)
