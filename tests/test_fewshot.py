import dataclasses
import json

import numpy as np
import pytest
import torch

import metarl
from agents.fewshot_omniglot import (
    LEARNERS,
    Config,
    MAMLOptions,
    ProtoMAMLOptions,
    ProtoNetOptions,
)
from agents.rl2_agent import build_policy
from metarl import runs
from metarl.backbones import SNAIL, Conv4, TCBlockSpec
from metarl.backbones.config import ModelConfig
from metarl.config import config_names, from_dict, read_raw, to_dict
from metarl.errors import ConfigError, UsageError
from metarl.fewshot import load_omniglot
from metarl.fewshot.episodes import EpisodeSampler
from metarl.fewshot.inference import FewShotClassifier, classify
from metarl.fewshot.protocol import evaluate_classifier, pixel_nn_logits
from metarl.learners.protonet import ProtoNet
from metarl.learners.snail_classifier import SNAILClassifier


def coded_images(classes=10, drawings=20):
    """Images whose pixels spell their class and drawing: [0, 0] = class, [0, 1] = drawing."""
    images = np.zeros((classes, drawings, 4, 4), np.uint8)
    images[:, :, 0, 0] = np.arange(classes)[:, None]
    images[:, :, 0, 1] = np.arange(drawings)[None, :]
    return images


def decode(x):
    pixels = (x[..., 0, :2, :2] * 255).round().long()
    return pixels[..., 0, 0], pixels[..., 0, 1]


def test_episodes_have_the_requested_shapes_and_consistent_labels():
    sampler = EpisodeSampler(coded_images(), ways=5, shots=2, queries=3)
    batch = sampler.sample(np.random.default_rng(0), batch=4)
    assert batch.support_x.shape == (4, 10, 1, 4, 4) and batch.query_x.shape == (4, 15, 1, 4, 4)
    assert batch.support_x.dtype == torch.float32
    for b in range(4):
        s_class, s_draw = decode(batch.support_x[b])
        q_class, q_draw = decode(batch.query_x[b])
        for label in range(5):
            classes = torch.cat(
                [s_class[batch.support_y[b] == label], q_class[batch.query_y[b] == label]]
            )
            assert len(classes) == 5 and (classes == classes[0]).all()  # one class per label
            drawings = torch.cat(
                [s_draw[batch.support_y[b] == label], q_draw[batch.query_y[b] == label]]
            )
            assert len(set(drawings.tolist())) == 5  # support and query never share a drawing
        assert len(set(s_class.tolist())) == 5  # five distinct classes
        assert not torch.equal(batch.support_y[b], torch.arange(5).repeat_interleave(2))


def test_episodes_are_seeded():
    sampler = EpisodeSampler(coded_images(), ways=3, shots=1, queries=2)
    a, b = (sampler.sample(np.random.default_rng(7), 2) for _ in range(2))
    c = sampler.sample(np.random.default_rng(8), 2)
    assert torch.equal(a.support_x, b.support_x) and torch.equal(a.query_y, b.query_y)
    assert not torch.equal(a.support_x, c.support_x)


def test_with_shots_keeps_the_first_shots_of_every_class():
    batch = EpisodeSampler(coded_images(), 4, 5, 1).sample(np.random.default_rng(1), 3)
    fewer = batch.with_shots(2)
    assert fewer.support_x.shape == (3, 8, 1, 4, 4) and fewer.shots == 2
    for b in range(3):
        assert torch.bincount(fewer.support_y[b]).tolist() == [2, 2, 2, 2]


@pytest.mark.parametrize(
    ("ways", "shots", "queries", "message"),
    [
        (11, 1, 1, "11-way episodes need 11 classes, the test split has 10"),
        (5, 15, 6, "need 21 images per class, the test split has 20"),
        (0, 1, 1, "ways must be an integer >= 1, got 0"),
        (5, 1, -1, "queries must be an integer >= 0, got -1"),
    ],
)
def test_impossible_episodes_are_rejected(ways, shots, queries, message):
    with pytest.raises(UsageError, match=message):
        EpisodeSampler(coded_images(), ways, shots, queries)


def test_pixel_nearest_neighbour_finds_a_copied_image():
    batch = EpisodeSampler(coded_images(), 5, 1, 1).sample(np.random.default_rng(2), 1)
    query_x = batch.support_x[:, [3]].clone()
    copied = type(batch)(batch.support_x, batch.support_y, query_x, batch.support_y[:, [3]], 5, 1)
    assert pixel_nn_logits(copied).argmax(-1).item() == batch.support_y[0, 3].item()


def test_evaluation_reports_accuracy_on_fixed_episodes():
    images = np.random.default_rng(0).integers(0, 255, (30, 20, 8, 8), dtype=np.uint8)
    model = ProtoNet(torch.nn.Flatten(-3))  # raw pixels: a nearest-mean classifier
    kwargs = dict(ways=5, shots=3, queries=4, episodes=30, seed=3, batch=7)
    report = evaluate_classifier(model, images, **kwargs)
    assert report == evaluate_classifier(model, images, **kwargs)
    assert report["metric"] == "accuracy" and (report["ways"], report["shots"]) == (5, 3)
    assert 0 <= report["value"] <= 1 and report["ci95"] > 0
    assert report["curve"]["x"] == [1, 2, 3] and len(report["curve"]["agent"]) == 3
    assert report["baselines"]["chance"] == pytest.approx(0.2)


def test_snail_classifier_uses_the_bandit_backbone_class():
    classifier = SNAILClassifier(
        Conv4(hidden=8), 8, max_ways=3, max_shots=2, blocks=[TCBlockSpec(8)]
    )
    policy = build_policy(ModelConfig(backbone="snail"), obs_size=1, num_actions=3, max_len=5)
    assert type(classifier.snail) is type(policy.backbone) is SNAIL


def test_snail_classifier_queries_do_not_see_each_other():
    torch.manual_seed(0)
    classifier = SNAILClassifier(Conv4(hidden=8), 8, 3, 2, [TCBlockSpec(8)]).eval()
    support_x, query_x = torch.rand(1, 6, 1, 28, 28), torch.rand(1, 2, 1, 28, 28)
    support_y = torch.tensor([[0, 1, 2, 0, 1, 2]])
    both = classifier(support_x, support_y, query_x, 3)
    alone = classifier(support_x, support_y, query_x[:, :1], 3)
    torch.testing.assert_close(both[:, :1], alone)
    with pytest.raises(ValueError, match="at most 3-way 2-shot"):
        classifier(torch.rand(1, 4, 1, 28, 28), torch.tensor([[0, 1, 2, 3]]), query_x, 4)


@pytest.mark.parametrize(
    "name", [n for n in config_names() if read_raw(n)["agent"] == "fewshot-omniglot"]
)
def test_each_config_keeps_only_its_learners_keys(name):
    raw = read_raw(name)
    config = from_dict(Config, raw)
    assert type(config.learner) is LEARNERS[raw["learner"]["kind"]]
    written = to_dict(config)
    assert set(written["learner"]) == {f.name for f in dataclasses.fields(config.learner)}
    assert set(raw["learner"]) <= set(written["learner"])
    assert from_dict(Config, written) == config  # config.yaml reads back as the same run


def test_a_protonet_config_lists_only_protonet_keys():
    config = from_dict(Config, read_raw("protonet-omniglot"))
    assert to_dict(config)["learner"] == {"kind": "protonet", "channels": 64}
    maml = from_dict(Config, {**read_raw("maml-omniglot"), "learner": {"kind": "maml"}})
    assert maml.learner == MAMLOptions()  # a kind's keys default like its options class
    assert Config("x", "fewshot-omniglot").learner == ProtoNetOptions()


@pytest.mark.parametrize(
    ("learner", "message"),
    [
        (
            {"kind": "protonet", "fce": True},
            "config key 'learner.fce' is not an option of learner.kind 'protonet'; "
            "its keys: kind, channels",
        ),
        ({"kind": "protomaml", "outer_lr": 1.0}, "'learner.outer_lr' is not an option"),
        ({"kind": "protonett"}, "config key 'learner.kind': got 'protonett', expected protonet"),
        ({"kind": "maml", "inner_lr": 0}, "'learner.inner_lr': got 0.0, expected a positive"),
        (
            {"kind": "reptile", "downsample": "avg"},
            "'learner.downsample': got 'avg', expected pool or stride",
        ),
        ({"kind": "protonet", "downsample": "stride"}, "'learner.downsample' is not an option"),
        (
            {"kind": "reptile", "inner_optimizer": "sgd", "task_threads": 2},
            "'learner.inner_optimizer': got 'sgd', expected adam when .* task_threads > 1",
        ),
        (
            {"kind": "protomaml", "zero_head": True},
            "'learner.zero_head': got True, expected false for Proto-MAML",
        ),
        ({"kind": "snail", "max_shots": 0}, "'learner.max_shots': got 0, expected an integer"),
        (
            {"kind": "matchingnet", "fce": "yes"},
            "'learner.fce': got 'yes' \\(str\\), expected bool",
        ),
        (
            {"fce_stepz": 2},
            "unknown config key 'learner.fce_stepz'; did you mean 'learner.fce_steps'",
        ),
    ],
)
def test_learner_keys_are_checked_against_the_chosen_kind(learner, message):
    with pytest.raises(ConfigError, match=message):
        from_dict(Config, {**read_raw("protonet-omniglot"), "learner": learner})


SMALL = {
    "data.protocol": "lake",
    "episodes.ways": 5,
    "episodes.shots": 1,
    "episodes.queries": 5,
    "learner.channels": 16,
    "eval.val_episodes": 100,
}
LEARNING = {  # iterations and learning rate for each learner to beat chance clearly
    "protonet": (40, {}),
    "matchingnet": (40, {"learner.fce_steps": 2}),
    "relationnet": (60, {}),
    "snail": (  # black-box learners sit at chance until they discover the labels
        200,
        {
            "episodes.meta_batch": 8,
            "learner.blocks": ["tc 16", "attention 16 16"],
            "optim.lr": 0.003,
        },
    ),
    "finetune": (60, {"learner.head_steps": 30, "learner.pretrain_batch": 64}),
    "maml": (60, {"episodes.meta_batch": 4}),
    "protomaml": (60, {"episodes.meta_batch": 4}),
    "reptile": (
        60,
        {"episodes.meta_batch": 4, "learner.inner_lr": 0.1, "learner.inner_steps": 5},
    ),
}


@pytest.mark.parametrize("kind", sorted(LEARNING))
def test_each_learner_learns_on_omniglot(kind, omniglot_data, tmp_path):
    iterations, extra = LEARNING[kind]
    overrides = {
        **SMALL,
        **extra,
        "learner.kind": kind,
        "train.iterations": iterations,
        "eval.val_every": iterations,
        "data.dir": str(omniglot_data),
    }
    run = metarl.train(
        "protonet-omniglot", out=tmp_path / kind, overrides=overrides, progress=False
    )
    rows = runs.read_metrics(run.path)
    assert f"total_{LEARNERS[kind].step_unit}" in rows[-1]  # finetune: images; else episodes
    assert "total_env_steps" not in rows[-1]
    losses = [r["loss"] for r in rows]
    assert np.mean(losses[-10:]) < np.mean(losses[:5])
    assert rows[-1]["val_accuracy"] > 0.3  # 5-way: chance is 0.2


@pytest.fixture(scope="module")
def protonet_run(omniglot_data, tmp_path_factory):
    overrides = {**SMALL, "train.iterations": 30, "eval.val_every": 30}
    out = tmp_path_factory.mktemp("runs") / "protonet"
    return metarl.train(
        "protonet-omniglot", out=out, overrides=overrides, progress=False, data_dir=omniglot_data
    )


def test_a_protonet_run_counts_episodes_and_writes_only_protonet_keys(protonet_run):
    rows = runs.read_metrics(protonet_run.path)
    assert [r["total_episodes"] for r in rows] == list(range(1, 31))  # meta-batch 1
    assert "total_env_steps" not in rows[-1]
    learner = runs.read_run_config(protonet_run.path)["learner"]
    assert learner == {"kind": "protonet", "channels": 16}


def test_cpu_runs_keep_conv4_channels_last_but_second_order_maml(protonet_run):
    """ProtoNet trained (and saved) its convolutions channels-last; second-order MAML and
    Proto-MAML keep the plain order, first-order MAML does not."""
    weights = runs.load_checkpoint(protonet_run.path)["agent"]["model"]
    convs = [w for w in weights.values() if w.dim() == 4 and w.shape[1] > 1]
    assert convs
    assert all(w.is_contiguous(memory_format=torch.channels_last) for w in convs)
    assert not any(w.is_contiguous() for w in convs)
    assert MAMLOptions(kind="maml", first_order=True).channels_last()
    assert not MAMLOptions(kind="maml").channels_last()
    assert not ProtoMAMLOptions(kind="protomaml").channels_last()


def test_eval_measures_any_setting_and_keeps_each(protonet_run, capsys):
    from metarl.cli import main

    path = str(protonet_run.path)
    assert main(["eval", path, "--ways", "20", "--shots", "2", "--episodes", "10", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["metric"] == "accuracy" and report["episodes"] == 10
    assert (report["ways"], report["shots"]) == (20, 2) and report["value"] > 0.3
    assert report["curve"]["x"] == [1, 2]
    assert main(["eval", path, "--episodes", "10"]) == 0
    assert "(5-way 1-shot)" in capsys.readouterr().out
    saved = {f.name for f in protonet_run.path.iterdir()}
    assert {"eval.json", "eval-20w2s.json", "eval-5w1s.json", "eval.png"} <= saved


def test_eval_inner_steps_extend_maml_s_test_curve(omniglot_data, tmp_path):
    """Trained with 1 inner step, tested with 3 (Finn et al.'s Omniglot protocol): the
    curve reads 0..3 steps and its last point is the reported accuracy."""
    overrides = {**SMALL, "learner.kind": "maml", "episodes.meta_batch": 2}
    overrides |= {"train.iterations": 2, "eval.val_every": 2, "data.dir": str(omniglot_data)}
    run = metarl.train(
        "protonet-omniglot", out=tmp_path / "maml", overrides=overrides, progress=False
    )
    report = metarl.evaluate(run.path, episodes=4, overrides=["eval.inner_steps=3"])
    assert report["curve"]["x"] == [0, 1, 2, 3]
    assert report["value"] == pytest.approx(report["curve"]["agent"][-1])
    assert metarl.evaluate(run.path, episodes=4)["curve"]["x"] == [0, 1]


def test_eval_inner_steps_are_refused_for_learners_without_inner_steps(protonet_run, capsys):
    from metarl.cli import main

    before = {f.name: f.read_bytes() for f in protonet_run.path.iterdir() if f.is_file()}
    assert main(["eval", str(protonet_run.path), "--set", "eval.inner_steps=3"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "eval.inner_steps" in err and "only MAML" in err
    after = {f.name: f.read_bytes() for f in protonet_run.path.iterdir() if f.is_file()}
    assert after == before


def test_eval_rejects_more_ways_than_test_classes(protonet_run, capsys):
    from metarl.cli import main

    before = (protonet_run.path / "checkpoint.pt").read_bytes()
    assert main(["eval", str(protonet_run.path), "--ways", "700"]) == 2
    err = capsys.readouterr().err.strip()
    assert (
        err.count("\n") == 0 and "700-way episodes need 700 classes, the test split has 659" in err
    )
    assert main(["eval", str(protonet_run.path), "--shots", "20"]) == 2
    assert "images per class" in capsys.readouterr().err
    assert (protonet_run.path / "checkpoint.pt").read_bytes() == before


def test_classify_new_images_from_arrays_and_files(protonet_run, omniglot_data, tmp_path):
    from PIL import Image

    splits = load_omniglot(omniglot_data, protocol="lake")
    support = splits.test[:5, 0]  # five new characters, one drawing each
    query = splits.test[:5, 1:].reshape(95, 28, 28)
    truth = np.repeat(list("abcde"), 19).tolist()
    predicted = classify(protonet_run.path, support, list("abcde"), query)
    assert np.mean(np.array(predicted) == np.array(truth)) > 0.4  # chance: 0.2
    files = []
    for i, image in enumerate(support):  # as PNG files: dark ink on white paper
        files.append(tmp_path / f"{i}.png")
        Image.fromarray(255 - image).save(files[-1])
    assert classify(protonet_run.path, files, list("abcde"), query) == predicted


def test_classify_rejects_bad_images(protonet_run, tmp_path):
    from PIL import Image

    model = FewShotClassifier.load(protonet_run.path)
    good = [np.zeros((28, 28), np.uint8)] * 2
    Image.new("RGB", (28, 28)).save(tmp_path / "rgb.png")
    cases = [
        ([np.zeros((3, 28, 28), np.uint8)] * 2, "expected a grayscale image"),
        ([np.zeros((28, 20), np.uint8)] * 2, "expected a square image"),
        ([tmp_path / "rgb.png"] * 2, "got mode RGB"),
        ([tmp_path / "missing.png"] * 2, "not a readable image"),
    ]
    for support, message in cases:
        with pytest.raises(UsageError, match=message):
            model.predict(support, ["a", "b"], good)
    with pytest.raises(UsageError, match="2 support images but 3 support labels"):
        model.predict(good, ["a", "b", "c"], good)


def test_snail_run_rejects_settings_beyond_its_size(omniglot_data, tmp_path):
    config = {**SMALL, "learner.kind": "snail", "learner.blocks": ["tc 8"], "train.iterations": 1}
    run = metarl.train(
        "snail-omniglot",
        out=tmp_path / "s",
        overrides=config,
        progress=False,
        data_dir=omniglot_data,
    )
    with pytest.raises(UsageError, match="at most 5-way 5-shot"):
        metarl.evaluate(run.path, 2, ways=20)


def test_fewshot_options_are_refused_for_bandit_runs(tmp_path):
    with pytest.raises(UsageError, match="only few-shot experiments"):
        metarl.train("snail-bandit", out=tmp_path / "b", data_dir=tmp_path)


@pytest.mark.parametrize(
    ("name", "extra"),
    [
        ("protonet-omniglot", {}),
        # Reptile's task threads: the replicas' merged Adam state is what resumes
        (  # (a step schedule: a linear one's length cannot change on resume)
            "reptile-omniglot",
            {"learner.task_threads": 2, "learner.test_steps": 2, "optim.schedule": "step"},
        ),
    ],
)
def test_a_resumed_fewshot_run_matches_the_uninterrupted_one(name, extra, omniglot_data, tmp_path):
    overrides = {**SMALL, "learner.channels": 8, "train.iterations": 4, "eval.val_every": 2}
    if extra:
        overrides |= {"episodes.meta_batch": 3, **extra}
    options = {"progress": False, "data_dir": omniglot_data}
    whole = metarl.train(name, out=tmp_path / "whole", overrides=overrides, **options)
    half = {**overrides, "train.iterations": 2}
    metarl.train(name, out=tmp_path / "half", overrides=half, **options)
    resumed = metarl.train(resume=tmp_path / "half", overrides=overrides, **options)
    losses = [[r["loss"] for r in runs.read_metrics(r.path)] for r in (whole, resumed)]
    assert losses[0] == losses[1]
    a = runs.load_checkpoint(whole.path)["agent"]
    b = runs.load_checkpoint(resumed.path)["agent"]
    torch.testing.assert_close(a["model"], b["model"], rtol=0, atol=0)  # Reptile: its Adam too
    assert a["val_accuracy"] == b["val_accuracy"]


def test_missing_data_offline_is_one_line_naming_the_folder(tmp_path, monkeypatch, capsys):
    import urllib.error
    import urllib.request

    from metarl.cli import main

    def offline(*args, **kwargs):
        raise urllib.error.URLError("no network")

    monkeypatch.setattr(urllib.request, "urlopen", offline)
    empty = tmp_path / "data"
    empty.mkdir()
    argv = ["train", "protonet-omniglot", "--data-dir", str(empty), "--out", str(tmp_path / "r")]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "could not download" in err and str(empty) in err
    assert not (tmp_path / "r").exists()


def test_a_diverging_run_stops_with_one_line_and_keeps_the_last_good_checkpoint(
    omniglot_data, tmp_path, capsys
):
    from metarl.cli import main

    base = ["--data-dir", str(omniglot_data), "--no-progress", "--set", "learner.kind=maml"]
    for key, value in {**SMALL, "episodes.meta_batch": 2, "learner.inner_steps": 2}.items():
        base += ["--set", f"{key}={value}"]
    good_run, bad_run = tmp_path / "good", tmp_path / "bad"
    train = ["train", "maml-omniglot", "--out"]
    assert main([*train, str(good_run), *base, "--set", "train.iterations=2"]) == 0
    good = (good_run / "checkpoint.pt").read_bytes()
    # the same run diverges from its first update with an absurd inner step size
    assert main([*train, str(bad_run), *base, "--set", "learner.inner_lr=1e30"]) == 1
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "iteration 0 diverged" in err
    assert err.endswith(f"nothing was saved ({bad_run} holds no checkpoint yet)")
    # nor can a hand-edited config.yaml change it on resume: checked against the checkpoint
    (good_run / "config.yaml").write_text(
        (good_run / "config.yaml").read_text().replace("inner_lr: 0.4", "inner_lr: 1.0e+30")
    )
    assert main(["train", "--resume", str(good_run), "--set", "train.iterations=4"]) == 2
    assert "--resume cannot change learner.inner_lr" in capsys.readouterr().err
    assert (good_run / "checkpoint.pt").read_bytes() == good


def test_an_impossible_validation_setting_is_rejected_before_training(
    omniglot_data, tmp_path, capsys
):
    from metarl.cli import main

    out = tmp_path / "run"
    args = ["train", "reptile-omniglot", "--out", str(out), "--data-dir", str(omniglot_data)]
    assert main([*args, "--set", "eval.queries=95"]) == 2
    assert "96 images per class, the validation split has 20" in capsys.readouterr().err
    assert not (out / "checkpoint.pt").exists()  # stopped before the first update


@pytest.mark.parametrize("proto_head", [False, True])
def test_maml_meta_gradient_episode_by_episode_on_threads_equals_the_batch_gradient(proto_head):
    from metarl.learners.maml_classifier import EpisodeThreads, MAMLClassifier

    torch.manual_seed(0)
    model = MAMLClassifier(Conv4(hidden=4), 4, 5, [0.5, 0.3], 2, proto_head=proto_head)
    episodes = EpisodeSampler(torch.randint(0, 256, (12, 6, 28, 28), dtype=torch.uint8), 3, 1, 2)
    batch = episodes.sample(np.random.default_rng(7), batch=5)
    inputs = (batch.support_x, batch.support_y, batch.query_x, batch.query_y, batch.ways)
    logits = model(batch.support_x, batch.support_y, batch.query_x, batch.ways)
    loss = model.loss(logits, batch.query_y)
    loss.backward()
    expected = [p.grad.clone() if p.grad is not None else None for p in model.parameters()]
    assert any(g is not None and g.abs().sum() > 0 for g in expected)
    for threads in (1, 3):
        model.zero_grad()
        episode_threads = EpisodeThreads(model, threads)
        episode_loss, episode_logits = episode_threads.backward(*inputs)
        episode_threads.close()
        assert episode_loss == pytest.approx(loss.item(), rel=1e-6)
        torch.testing.assert_close(episode_logits, logits.detach(), rtol=1e-3, atol=1e-4)
        for a, p in zip(expected, model.parameters(), strict=True):
            if a is None:  # Proto-MAML's learned head is unused
                assert not p.grad.any()
            else:  # float32 sums in another order: 1e-7 to 1.1e-5 of the gradient's size
                assert (a - p.grad).norm() <= 1e-4 * a.norm()
