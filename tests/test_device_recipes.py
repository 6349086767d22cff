"""Every recipe on an explicit device: trained and evaluated with ``--device cpu``, checkpoints
loaded across devices, and no learner creating a tensor on the default device instead of its
model's.

The consistency check runs a training iteration with ``meta`` as torch's default device
(:func:`on_meta_default`): a tensor made without ``device=`` then lands on ``meta``, and the
first operation mixing it with the model's CPU tensors fails (as it would on CUDA), while
tensors made on the model's device, or from NumPy, are unaffected.
"""

import importlib.util

import numpy as np
import pytest
import torch
from torch import nn

import metarl
from metarl.cli import main
from metarl.experiment import build_config, resolve_config
from metarl.registry import get_recipe
from metarl.runs import load_checkpoint, read_json
from tests.test_maml_rl import TINY as META_PG
from tests.test_rllib_baseline import TINY as RLLIB

SMALL_SNAIL = {"model.blocks": ["tc 8", "attention 8 8"], "model.projection_size": 8}
SMALL_MANN = {"model.hidden_size": 16, "model.memory_slots": 8, "model.memory_width": 4}
BANDIT = {"trials_per_iteration": 16, "sampler.shards": 2, "ppo.minibatches": 2}
MAZE = {**BANDIT, "trials_per_iteration": 8, "env.size": 3, "env.max_episode_steps": 12}
FEWSHOT = {
    "data.protocol": "lake",
    "episodes.ways": 5,
    "episodes.shots": 1,
    "episodes.queries": 2,
    "learner.channels": 8,
    "eval.val_episodes": 4,
}
ONLINE = {
    "data.protocol": "lake",
    "channels": 8,
    "episodes.meta_batch": 2,
    "episodes.instances": 3,
    **SMALL_MANN,
    "model.read_heads": 1,
    "model.compile_step": False,  # tests/test_mann.py checks the compiled step
    "eval.val_episodes": 4,
}
NO_MUJOCO = importlib.util.find_spec("mujoco") is None

# one experiment per recipe (and the locomotion family of maml-rl), trained and evaluated
RECIPES = {
    "snail-bandit": BANDIT | SMALL_SNAIL,
    "snail-maze": MAZE | SMALL_SNAIL,
    "maml-nav2d": META_PG,
    "maml-halfcheetah-vel": META_PG,
    "protonet-omniglot": FEWSHOT,
    "mann-omniglot": ONLINE,
    "rllib-lstm-bandit": RLLIB,
}
EVAL_SETTINGS = {"maml-rl": ["eval.ppo_tasks=0", "eval.pretrain_iterations=1", "eval.steps=1"]}

# every learner and backbone, for the device-consistency check of one training iteration
LEARNERS = {
    "snail-bandit": BANDIT | SMALL_SNAIL,
    "lstm-bandit": BANDIT | {"model.hidden_size": 16},
    "mann-bandit": BANDIT | SMALL_MANN,
    "mann-maze": MAZE | SMALL_MANN,
    "maml-nav2d": META_PG,
    "maml-mdp": META_PG,  # the categorical policy and discrete episode worker
    "reptile-halfcheetah-vel": META_PG,
    "protonet-omniglot": FEWSHOT,
    "matchingnet-omniglot": FEWSHOT | {"learner.fce_steps": 2},
    "relationnet-omniglot": FEWSHOT,
    "snail-omniglot": FEWSHOT | {"learner.blocks": ["tc 8", "attention 8 8"]},
    "finetune-omniglot": FEWSHOT | {"learner.pretrain_batch": 8},
    "maml-omniglot": FEWSHOT | {"episodes.meta_batch": 2},
    "protomaml-omniglot": FEWSHOT | {"episodes.meta_batch": 2},
    "reptile-omniglot": FEWSHOT | {"episodes.meta_batch": 2, "learner.inner_steps": 2},
    "metanet-omniglot": FEWSHOT,
    "mann-omniglot": ONLINE,
}


def needs(name: str, request: pytest.FixtureRequest) -> list[str]:
    """Skip what this machine cannot run; the command-line options the experiment needs."""
    if "halfcheetah" in name and NO_MUJOCO:
        pytest.skip("MuJoCo is not installed")
    if name.endswith("-omniglot"):
        return ["--data-dir", str(request.getfixturevalue("omniglot_data"))]
    return []


def sets(overrides: dict) -> list[str]:
    return [arg for key, value in overrides.items() for arg in ("--set", f"{key}={value}")]


@pytest.mark.parametrize("name", list(RECIPES))
def test_every_recipe_trains_and_evaluates_with_device_cpu(name, request, tmp_path, capsys):
    data = needs(name, request)
    out = tmp_path / "run"
    overrides = {**RECIPES[name], "train.iterations": 2}
    code = main(
        ["train", name, "--device", "cpu", "--out", str(out), "--no-progress"]
        + sets(overrides)
        + data
    )
    assert code == 0, capsys.readouterr().err
    recipe = resolve_config(build_config(None, resume=out)).agent
    settings = sets(dict(s.split("=") for s in EVAL_SETTINGS.get(recipe, [])))
    code = main(["eval", str(out), "--device", "cpu", "--episodes", "4", *settings, *data])
    assert code == 0, capsys.readouterr().err
    report = read_json(out / "eval.json")
    assert report["trained_iterations"] == 2 and np.isfinite(report["value"])
    assert load_checkpoint(out)["config"]["train"]["device"] == "cpu"


def build_agent(name: str, request: pytest.FixtureRequest, device: str = "cpu"):
    data = needs(name, request)
    raw = build_config(name, {**LEARNERS[name], "train.device": device})
    if data:
        raw["data"]["dir"] = data[1]
    config = resolve_config(raw)
    agent = get_recipe(config.agent).build(config)
    request.addfinalizer(agent.close)
    return agent


def on_meta_default(train_iteration, iteration: int = 0) -> dict:
    """``train_iteration(iteration)`` with ``meta`` as torch's default device."""
    with torch.device("meta"):
        return train_iteration(iteration)


@pytest.mark.parametrize("name", list(LEARNERS))
def test_no_learner_creates_tensors_on_the_default_device(name, request):
    agent = build_agent(name, request)
    metrics = on_meta_default(agent.train_iteration)
    assert np.isfinite(metrics[agent.headline])


class ToyLearner:
    """A learner that adds a bias to its model's output: on the model's device when
    ``careful``, on the default device (the bug the check is for) otherwise."""

    def __init__(self, careful: bool) -> None:
        self.model, self.careful = nn.Linear(3, 2), careful

    def train_iteration(self, iteration: int) -> dict:
        out = self.model(torch.from_numpy(np.ones((4, 3), dtype=np.float32)))
        bias = out.new_zeros(2) if self.careful else torch.zeros(2)
        loss = (out + bias).pow(2).mean()
        loss.backward()
        return {"loss": loss.item()}


def test_the_consistency_check_catches_a_tensor_on_the_default_device():
    assert np.isfinite(on_meta_default(ToyLearner(careful=True).train_iteration)["loss"])
    with pytest.raises(RuntimeError, match="meta"):
        on_meta_default(ToyLearner(careful=False).train_iteration)


@pytest.mark.parametrize("name", ["snail-bandit", "maml-nav2d", "protonet-omniglot"])
def test_a_checkpoint_loads_onto_the_cpu(name, request, tmp_path):
    data = needs(name, request)
    overrides = {**LEARNERS[name], "train.iterations": 1}
    run = metarl.train(
        name,
        out=tmp_path / "run",
        overrides=overrides,
        device="cpu",
        data_dir=data[1] if data else None,
        progress=False,
    )
    state = load_checkpoint(run.path)["agent"]
    agent = build_agent(name, request)
    agent.load_state_dict(state)
    loaded = agent.state_dict()
    model = next(v for k, v in loaded.items() if k in ("policy", "model"))
    saved = state["policy" if "policy" in state else "model"]
    for key, value in model.items():
        assert value.device.type == "cpu" and torch.equal(value, saved[key])


CUDA = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


@pytest.mark.cuda
@CUDA
@pytest.mark.parametrize("name", ["snail-bandit", "maml-nav2d", "protonet-omniglot"])
def test_a_checkpoint_moves_between_cuda_and_cpu(name, request, tmp_path, capsys):
    data = needs(name, request)
    overrides = sets({**LEARNERS[name], "train.iterations": 2})
    for trained, evaluated in (("cuda", "cpu"), ("cpu", "cuda")):
        out = tmp_path / trained
        code = main(
            ["train", name, "--device", trained, "--out", str(out), "--no-progress"]
            + overrides
            + data
        )
        assert code == 0, capsys.readouterr().err
        agent = build_agent(name, request, evaluated)
        agent.load_state_dict(load_checkpoint(out)["agent"])
        model = agent.policy if hasattr(agent, "policy") else agent.model
        assert {p.device.type for p in model.parameters()} == {evaluated}
        settings = sets(dict(s.split("=") for s in EVAL_SETTINGS.get("maml-rl", [])))
        settings = settings if name.startswith("maml") else []
        code = main(["eval", str(out), "--device", evaluated, "--episodes", "4", *settings, *data])
        assert code == 0, capsys.readouterr().err


@pytest.mark.cuda
@CUDA
@pytest.mark.parametrize("name", list(LEARNERS))
def test_every_learner_trains_an_iteration_on_cuda(name, request):
    agent = build_agent(name, request, "cuda")
    metrics = agent.train_iteration(0)
    assert np.isfinite(metrics[agent.headline])


def test_every_row_of_the_device_suite_resolves_at_full_size():
    """The suite's GPU settings, checked here since a GPU's time is short."""
    from tests.test_benchmarks import benchmark_script

    suite = benchmark_script("device_suite")
    for row in suite.ROWS:
        for quick in (False, True):
            config = suite.row_config(row, "cpu", None, quick)
            assert config.train.device == "cpu"
    maml = suite.row_config(suite.ROWS[0], "cpu", None, False).episodes
    assert (maml.ways, maml.shots, maml.queries, maml.meta_batch) == (5, 1, 15, 32)


def bf16_training(name, device, batched, request):
    """Two bf16 iterations of ``name`` on ``device``: the agent, its metrics, and the
    dtypes of its first convolution's outputs."""
    data = needs(name, request)
    raw = build_config(name, {**LEARNERS[name], "train.amp": "bf16", "train.device": device})
    raw["data"]["dir"] = data[1]
    config = resolve_config(raw)
    agent = get_recipe(config.agent).build(config)
    if batched is not None:
        agent.model.batched = batched
    dtypes = set()
    conv = next(m for m in agent.model.modules() if isinstance(m, nn.Conv2d))
    conv.register_forward_hook(lambda module, args, out: dtypes.add(out.dtype))
    return agent, [agent.train_iteration(i) for i in range(2)], dtypes


@pytest.mark.parametrize(
    ("name", "batched", "dtype"),
    [
        ("protonet-omniglot", None, torch.bfloat16),
        ("maml-omniglot", False, torch.bfloat16),
        # measured (torch 2.13): autocast does not reach inside torch.func.vmap on the CPU
        ("maml-omniglot", True, torch.float32),
    ],
)
def test_bf16_autocast_trains_on_the_cpu(name, batched, dtype, request):
    agent, metrics, dtypes = bf16_training(name, "cpu", batched, request)
    assert dtypes == {dtype}
    assert all(np.isfinite(m["loss"]) for m in metrics)
    assert all(p.dtype == torch.float32 for p in agent.model.parameters())  # weights stay
    assert agent.state_dict()["scaler"] == {}


@pytest.mark.cuda
@CUDA
@pytest.mark.parametrize("batched", [False, True])
def test_bf16_autocast_reaches_both_maml_paths_on_cuda(batched, request):
    agent, metrics, dtypes = bf16_training("maml-omniglot", "cuda", batched, request)
    assert dtypes == {torch.bfloat16} and all(np.isfinite(m["loss"]) for m in metrics)


def test_fp16_on_the_cpu_exits_2_and_writes_nothing(tmp_path, capsys):
    out = tmp_path / "run"
    code = main(
        [
            "train",
            "protonet-omniglot",
            "--set",
            "train.amp=fp16",
            "--device",
            "cpu",
            "--out",
            str(out),
        ]
    )
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "train.amp" in err[0] and "fp16 needs a GPU" in err[0]
    assert not out.exists()


def test_amp_is_a_key_of_the_few_shot_recipe_only(monkeypatch):
    from metarl.errors import ConfigError

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    on_gpu = {"train.device": "cuda", "train.amp": "fp16"}
    assert resolve_config(build_config("maml-omniglot", on_gpu)).train.amp == "fp16"
    with pytest.raises(ConfigError, match="train.amp.*off or bf16 for learner.kind 'reptile'"):
        resolve_config(build_config("reptile-omniglot", on_gpu))
    with pytest.raises(ConfigError, match="train.amp.*expected off, bf16 or fp16"):
        resolve_config(build_config("maml-omniglot", {"train.amp": "fp8"}))
    threads = {"train.device": "cuda", "learner.task_threads": 2}
    with pytest.raises(ConfigError, match="learner.task_threads.*got 2, expected 1 on a GPU"):
        resolve_config(build_config("reptile-omniglot", threads))
    threads["train.device"] = "cpu"
    assert resolve_config(build_config("reptile-omniglot", threads)).learner.task_threads == 2
    # YAML reads a bare `off` (`--set train.amp=off`, `amp: off` in a file) as false
    assert resolve_config(build_config("maml-omniglot", {"train.amp": False})).train.amp == "off"
    with pytest.raises(ConfigError, match="train.amp.*got True, expected off, bf16 or fp16"):
        resolve_config(build_config("maml-omniglot", {"train.amp": True}))
    with pytest.raises(ConfigError, match="unknown config key 'train.amp'"):
        resolve_config(build_config("snail-bandit", {"train.amp": "bf16"}))


@pytest.mark.cuda
@CUDA
@pytest.mark.parametrize("name", ["protonet-omniglot", "maml-omniglot", "finetune-omniglot"])
def test_fp16_trains_with_a_gradient_scaler_on_cuda(name, request):
    data = needs(name, request)
    raw = build_config(name, {**LEARNERS[name], "train.amp": "fp16", "train.device": "cuda"})
    raw["data"]["dir"] = data[1]
    config = resolve_config(raw)
    agent = get_recipe(config.agent).build(config)
    metrics = [agent.train_iteration(i) for i in range(3)]
    assert all(np.isfinite(m["loss"]) for m in metrics)
    scaler = agent.state_dict()["scaler"]
    assert scaler["scale"] > 0
    agent.load_state_dict(agent.state_dict())


@pytest.mark.cuda
@CUDA
@pytest.mark.parametrize("name", ["snail-bandit", "maml-nav2d"])
def test_rollout_workers_act_on_cuda(name, request):
    raw = build_config(name, {**LEARNERS[name], "sampler.device": "cuda", "train.device": "cuda"})
    config = resolve_config(raw)
    agent = get_recipe(config.agent).build(config)
    try:
        assert {p.device.type for p in agent.sampler.worker.policy.parameters()} == {"cuda"}
        metrics = [agent.train_iteration(i) for i in range(2)]
    finally:
        agent.close()
    assert all(np.isfinite(m[agent.headline]) for m in metrics)
