"""Second-order MAML training speed and peak memory: ours against learn2learn.

Times meta-iterations (forward, backward, Adam step) of ``maml-omniglot`` at MAML's
Omniglot protocol (5-way 1-shot, meta-batch 32, one inner step of α = 0.4, second order,
Conv4 of 64 channels, 28x28 images) with 1 and with 15 queries per class, on 1 and 2
threads, for:

- ``ours-batched``: ``MAMLClassifier`` task-batched (``vmap`` over the meta-batch), its
  default on accelerators;
- ``ours-loop``: ``MAMLClassifier``'s forward episode by episode, then one backward
  through the whole meta-batch (the CPU training default before issue 16);
- ``ours-episodes``: forward and backward episode by episode, the meta-batch shared among
  as many threads as the measurement has, each with one intra-op thread
  (``EpisodeThreads``, ``metarl train``'s default on CPU since issue 16);
- ``l2l``: learn2learn's ``MAML(net, lr=0.4, first_order=False)``, ``clone()`` and
  ``adapt(loss)`` per episode, backward per episode as its Omniglot example does, on the
  same network with the same initial weights (``MAMLClassifier.net``, pickled).

The images are random (speed does not depend on them). Each measurement runs in a fresh
process, which reports the median seconds per iteration after a warm-up and its peak
resident memory (``ru_maxrss``, which counts what torch allocates, unlike tracemalloc);
every process sets glibc's allocator as the few-shot recipe does. Measurements are
interleaved (each repeat runs every variant once) so that all see the same load on a
shared machine; the table gives medians over repeats and the load averages.

learn2learn is no dependency of ours: it runs under the interpreter of another
environment given by ``--l2l-python``, with this repository on its ``PYTHONPATH``.
learn2learn 0.2.0 builds on Python 3.11 once its Cython sources are regenerated with
Cython 3 (``cythonize -3 -f learn2learn/data/*.pyx`` in the unpacked sdist, then
``pip install --no-build-isolation --no-deps .``); it imports torchvision, whose PyPI
wheels need CUDA torch, so on CPU torch ``torchvision/_meta_registrations.py`` must skip
its ``nms``/``qnms`` registrations when the C++ ops did not load. It also imports gym,
requests, scipy and tqdm.

Run (from the repository root):

    python benchmarks/maml_speed.py --l2l-python L2L_ENV/bin/python  # L2L_ENV: learn2learn's venv
    python benchmarks/maml_speed.py --threads 1 --queries 1 --repeats 1  # ours only
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from metarl.allocator import keep_freed_memory
from metarl.learners.maml_classifier import EpisodeThreads

REPO = Path(__file__).resolve().parent.parent
WAYS, META_BATCH, INNER_LR, IMAGE_SIZE = 5, 32, 0.4, 28
VARIANTS = ("ours-batched", "ours-loop", "ours-episodes", "l2l")


def build_classifier(batched: bool) -> nn.Module:
    """``maml-omniglot``'s classifier, built from its config's learner section."""
    from agents.fewshot_omniglot import Config
    from metarl.config import from_dict, read_raw

    torch.manual_seed(0)
    learner = from_dict(Config, read_raw("maml-omniglot")).learner
    model = learner.build(IMAGE_SIZE, train_classes=1)
    model.batched = batched
    return model


def meta_batch(queries: int) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Random images and labels of one meta-batch: support and query, (T, n, 1, 28, 28)."""
    g = torch.Generator().manual_seed(0)
    labels = torch.arange(WAYS)
    support_x = torch.rand(META_BATCH, WAYS, 1, IMAGE_SIZE, IMAGE_SIZE, generator=g)
    query_x = torch.rand(META_BATCH, WAYS * queries, 1, IMAGE_SIZE, IMAGE_SIZE, generator=g)
    support_y = labels.repeat(META_BATCH, 1)
    query_y = labels.repeat_interleave(queries).repeat(META_BATCH, 1)
    return support_x, support_y, query_x, query_y


def ours_step(variant: str, queries: int, threads: int) -> Callable[[], None]:
    """One meta-iteration of ``MAMLClassifier`` as ``variant`` runs it."""
    model = build_classifier(variant == "ours-batched")
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    support_x, support_y, query_x, query_y = meta_batch(queries)
    # only this variant holds thread replicas, so the others' peak memory is their own
    episode_threads = EpisodeThreads(model, threads) if variant == "ours-episodes" else None

    def step() -> None:
        optimizer.zero_grad()
        if episode_threads is not None:
            episode_threads.backward(support_x, support_y, query_x, query_y, WAYS)
        else:
            model.loss(model(support_x, support_y, query_x, WAYS), query_y).backward()
        optimizer.step()

    return step


def l2l_step(net_file: str, queries: int) -> Callable[[], None]:
    """One meta-iteration of learn2learn's MAML on the pickled network ``net_file``."""
    import learn2learn as l2l

    maml = l2l.algorithms.MAML(torch.load(net_file, weights_only=False), lr=INNER_LR)
    optimizer = torch.optim.Adam(maml.parameters(), lr=1e-3)
    support_x, support_y, query_x, query_y = meta_batch(queries)

    def step() -> None:
        optimizer.zero_grad()
        for xs, ys, xq, yq in zip(support_x, support_y, query_x, query_y, strict=True):
            learner = maml.clone()
            learner.adapt(F.cross_entropy(learner(xs), ys))
            (F.cross_entropy(learner(xq), yq) / META_BATCH).backward()
        optimizer.step()

    return step


def worker(args: argparse.Namespace) -> None:
    """One measurement (one thread count, one query count), printed as a JSON line."""
    (threads,), (queries,) = args.threads, args.queries
    torch.set_num_threads(threads)
    keep_freed_memory()
    if args.worker == "l2l":
        step = l2l_step(args.net_file, queries)
    else:
        step = ours_step(args.worker, queries, threads)
    step()  # warm-up
    seconds = []
    for _ in range(args.iterations):
        start = time.perf_counter()
        step()
        seconds.append(time.perf_counter() - start)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"seconds": statistics.median(seconds), "peak_mib": peak}))


def measure(variant: str, threads: int, queries: int, args: argparse.Namespace) -> dict[str, float]:
    """Seconds per iteration and peak MiB of ``variant``, in a fresh process."""
    python = args.l2l_python if variant == "l2l" else sys.executable
    command = [python, __file__, "--worker", variant, "--threads", str(threads)]
    command += ["--queries", str(queries), "--iterations", str(args.iterations)]
    command += ["--net-file", args.net_file]
    env = {
        **os.environ,
        "OMP_NUM_THREADS": str(threads),
        "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])),
        "PYTHONWARNINGS": "ignore",
    }
    out = subprocess.run(command, env=env, capture_output=True, text=True, check=False)
    if out.returncode != 0:
        raise RuntimeError(f"{variant} failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--l2l-python", help="interpreter of an environment with learn2learn")
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--queries", type=int, nargs="+", default=[1, 15])
    parser.add_argument("--iterations", type=int, default=3, help="timed, after 1 warm-up")
    parser.add_argument("--repeats", type=int, default=3, help="fresh processes per cell")
    parser.add_argument("--variants", nargs="+", choices=VARIANTS, default=list(VARIANTS))
    parser.add_argument("--worker", choices=VARIANTS, help=argparse.SUPPRESS)
    parser.add_argument("--net-file", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(args)
        return
    variants = [v for v in args.variants if v != "l2l" or args.l2l_python]
    with tempfile.TemporaryDirectory() as folder:
        args.net_file = str(Path(folder) / "net.pt")
        torch.save(build_classifier(batched=False).net, args.net_file)
        loads = [os.getloadavg()]
        results: dict[tuple[str, int, int], list[dict[str, float]]] = {}
        for _ in range(args.repeats):
            for threads in args.threads:
                for queries in args.queries:
                    for variant in variants:
                        result = measure(variant, threads, queries, args)
                        results.setdefault((variant, threads, queries), []).append(result)
                        print(variant, threads, queries, result, file=sys.stderr, flush=True)
        loads.append(os.getloadavg())
    print(
        f"maml-omniglot, 5-way 1-shot, meta-batch {META_BATCH}, 1 inner step, second order, "
        f"Conv4-64; median of {args.repeats} processes x {args.iterations} iterations"
    )
    print(
        "load average (1, 5, 15 min): "
        + " -> ".join(", ".join(f"{x:.2f}" for x in a) for a in loads)
    )
    header = ("variant", "threads", "queries", "s/iteration", "peak MiB", "vs l2l")
    print("{:<14} {:>7} {:>7} {:>12} {:>9} {:>7}".format(*header))
    for (variant, threads, queries), cell in results.items():
        seconds = statistics.median(r["seconds"] for r in cell)
        peak = statistics.median(r["peak_mib"] for r in cell)
        l2l = results.get(("l2l", threads, queries))
        ratio = statistics.median(r["seconds"] for r in l2l) / seconds if l2l else float("nan")
        print(
            f"{variant:<14} {threads:>7} {queries:>7} {seconds:>12.3f} {peak:>9.0f} {ratio:>6.2f}x"
        )


if __name__ == "__main__":
    main()
