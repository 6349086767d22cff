"""Few-shot evaluation pairs the learner with its baselines episode by episode."""

import numpy as np
import pytest
import torch

from metarl import runs
from metarl.backbones import Conv4
from metarl.cli import main
from metarl.eval.report import compare_runs
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


def test_the_episodes_fingerprint_names_the_tasks_not_the_model():
    images = np.random.default_rng(0).integers(0, 255, (30, 20, 8, 8), dtype=np.uint8)
    settings = {"ways": 5, "shots": 1, "queries": 4, "episodes": 12, "batch": 5}
    pixels = evaluate_classifier(ProtoNet(torch.nn.Flatten(-3)), images, **settings, seed=3)
    torch.manual_seed(0)
    conv = ProtoNet(Conv4(hidden=4, blocks=2))
    learned = evaluate_classifier(conv, images, **settings, seed=3, workers=2)
    other = evaluate_classifier(ProtoNet(torch.nn.Flatten(-3)), images, **settings, seed=4)
    assert pixels["tasks_crc32"] == learned["tasks_crc32"] != other["tasks_crc32"]
    assert len(pixels["scores"]) == 12 and pixels["scores"] != learned["scores"]
    assert np.mean(learned["scores"]) == pytest.approx(learned["value"])


def _eval_file(path, scores, tasks="0000abcd", metric="accuracy"):
    report = {"metric": metric, "higher_is_better": True, "scores": scores, "tasks_crc32": tasks}
    path.mkdir()
    runs.write_json(path / "eval.json", report)
    return str(path)


def test_compare_prints_the_paired_difference_of_two_runs(tmp_path, capsys):
    # per episode 0.2, 0.0, 0.2: mean 2/15, sd 0.11547, half-width t(0.975, 2) * sd / sqrt(3)
    a = _eval_file(tmp_path / "a", [1.0, 0.8, 0.6])
    b = _eval_file(tmp_path / "b", [0.8, 0.8, 0.4])
    assert compare_runs(a, b) == pytest.approx(
        {"diff": 2 / 15, "ci95": 0.286843, "tasks": 3, "verdict": "tie"}, abs=1e-6
    )
    c = _eval_file(tmp_path / "c", [0.8, 0.6, 0.4])  # 0.2 less on every episode
    assert main(["compare", a, c]) == 0
    out = capsys.readouterr().out.strip()
    assert out == f"{a} − {c}: +0.2000 ± 0.0000 over 3 paired tasks ({a} better)"
    assert main(["compare", c, a]) == 0
    assert capsys.readouterr().out.strip().endswith(f"({a} better)")
    assert main(["compare", a, b]) == 0
    assert "(tie: the 95% interval includes 0)" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("second", "message"),
    [
        ({"tasks": "0000abce"}, "were not evaluated on the same tasks"),
        ({"metric": "cumulative_reward"}, "were not evaluated on the same tasks"),
        (None, "keeps no per-task scores"),
        ("missing", "eval.json does not exist: run metarl eval"),
    ],
)
def test_compare_refuses_runs_not_evaluated_on_the_same_episodes(tmp_path, capsys, second, message):
    a = _eval_file(tmp_path / "a", [1.0, 0.8, 0.6])
    if second is None:
        (tmp_path / "b").mkdir()
        runs.write_json(tmp_path / "b" / "eval.json", {"metric": "accuracy", "value": 0.5})
        b = str(tmp_path / "b")
    elif second == "missing":
        b = str(tmp_path / "b")
    else:
        b = _eval_file(tmp_path / "b", [0.8, 0.8, 0.4], **second)
    assert main(["compare", a, b]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("metarl: error: ") and message in err and "\n" not in err
