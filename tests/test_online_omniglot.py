import math

import numpy as np
import pytest
import torch

from agents.online_omniglot import Config, OnlineOmniglotAgent, build_model
from metarl.backbones import MANN, Conv4
from metarl.backbones.config import ModelConfig
from metarl.config import TrainConfig
from metarl.eval.paired import paired
from metarl.learners.sequence_classifier import (
    SequenceClassifier,
    accuracy_by_instance,
    shifted_labels,
)


def test_labels_arrive_one_step_late():
    labels = torch.tensor([[2, 0, 2]])
    expected = torch.tensor([[[0, 0, 0], [0, 0, 1], [1, 0, 0]]]).float()
    torch.testing.assert_close(shifted_labels(labels, 3), expected)


def test_accuracy_by_instance_by_hand():
    labels = torch.tensor([[0, 1, 0, 0, 1]])  # instances 1, 1, 2, 3, 2
    predicted = torch.tensor([[1, 1, 0, 1, 0]])  # right at steps 1 and 2
    logits = torch.nn.functional.one_hot(predicted, 2).float()
    torch.testing.assert_close(
        accuracy_by_instance(logits, labels, 2), torch.tensor([0.5, 0.5, 0.0])
    )


def small_classifier(max_ways: int = 3) -> SequenceClassifier:
    encoder = Conv4(hidden=4)
    backbone = MANN(encoder.out_features(28) + max_ways, 6, 8, memory_slots=6, memory_width=4)
    return SequenceClassifier(encoder, backbone, max_ways)


def test_a_step_never_sees_its_own_label():
    torch.manual_seed(0)
    model = small_classifier().eval()
    images, labels = torch.rand(2, 6, 1, 28, 28), torch.tensor([[0, 1, 2, 0, 1, 2]] * 2)
    changed = labels.clone()
    changed[:, 3] = 1
    with torch.no_grad():
        a, b = model(images, labels, 3), model(images, changed, 3)
    torch.testing.assert_close(a[:, :4], b[:, :4])
    assert not torch.allclose(a[:, 4:], b[:, 4:])


@pytest.mark.parametrize(
    ("backbone", "encoder"),
    [("mann", "conv4"), ("lstm", "conv4"), ("snail", "conv4"), ("mann", "pixels")],
)
def test_in_training_no_step_sees_a_later_image(backbone, encoder):
    """The recipe's model, in training mode: changing image 4 of 6 leaves the embeddings
    and logits of steps 0-3 as they were, and changes step 4's."""
    torch.manual_seed(0)
    model_config = ModelConfig(backbone, blocks=["tc 8", "attention 8 8"], hidden_size=16)
    model_config.memory_slots, model_config.memory_width = 8, 8
    config = Config(
        name="t", agent="online-omniglot", encoder=encoder, channels=8, model=model_config
    )
    config.episodes.ways, config.episodes.instances = 3, 2
    model = build_model(config).train()
    images, labels = torch.rand(2, 6, 1, 28, 28), torch.tensor([[0, 1, 2, 0, 1, 2]] * 2)
    later = images.clone()
    later[:, 4] = torch.rand(2, 1, 28, 28)
    for a, b in [
        (model.encoder(images), model.encoder(later)),
        (model(images, labels, 3), model(later, labels, 3)),
    ]:
        torch.testing.assert_close(a[:, :4], b[:, :4], rtol=0, atol=0)
        assert not torch.allclose(a[:, 4], b[:, 4])


def test_the_pixel_encoder_feeds_each_flattened_image():
    config = Config(name="t", agent="online-omniglot", encoder="pixels")
    config.data.image_size = 20
    model = build_model(config)
    images = torch.rand(2, 3, 1, 20, 20)
    torch.testing.assert_close(model.encoder(images), images.reshape(2, 3, 400))
    assert model(images, torch.tensor([[0, 1, 2]] * 2), 3).shape == (2, 3, 3)  # 3 of 5 ways


def test_batch_norm_in_training_would_let_a_step_see_later_images():
    """Why the online encoder has no batch norm: the same check fails for one that has."""
    torch.manual_seed(0)
    encoder = Conv4(hidden=8).train()
    images = torch.rand(1, 6, 1, 28, 28)
    later = images.clone()
    later[:, 4] = torch.rand(1, 28, 28)
    assert not torch.allclose(encoder(images)[:, 0], encoder(later)[:, 0])


@pytest.mark.parametrize(
    ("images", "labels", "ways", "message"),
    [
        (torch.rand(2, 6, 28, 28), torch.zeros(2, 6, dtype=torch.long), 3, "expected images"),
        (torch.rand(2, 6, 1, 28, 28), torch.zeros(2, 5, dtype=torch.long), 3, "expected images"),
        (torch.rand(2, 6, 1, 28, 28), torch.full((2, 6), 3), 3, "labels must lie in"),
        (torch.rand(2, 6, 1, 28, 28), torch.zeros(2, 6, dtype=torch.long), 4, "ways <= 3"),
    ],
)
def test_bad_episodes_are_rejected(images, labels, ways, message):
    with pytest.raises(ValueError, match=message):
        small_classifier()(images, labels, ways)


def test_mann_classifier_beats_chance_within_a_minute(omniglot_data):
    """A small MANN, trained by 40 updates (under a minute on one idle core) on 3-way
    episodes of 4 instances, predicts the 2nd showing of a class above chance (1/3) on test
    classes, where it began at chance."""
    config = Config(
        name="t",
        agent="online-omniglot",
        channels=16,
        model=ModelConfig(backbone="mann", hidden_size=64, memory_slots=16, memory_width=16),
        train=TrainConfig(iterations=1),
    )
    config.data.dir = str(omniglot_data)
    config.episodes.ways, config.episodes.instances, config.episodes.meta_batch = 3, 4, 16
    config.eval.ways, config.optim.lr = 3, 3e-3
    torch.manual_seed(0)
    agent = OnlineOmniglotAgent(config, progress=False)
    before = agent.evaluate(300)
    for iteration in range(40):
        metrics = agent.train_iteration(iteration)
    assert metrics["episodes"] == 16 and "env_steps" not in metrics  # episodes per update
    report = agent.evaluate(300)
    assert math.isclose(report["baselines"]["chance"], 1 / 3)
    assert report["curve"]["x"] == [1, 2, 3, 4]
    assert before["value"] - before["ci95"] < 1 / 3 < before["value"] + before["ci95"]
    assert report["value"] - report["ci95"] > 0.4, report["value"]
    # per test episode, for metarl compare: the 2nd-instance accuracies on the same episodes
    assert len(report["scores"]) == 300
    assert math.isclose(sum(report["scores"]) / 300, report["value"], abs_tol=1e-5)
    assert report["tasks_crc32"] == before["tasks_crc32"]
    gain = paired(np.array(report["scores"]), np.array(before["scores"]), True)
    assert gain["verdict"] == "better", gain
