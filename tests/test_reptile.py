"""Reptile with the paper's Adam inner loop (Nichol et al. 2018, final version)."""

import copy

import numpy as np
import pytest
import torch

import metarl
from metarl import runs
from metarl.backbones import Conv4
from metarl.learners.reptile_classifier import ReptileClassifier, TaskThreads


def classifier(**kwargs) -> ReptileClassifier:
    torch.manual_seed(0)
    encoder = Conv4(hidden=8)
    options = {"inner_lr": 0.01, "steps": 3, "batch": 4, "test_steps": 4, "test_batch": None}
    return ReptileClassifier(encoder, encoder.out_features(28), 5, **(options | kwargs))


def episode(queries: int = 3) -> tuple[torch.Tensor, ...]:
    generator = torch.Generator().manual_seed(1)
    support_x = torch.rand(1, 5, 1, 28, 28, generator=generator)
    query_x = torch.rand(1, 5 * queries, 1, 28, 28, generator=generator)
    return support_x, torch.arange(5)[None], query_x


def test_the_first_inner_step_moves_each_weight_by_the_learning_rate():
    """Adam with β₁ = 0 from a fresh state: m̂ = g and v̂ = g², so the step is lr·sign(g)."""
    model = classifier()
    support_x, support_y, _ = episode()
    theta = {k: v.detach().clone() for k, v in model.net.named_parameters()}
    (phi,) = model.adapt(support_x[0], support_y[0], 5, 1, None, np.random.default_rng(0))
    moved = torch.cat([(phi[k] - theta[k]).abs().flatten() for k in theta])
    moved = moved[moved > 0]  # weights with a zero gradient (unused head rows) stay
    torch.testing.assert_close(moved, torch.full_like(moved, 0.01), rtol=1e-3, atol=0)


def test_fit_records_each_iterations_loss_and_accuracy_before_its_step():
    """The training log's fit comes from the inner loop's own passes: iteration i's entry is
    the loss and accuracy of the weights before step i, here on all five images."""
    model = classifier()
    support_x, support_y, _ = episode()
    x, y = support_x[0], support_y[0]
    fit: list[torch.Tensor] = []
    states = model.adapt(x, y, 5, 2, None, np.random.default_rng(0), each_step=True, fit=fit)
    assert len(fit) == 2
    for recorded, params in zip(fit, states[:2], strict=True):
        with torch.no_grad():
            logits = torch.func.functional_call(model.net, params, (x,))[:, :5]
        loss = torch.nn.functional.cross_entropy(logits, y)
        accuracy = (logits.argmax(-1) == y).float().mean()
        torch.testing.assert_close(recorded, torch.stack([loss, accuracy]))
    assert fit[1][0] < fit[0][0]  # the first step lowered the loss


def test_training_keeps_the_adam_state_and_testing_leaves_it():
    model = classifier()
    support_x, support_y, query_x = episode()
    rng = np.random.default_rng(0)
    for _ in range(2):  # two tasks: the second moment accumulates across them
        model.adapt(support_x[0], support_y[0], 5, 3, 4, rng)
    assert model.inner.state_dict()["state"][0]["step"].item() == 6
    kept = copy.deepcopy(model.inner.state_dict())
    model.eval()
    curve = model.logits_by_step(support_x, support_y, query_x, 5)
    assert model.curve_steps == [0, 1, 2, 4] and len(curve) == 4  # of the 4 test iterations
    torch.testing.assert_close(model(support_x, support_y, query_x, 5), curve[-1])
    for index, state in kept["state"].items():
        for key, value in state.items():
            torch.testing.assert_close(model.inner.state_dict()["state"][index][key], value)


def test_a_non_transductive_prediction_sees_no_other_query():
    model = classifier(transductive=False)
    support_x, support_y, query_x = episode()
    model.eval()
    changed = query_x.clone()
    changed[0, 1:] = torch.rand_like(changed[0, 1:])
    first = [model(support_x, support_y, q, 5)[0, 0] for q in (query_x, changed)]
    torch.testing.assert_close(first[0], first[1])
    model.transductive = True  # batch norm over all queries: the others matter
    first = [model(support_x, support_y, q, 5)[0, 0] for q in (query_x, changed)]
    assert not torch.allclose(first[0], first[1])


def test_the_inner_state_travels_with_the_weights():
    model = classifier()
    support_x, support_y, _ = episode()
    model.adapt(support_x[0], support_y[0], 5, 2, 4, np.random.default_rng(0))
    fresh = classifier()
    fresh.load_state_dict(model.state_dict())
    saved, loaded = model.inner.state_dict()["state"], fresh.inner.state_dict()["state"]
    assert saved.keys() == loaded.keys()
    for index in saved:
        torch.testing.assert_close(saved[index]["exp_avg_sq"], loaded[index]["exp_avg_sq"])


def tasks(count: int = 5) -> tuple[torch.Tensor, torch.Tensor]:
    """``count`` 5-way tasks of two images per class."""
    generator = torch.Generator().manual_seed(2)
    x = torch.rand(count, 10, 1, 28, 28, generator=generator)
    return x, torch.arange(5).repeat(2).expand(count, 10)


def adam_state(model: ReptileClassifier) -> list[dict[str, torch.Tensor]]:
    return [copy.deepcopy(model.inner.state[p]) for p in model.fast]


def test_one_task_thread_is_the_sequential_loop_of_one_adam():
    x, y = tasks()
    model, reference = classifier(), classifier()
    threads = TaskThreads(model, 1)
    phis, fits = threads.adapt(x, y, 5, np.random.default_rng(3))
    rng, expected = np.random.default_rng(3), []
    for xi, yi in zip(x, y, strict=True):
        expected.append(reference.adapt(xi, yi, 5, reference.steps, reference.batch, rng)[0])
    for phi, want in zip(phis, expected, strict=True):
        for name in want:
            torch.testing.assert_close(phi[name], want[name], rtol=0, atol=0)
    assert fits.shape == (5, 2) and adam_state(model)[0]["step"].item() == 5 * 3


def test_task_threads_adapt_each_share_from_one_state_then_average_it():
    """Two threads: tasks 0-2 on one replica, 3-4 on the other, both from the meta-batch's
    starting Adam state and each task with its own spawned generator; afterwards every
    replica holds the mean moments, with the step count whose bias correction is the mean
    of the two (2 + 9 and 2 + 6 steps), in tensors of its own."""
    x, y = tasks()
    model = classifier()
    model.adapt(x[0], y[0], 5, 2, 4, np.random.default_rng(9))  # a state to start from
    start = copy.deepcopy(model)
    threads = TaskThreads(model, 2)
    try:
        phis, _ = threads.adapt(x, y, 5, np.random.default_rng(3))
        rngs = np.random.default_rng(3).spawn(5)
        ends = []
        for share in ([0, 1, 2], [3, 4]):
            reference = copy.deepcopy(start)
            for i in share:
                want = reference.adapt(x[i], y[i], 5, reference.steps, reference.batch, rngs[i])
                for name in want[0]:
                    torch.testing.assert_close(phis[i][name], want[0][name], rtol=1e-5, atol=1e-6)
            ends.append(adam_state(reference))
        beta2 = model.inner.param_groups[0]["betas"][1]
        step = np.log((beta2**11 + beta2**8) / 2) / np.log(beta2)  # about 9.5
        for replica in threads.replicas:
            for i, state in enumerate(adam_state(replica)):
                assert state["step"].item() == pytest.approx(step, rel=1e-6)
                mean = (ends[0][i]["exp_avg_sq"] + ends[1][i]["exp_avg_sq"]) / 2
                torch.testing.assert_close(state["exp_avg_sq"], mean, rtol=1e-5, atol=1e-12)
        first, second = (r.inner.state[r.fast[0]]["exp_avg_sq"] for r in threads.replicas)
        assert first.data_ptr() != second.data_ptr()  # the next meta-batch updates them apart
        shared = zip(threads.replicas[1].net.parameters(), model.net.parameters(), strict=True)
        assert all(a is b for a, b in shared)  # θ is one set of tensors
    finally:
        threads.close()


def test_reptile_omniglot_learns_with_the_papers_inner_loop(omniglot_data, tmp_path):
    overrides = {
        "data.protocol": "lake",
        "data.dir": str(omniglot_data),
        "learner.channels": 16,
        "episodes.meta_batch": 4,
        "learner.test_steps": 10,
        "train.iterations": 60,
        "eval.val_every": 60,
        "eval.val_episodes": 50,
    }
    run = metarl.train(
        "reptile-omniglot", out=tmp_path / "run", overrides=overrides, progress=False
    )
    rows = runs.read_metrics(run.path)
    assert np.mean([r["loss"] for r in rows[-10:]]) < np.mean([r["loss"] for r in rows[:5]])
    assert rows[-1]["val_accuracy"] > 0.3  # 5-way: chance is 0.2
    assert rows[-1]["lr"] == pytest.approx(0.0)  # β annealed linearly to 0 at the last update
    plain = metarl.evaluate(run.path, episodes=10, overrides=["eval.transductive=false"])
    assert plain["value"] > 0.3
    assert plain["curve"]["x"] == [0, 1, 2, 5, 10] and plain["gains"]["x"] == [1, 2, 5, 10]
