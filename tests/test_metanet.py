"""MetaNet (Munkhdalai & Yu 2017): fast weights that follow the support set, per-example
gradients, the cosine-attention memory read, the meta-gradient reaching every slow weight,
input checks, and learning 5-way 1-shot Omniglot."""

from __future__ import annotations

import math
from collections.abc import Iterator

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from test_metric_learners import BAD_EPISODES, synthetic_episodes

from agents.fewshot_omniglot import FewShotAgent
from metarl.backbones import Conv4
from metarl.fewshot.episodes import EpisodeSampler
from metarl.fewshot.protocol import episode_accuracy
from metarl.learners.metanet import (
    MetaNet,
    preprocess_gradient,
    read_memory,
    representation_loss,
)
from metarl.trainer import build_config, resolve_config


def small_metanet(max_ways: int = 5) -> MetaNet:
    return MetaNet(Conv4(hidden=8), Conv4(hidden=8), 8, max_ways, hidden=8, key_size=8)


@pytest.fixture(autouse=True, scope="module")
def _one_thread() -> Iterator[None]:
    """One thread, as ``metarl train`` runs (``train.threads``): on a busy machine two
    threads made the training here ten times slower."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(autouse=True)
def _seed() -> None:
    torch.manual_seed(0)


def test_fast_weights_follow_the_support_set() -> None:
    model = small_metanet().eval()
    generator = torch.Generator().manual_seed(0)
    support_x, support_y, query_x, _ = synthetic_episodes(generator, 1)
    other_x = synthetic_episodes(generator, 1)[0]

    def fast_weights(x: torch.Tensor, y: torch.Tensor) -> tuple[dict, dict]:
        with torch.no_grad():
            task = model.task_fast_weights(model.key_encoder(x), y)
            example = model.example_fast_weights(model.base_encoder(x), y, 3)
        return task, example

    (task, example), (other_task, other_example) = (
        fast_weights(support_x, support_y),
        fast_weights(other_x, support_y),
    )
    for name in task:
        assert not torch.allclose(task[name], other_task[name]), name
    for name in example:
        assert example[name].shape == (1, 6, *model.base.get_parameter(name).shape)
        assert not torch.allclose(example[name], other_example[name]), name
    swapped = torch.tensor([1, 0, 2])[support_y]
    with torch.no_grad():
        logits = model(support_x, support_y, query_x, 3)
        assert not torch.allclose(logits, model(support_x, swapped, query_x, 3))


def test_example_gradients_are_each_support_examples_own() -> None:
    model = small_metanet()
    features, labels = torch.randn(2, 3, 8), torch.tensor([[0, 1, 2], [2, 2, 0]])
    gradients = model.example_gradients(features, labels, ways=3)
    names = [name for name, _ in model.base.named_parameters()]
    for b in range(2):
        for i in range(3):
            logits = model.base[1](F.relu(model.base[0](features[b, i])))[:3]
            loss = F.cross_entropy(logits[None], labels[b, i][None])
            expected = torch.autograd.grad(loss, list(model.base.parameters()))
            for name, grad in zip(names, expected, strict=True):
                torch.testing.assert_close(gradients[name][b, i], grad)
    assert not any(g.requires_grad for g in gradients.values())  # first order: inputs to m


def test_representation_loss_pulls_same_class_cosines_to_one_and_others_to_zero() -> None:
    identity = {"0.weight": torch.eye(2), "0.bias": torch.zeros(2)}
    features = torch.tensor([[1.0, 0.0], [0.0, 2.0], [3.0, 3.0]])
    # pairs (0, 1): same class, cosine 0; (0, 2) and (1, 2): other classes, cosine 1/√2
    loss = representation_loss(identity, features, torch.tensor([0, 0, 1]))
    torch.testing.assert_close(loss, torch.tensor((1 + 0.5 + 0.5) / 3))
    assert representation_loss(identity, features[:1], torch.tensor([0])) == 0  # no pairs


def test_memory_read_is_the_cosine_attention_weighted_sum_of_stored_fast_weights() -> None:
    keys = torch.tensor([[[1.0, 0.0], [0.0, 2.0]]])  # (B=1, S=2, D=2)
    stored = {"w": torch.tensor([[[1.0, 2.0], [3.0, 4.0]]]).view(1, 2, 1, 2)}
    queries = torch.tensor([[[5.0, 0.0], [1.0, 1.0]]])  # cosines (1, 0) and (1/√2, 1/√2)
    read = read_memory(keys, stored, queries)["w"]
    e = math.e
    first = (e * torch.tensor([1.0, 2.0]) + torch.tensor([3.0, 4.0])) / (e + 1)
    expected = torch.stack([first, torch.tensor([2.0, 3.0])]).view(1, 2, 1, 2)
    torch.testing.assert_close(read, expected)


def test_gradients_are_preprocessed_into_log_magnitude_and_sign() -> None:
    g = torch.tensor([1.0, -math.exp(-5), 1e-6])  # e^-10 = 4.5e-5: 1e-6 is small
    expected = torch.tensor([[0.0, 1.0], [-0.5, -1.0], [-1.0, math.exp(10) * 1e-6]])
    torch.testing.assert_close(preprocess_gradient(g), expected)


def test_the_query_loss_reaches_every_slow_parameter_group() -> None:
    model = small_metanet()
    episode = synthetic_episodes(torch.Generator().manual_seed(0), 2)
    model.loss(model(*episode[:3], 3), episode[3]).backward()
    groups: dict[str, float] = {}
    for name, parameter in model.named_parameters():
        assert parameter.grad is not None, name
        group = name.split(".")[0]
        groups[group] = groups.get(group, 0.0) + parameter.grad.abs().sum().item()
    assert set(groups) == {"base_encoder", "base", "key_encoder", "key", "m", "d"}
    assert all(total > 0 for total in groups.values()), groups


def test_logits_have_one_column_per_way_and_one_support_image_is_enough() -> None:
    model = small_metanet()
    support_x, support_y, query_x, _ = synthetic_episodes(torch.Generator().manual_seed(0), 2)
    assert model(support_x, support_y, query_x, 3).shape == (2, 9, 3)
    one = model(support_x[:, :1], torch.zeros(2, 1, dtype=torch.long), query_x, 1)
    assert one.shape == (2, 9, 1) and torch.isfinite(one).all()
    with pytest.raises(ValueError, match="this MetaNet has 2 outputs, got 3 ways"):
        small_metanet(max_ways=2)(support_x, support_y, query_x, 3)
    with pytest.raises(ValueError, match="key_size must be a positive integer"):
        MetaNet(Conv4(hidden=8), Conv4(hidden=8), 8, 5, key_size=0)


@pytest.mark.parametrize("case", BAD_EPISODES)
def test_bad_episode_raises_value_error(case: str) -> None:
    corrupt, match = BAD_EPISODES[case]
    episode = corrupt(*synthetic_episodes(torch.Generator().manual_seed(0), 2)[:3])
    with pytest.raises(ValueError, match=match):  # check_episode's message
        small_metanet()(*episode)


# Learning on Omniglot

UPDATES = 80


@pytest.fixture(scope="module")
def trained(omniglot_data) -> FewShotAgent:
    """The metanet-omniglot experiment, narrowed, after UPDATES 5-way 1-shot updates."""
    overrides = {
        "data.dir": str(omniglot_data),
        "data.protocol": "lake",
        "learner.channels": 16,
        "learner.base_hidden": 16,
        "learner.key_size": 16,
        "episodes.meta_batch": 4,
        "optim.lr": 0.003,
        "eval.val_every": 10 * UPDATES,
    }
    agent = FewShotAgent(resolve_config(build_config("metanet-omniglot", overrides)), False)
    for iteration in range(UPDATES):
        agent.train_iteration(iteration)
    agent.model.eval()
    return agent


def test_metanet_learns_5_way_1_shot_omniglot(trained: FewShotAgent) -> None:
    episodes = EpisodeSampler(trained.splits.test, 5, 1, 15).sample(np.random.default_rng(0), 40)
    with torch.no_grad():
        logits = trained.model(episodes.support_x, episodes.support_y, episodes.query_x, 5)
    assert episode_accuracy(logits, episodes.query_y).mean() > 0.5  # chance: 0.2


def test_query_predictions_follow_the_support_labels(trained: FewShotAgent) -> None:
    episodes = EpisodeSampler(trained.splits.test, 5, 1, 15).sample(np.random.default_rng(1), 40)
    relabel = torch.tensor([1, 2, 3, 4, 0])
    with torch.no_grad():
        logits = trained.model(episodes.support_x, relabel[episodes.support_y], episodes.query_x, 5)
    assert episode_accuracy(logits, relabel[episodes.query_y]).mean() > 0.5
