"""Few-shot evaluation pairs the learner with its baselines episode by episode."""

import numpy as np
import pytest
import torch

from metarl.backbones import Conv4
from metarl.fewshot.protocol import evaluate_classifier
from metarl.learners.maml_classifier import MAMLClassifier
from metarl.learners.protonet import ProtoNet
from metarl.learners.reptile_classifier import ReptileClassifier


def test_paired_differences_are_taken_on_the_same_episodes():
    images = np.random.default_rng(0).integers(0, 255, (30, 20, 8, 8), dtype=np.uint8)
    # at one shot, a nearest-mean classifier on raw pixels IS the pixel nearest neighbour:
    # on the same episodes every difference is zero, which only a paired comparison shows
    model = ProtoNet(torch.nn.Flatten(-3))
    report = evaluate_classifier(model, images, ways=5, shots=1, queries=4, episodes=30, seed=3)
    assert report["paired"]["pixel_nn"] == {"diff": 0.0, "ci95": 0.0, "tasks": 30, "verdict": "tie"}
    assert report["ci95"] > 0  # while each accuracy alone varies from episode to episode
    chance = report["paired"]["chance"]
    assert chance["diff"] == pytest.approx(report["value"] - 0.2)
    assert chance["ci95"] == pytest.approx(report["ci95"])


def test_gains_of_inner_steps_are_per_episode_differences_from_step_zero():
    torch.manual_seed(0)
    model = MAMLClassifier(Conv4(hidden=4), 4, max_ways=3, inner_lr=[0.5, 0.3], steps=2)
    images = np.random.default_rng(0).integers(0, 255, (10, 20, 28, 28), dtype=np.uint8)
    report = evaluate_classifier(model, images, ways=3, shots=1, queries=2, episodes=8, seed=0)
    curve, gains = report["curve"]["agent"], report["gains"]
    assert gains["x"] == [1, 2]
    assert gains["mean"] == pytest.approx([curve[1] - curve[0], curve[2] - curve[0]])
    assert all(half >= 0 for half in gains["ci95"])


@pytest.mark.parametrize("learner", ["reptile", "protonet"])
def test_a_report_does_not_depend_on_the_evaluation_threads(learner):
    """Threads measure batches on copies of the model: Reptile's test minibatches (2 of the
    6 support images per Adam iteration) and ProtoNet's shot curve come out the same."""
    torch.manual_seed(0)
    encoder = Conv4(hidden=4)
    if learner == "reptile":
        model = ReptileClassifier(encoder, encoder.out_features(28), 3, 0.01, 2, 4, 5, 2)
    else:
        model = ProtoNet(encoder)
    images = np.random.default_rng(0).integers(0, 255, (10, 20, 28, 28), dtype=np.uint8)
    settings = {"ways": 3, "shots": 2, "queries": 2, "episodes": 9, "seed": 0, "batch": 2}
    one = evaluate_classifier(model, images, **settings, curve_episodes=4)
    three = evaluate_classifier(model, images, **settings, curve_episodes=4, workers=3)
    assert three == one
    assert len(one["curve"]["x"]) == (4 if learner == "reptile" else 2)
    with pytest.raises(ValueError, match="workers must be a positive integer, got 0"):
        evaluate_classifier(model, images, **settings, workers=0)
