"""Does second-order MAML keep its meta-gradient under mixed precision (``train.amp``)?

    python benchmarks/amp_check.py [--device cuda] [--data-dir DATA]

For the ``maml-omniglot`` learner (Conv4, 5-way 1-shot, 15 queries per class, one inner
step), on a meta-batch of 4 episodes of random images, it compares the meta-gradient of the
query loss computed under each precision with the float64 one, and the float64 one with
central finite differences along random directions (the check that the reference is right).
It prints, per precision: the relative error of the directional derivative against the
finite difference along the float64 gradient and (median) along 8 random directions, and the
cosine and relative norm error against the float64 gradient; with
``--data-dir``, also the seconds per training update of the shipped config (meta-batch 32)
in each precision. README's GPU section records its table and the ``train.amp`` default
chosen from it.
"""

from __future__ import annotations

import argparse
import copy
import statistics

import torch
import torch.nn.functional as F
from device_suite import seconds_per_iteration  # this folder's: the same timing rule
from torch import Tensor

from metarl.amp import MODES
from metarl.experiment import build_config, resolve_config
from metarl.learners.maml_classifier import MAMLClassifier
from metarl.registry import get_recipe

WAYS, QUERIES, TASKS, DIRECTIONS, EPS = 5, 15, 4, 8, 1e-6


def learner(device: torch.device) -> MAMLClassifier:
    """The shipped ``maml-omniglot`` classifier, its path chosen for ``device``."""
    torch.manual_seed(0)
    config = resolve_config(build_config("maml-omniglot", {"train.device": str(device)}))
    return config.learner.build(config.data.image_size, 0).to(device)


def query_loss(model: MAMLClassifier, batch: tuple[Tensor, ...]) -> Tensor:
    sx, sy, qx, qy = batch
    logits = model(sx, sy, qx, WAYS).to(sx.dtype)  # the loss itself in full precision
    return F.cross_entropy(logits.reshape(-1, WAYS), qy.reshape(-1))


def episodes(device: torch.device) -> tuple[Tensor, ...]:
    generator = torch.Generator().manual_seed(1)
    sx = torch.rand(TASKS, WAYS, 1, 28, 28, generator=generator)
    qx = torch.rand(TASKS, WAYS * QUERIES, 1, 28, 28, generator=generator)
    sy = torch.arange(WAYS).repeat(TASKS, 1)
    qy = torch.arange(WAYS).repeat_interleave(QUERIES).repeat(TASKS, 1)
    return tuple(t.to(device) for t in (sx, sy, qx, qy))


def gradient(model: MAMLClassifier, batch: tuple[Tensor, ...], mode: str) -> Tensor:
    """The flat meta-gradient of the query loss with the forward passes under ``mode``."""
    model.zero_grad()
    device = batch[0].device
    with torch.autocast(device.type, dtype=MODES[mode] or torch.float32, enabled=mode != "off"):
        loss = query_loss(model, batch)
    loss.backward()
    return torch.cat([p.grad.reshape(-1) for p in model.parameters()]).double()


def finite_differences(model: MAMLClassifier, batch: tuple[Tensor, ...], v: Tensor) -> float:
    """(L(θ + εv) − L(θ − εv)) / 2ε in float64."""
    params = list(model.parameters())
    theta = [p.detach().clone() for p in params]

    def loss_at(sign: float) -> float:
        offset = 0
        with torch.no_grad():
            for p, t in zip(params, theta, strict=True):
                p.copy_(t + sign * EPS * v[offset : offset + p.numel()].view_as(p))
                offset += p.numel()
        return query_loss(model, batch).item()

    value = (loss_at(1.0) - loss_at(-1.0)) / (2 * EPS)
    with torch.no_grad():
        for p, t in zip(params, theta, strict=True):
            p.copy_(t)
    return value


def agreement(device: torch.device) -> dict[str, dict[str, float]]:
    model = learner(device)
    reference_model = copy.deepcopy(model).double()
    batch = episodes(device)
    batch64 = tuple(t.double() if t.is_floating_point() else t for t in batch)
    reference = gradient(reference_model, batch64, "off")
    generator = torch.Generator().manual_seed(2)
    directions = [
        torch.randn(reference.numel(), generator=generator, dtype=torch.float64)
        for _ in range(DIRECTIONS)
    ]
    directions = [reference / reference.norm()] + [(v / v.norm()).to(device) for v in directions]
    fd = [finite_differences(reference_model, batch64, v) for v in directions]
    modes = ["off", "bf16"] + (["fp16"] if device.type == "cuda" else [])
    results = {"float64": _errors(reference, reference, directions, fd)}
    for mode in modes:
        results[mode] = _errors(gradient(model, batch, mode), reference, directions, fd)
    return results


def _errors(g: Tensor, reference: Tensor, directions: list[Tensor], fd: list[float]) -> dict:
    directional = [abs((g @ v).item() - d) / abs(d) for v, d in zip(directions, fd, strict=True)]
    return {
        "fd_rel_error_along_gradient": directional[0],
        "fd_rel_error_random_median": statistics.median(directional[1:]),
        "cosine": F.cosine_similarity(g, reference, dim=0).item(),
        "rel_norm_error": ((g - reference).norm() / reference.norm()).item(),
    }


def seconds_per_update(device: torch.device, data_dir: str, mode: str, seconds: float) -> float:
    overrides = {"train.device": str(device), "train.amp": mode, "data.dir": data_dir}
    config = resolve_config(build_config("maml-omniglot", overrides))
    agent = get_recipe(config.agent).build(config)
    try:
        return seconds_per_iteration(agent, device, seconds)
    finally:
        agent.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--data-dir", help="Omniglot folder: also time the shipped config")
    parser.add_argument("--seconds", type=float, default=5.0, help="timing budget per mode")
    args = parser.parse_args()
    device = torch.device(args.device)
    print(
        f"{'precision':10s} {'FD rel err: along ∇, random':>27s} {'cosine':>10s} {'norm err':>10s}"
    )
    for mode, r in agreement(device).items():
        print(
            f"{mode:10s} {r['fd_rel_error_along_gradient']:12.2e} "
            f"{r['fd_rel_error_random_median']:14.2e} "
            f"{r['cosine']:11.6f} {r['rel_norm_error']:10.2e}"
        )
    if args.data_dir:
        modes = ["off", "bf16"] + (["fp16"] if device.type == "cuda" else [])
        for mode in modes:
            s = seconds_per_update(device, args.data_dir, mode, args.seconds)
            print(f"maml-omniglot update, {mode}: {s * 1000:.1f} ms")


if __name__ == "__main__":
    main()
