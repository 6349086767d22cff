"""Device selection: ``train.device`` / ``--device`` resolved and checked against the machine
before anything is written."""

import pytest
import torch

from metarl.cli import main
from metarl.config import TrainConfig
from metarl.devices import on_cpu, resolve_device
from metarl.errors import ConfigError
from metarl.experiment import check_resume


@pytest.fixture
def one_gpu(monkeypatch):
    """This machine as one with a single CUDA device."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)


@pytest.fixture
def no_gpu(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 0)


def test_auto_is_cuda_where_there_is_one_else_the_cpu(monkeypatch, no_gpu):
    assert resolve_device("auto") == torch.device("cpu")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    assert resolve_device("auto") == torch.device("cuda")
    assert TrainConfig().device == "auto"


def test_cuda_and_cuda_n_resolve_on_a_one_gpu_machine(one_gpu):
    assert resolve_device("cuda") == torch.device("cuda", 0)
    assert resolve_device("cuda:0") == torch.device("cuda", 0)
    assert resolve_device("cpu") == torch.device("cpu")


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("gpu", "got 'gpu', expected auto, cpu, cuda, cuda:N or mps"),
        ("cuda:x", "got 'cuda:x', expected"),
        ("cuda:7", "got 'cuda:7', but this machine has 1 CUDA device "),
        ("cuda:1", "got 'cuda:1', but this machine has 1 CUDA device "),
        ("mps", "Metal (MPS) is not available"),
    ],
)
def test_bad_devices_are_refused_naming_the_key(one_gpu, monkeypatch, text, fragment):
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: False)
    with pytest.raises(ConfigError, match="config key 'train.device'") as err:
        TrainConfig(device=text)
    assert fragment in str(err.value) and "\n" not in str(err.value)


def test_cuda_without_a_gpu_is_refused(no_gpu):
    with pytest.raises(ConfigError, match="this machine has 0 CUDA devices"):
        resolve_device("cuda")


@pytest.mark.parametrize(
    "argv",
    [
        ["train", "snail-bandit", "--device", "tpu"],
        ["train", "snail-bandit", "--device", "cuda:7"],
        ["train", "snail-bandit", "--set", "train.device=mps"],
        ["sweep", "snail-bandit", "--set", "ppo.lr=1e-3,3e-3", "--device", "cuda:7"],
    ],
)
def test_cli_exits_2_with_one_line_and_writes_nothing(one_gpu, monkeypatch, tmp_path, capsys, argv):
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: False)
    out = tmp_path / "run"
    code = main([*argv, "--out", str(out)])
    err = capsys.readouterr().err
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("metarl: error:"), err
    assert "train.device" in lines[0]
    assert not out.exists()


def test_eval_refuses_a_device_this_machine_lacks(no_gpu, tmp_path, capsys):
    import metarl

    run = metarl.train(
        "lstm-bandit",
        out=tmp_path / "run",
        progress=False,
        device="cpu",
        overrides={"trials_per_iteration": 8, "sampler.shards": 2, "train.iterations": 1},
    )
    code = main(["eval", str(run.path), "--device", "cuda", "--episodes", "4"])
    err = capsys.readouterr().err
    assert code == 2 and "0 CUDA devices" in err and len(err.strip().splitlines()) == 1
    assert not (run.path / "eval.json").exists()


def test_the_device_may_change_on_resume():
    trained = {"train": {"device": "cuda", "iterations": 2}, "ppo": {"lr": 0.1}}
    check_resume(trained, {"train": {"device": "cpu", "iterations": 4}, "ppo": {"lr": 0.1}})


def test_on_cpu_detaches_and_moves_weights():
    weight = torch.ones(2, requires_grad=True) * 2
    copy = on_cpu({"w": weight})
    assert copy["w"].device.type == "cpu" and not copy["w"].requires_grad
    assert torch.equal(copy["w"], torch.full((2,), 2.0))


def test_a_sweep_trial_on_cuda_asks_ray_for_a_gpu(one_gpu):
    from metarl.experiment import build_config, resolve_config
    from metarl.sweep import _placement, trial_resources

    def resources(device):
        return trial_resources(resolve_config(build_config("snail-bandit", [device])))

    assert resources("train.device=cuda") == {"cpu": 1, "gpu": 1}
    assert resources("train.device=cpu") == {"cpu": 1}
    assert resources("train.device=auto") == {"cpu": 1, "gpu": 1}  # CUDA is there
    bundle = _placement({"trial": {"resources": {"cpu": 1, "gpu": 1}}}).bundles
    assert bundle == [{"CPU": 1, "GPU": 1}]


def test_rollout_actors_ask_for_the_gpus_the_sampler_section_gives():
    from metarl.config import SamplerConfig
    from metarl.rollout.samplers import actor_resources

    assert SamplerConfig().gpus_per_worker == 0
    assert actor_resources(SamplerConfig().gpus_per_worker) == {"num_cpus": 1}
    assert actor_resources(0.5) == {"num_cpus": 1, "num_gpus": 0.5}
    with pytest.raises(ConfigError, match="sampler.gpus_per_worker"):
        SamplerConfig(gpus_per_worker=-1)


@pytest.mark.parametrize(
    ("settings", "fragment"),
    [
        ({"device": "tpu"}, "expected cpu, cuda or cuda:N"),
        ({"device": "cuda"}, "this machine has 0 CUDA devices"),
        ({"device": "cuda", "backend": "ray"}, "unless sampler.gpus_per_worker > 0"),
    ],
)
def test_rollout_workers_act_on_the_cpu_unless_a_gpu_is_there_to_act_on(no_gpu, settings, fragment):
    from metarl.config import SamplerConfig

    assert SamplerConfig().device == "cpu"
    with pytest.raises(ConfigError, match=f"sampler.device.*{fragment}"):
        SamplerConfig(**settings)
    assert SamplerConfig(device="cuda", backend="ray", gpus_per_worker=0.5).device == "cuda"


@pytest.mark.parametrize("name", ["snail-bandit", "maml-nav2d"])
def test_both_rollout_workers_act_on_the_sampler_device(name, tmp_path):
    """``sampler.device`` reaches the workers of both kinds; ``cpu`` given explicitly
    samples the same iteration as the default."""
    from metarl.experiment import build_config, resolve_config
    from metarl.registry import get_recipe

    small = {
        "snail-bandit": {"trials_per_iteration": 8, "sampler.shards": 2},
        "maml-nav2d": {"env.meta_batch": 2, "env.episodes_per_task": 2, "sampler.shards": 2},
    }[name]
    metrics = []
    for extra in ({}, {"sampler.device": "cpu"}):
        config = resolve_config(build_config(name, {**small, **extra, "train.device": "cpu"}))
        agent = get_recipe(config.agent).build(config)
        try:
            worker = agent.sampler.worker
            assert worker.device == torch.device("cpu")
            assert {p.device for p in worker.policy.parameters()} == {torch.device("cpu")}
            row = agent.train_iteration(0)
            row.pop("pretrain_seconds", None)  # a wall time: the rest must be equal
            metrics.append(row)
        finally:
            agent.close()
    assert metrics[0] == metrics[1]


def test_the_rllib_baseline_refuses_a_gpu_device(one_gpu):
    from metarl.experiment import build_config, resolve_config

    with pytest.raises(ConfigError, match="train.device.*auto or cpu"):
        resolve_config(build_config("rllib-lstm-bandit", ["train.device=cuda"]))


def test_a_run_trained_with_fp16_on_cuda_evaluates_on_the_cpu(one_gpu):
    from metarl.experiment import build_config, for_evaluation, resolve_config

    raw = build_config("maml-omniglot", {"train.amp": "fp16", "train.device": "cuda"})
    config = resolve_config(for_evaluation(raw, device="cpu"))
    assert (config.train.amp, str(config.train.device)) == ("off", "cpu")
    # and a CPU run whose tasks trained on threads evaluates on the GPU
    raw = build_config("reptile-omniglot", {"learner.task_threads": 2})
    config = resolve_config(for_evaluation(raw, device="cuda"))
    assert (config.learner.task_threads, config.train.device) == (1, "cuda")
    bandit = for_evaluation(build_config("snail-bandit", {"sampler.backend": "ray"}))
    assert bandit["sampler"]["backend"] == "local" and "amp" not in bandit["train"]


def test_torch_threads_sets_and_restores_the_callers_setting_even_on_error():
    import torch

    from metarl.devices import torch_threads

    before = torch.get_num_threads()
    with pytest.raises(RuntimeError), torch_threads(before + 1):
        assert torch.get_num_threads() == before + 1
        raise RuntimeError
    assert torch.get_num_threads() == before
    with torch_threads(0):  # 0: left as it is
        assert torch.get_num_threads() == before
