"""``eval.png``: adaptation curves, training curves and sweep plots of ``metarl eval``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from metarl import runs
from metarl.files import write_atomic

# x-axis label of each kind of adaptation curve (report["curve_of"]); bandits: pulls
CURVE_LABELS = {
    "shots": "support images per class",
    "inner_steps": "inner gradient steps",
    "gradient_steps": "policy-gradient steps on the task",
    "instance": "showing of the class (instance)",
    "episode": "episode of the trial",
}
# y-axis label of each metric's curve; bandits: the mean reward of each pull
METRIC_LABELS = {
    "accuracy": "accuracy",
    "return": "mean episode return",
    "episode_length": "mean episode length (steps)",
}


def plot_sweep(report: dict[str, Any], path: Path) -> None:
    """``eval.png`` of a sweep: each configuration's mean curve with its 95% CI band."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    for config in report["configs"]:
        x, mean, ci = (np.asarray(config["curve"][k]) for k in ("x", "mean", "ci95"))
        ax.plot(x, mean, marker="o" if len(x) <= 20 else None, label=config["label"])
        ax.fill_between(x, mean - ci, mean + ci, alpha=0.2)
    ax.set_xlabel(CURVE_LABELS.get(report["curve_of"], "pull"))
    ax.set_ylabel(METRIC_LABELS.get(report["metric"], "mean reward"))
    seeds = max(len(c["seeds"]) for c in report["configs"])
    ax.set_title(f"{report['experiment']}: mean and 95% CI over up to {seeds} seeds")
    ax.legend(fontsize=8)
    fig.tight_layout()
    write_atomic(path / "eval.png", lambda f: fig.savefig(f, dpi=110, format="png"))
    plt.close(fig)


def plot_report(report: dict[str, Any], path: Path) -> None:
    """``eval.png``: the adaptation curve of the agent and its baselines, and, when the run
    has ``metrics.csv``, the training curve."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    trial = report.get("rendered_trial")
    panels = 3 if trial else 2
    fig, axes = plt.subplots(1, panels, figsize=(6 * panels, 4.5))
    ax_curve, ax_train = axes[:2]
    if trial:  # a maze trial: each episode's path in its own colour
        from envs.mazes import draw_paths

        axes[2].imshow(draw_paths(np.asarray(trial["task"]), trial["paths"]))
        colours = ("blue", "orange", "purple", "brown", "cyan")[: len(trial["paths"])]
        names = [f"episode {i + 1} {c}" for i, c in enumerate(colours)]
        axes[2].set_title("one held-out trial: " + ", ".join(names))
        axes[2].axis("off")
    curve = report["curve"]
    for name, values in curve.items():
        if name == "x":
            continue
        style = {"linewidth": 2.5, "color": "black"} if name == "agent" else {"alpha": 0.8}
        marker = "o" if len(curve["x"]) <= 20 else None  # a 1-shot curve is a single point
        ax_curve.plot(curve["x"], values, label=name, marker=marker, **style)
    fewshot = report["metric"] == "accuracy"
    ax_curve.set_xlabel(CURVE_LABELS.get(report.get("curve_of", ""), "pull"))
    ax_curve.set_ylabel(METRIC_LABELS.get(report["metric"], "mean reward"))
    setting = f" {report['ways']}-way" if fewshot else ""
    ax_curve.set_title(
        f"{report['experiment']}: adaptation on {report['episodes']}{setting} held-out tasks"
    )
    ax_curve.legend(fontsize=8)
    ax_curve.xaxis.set_major_locator(MaxNLocator(integer=True))
    metrics_file = path / runs.METRICS
    if metrics_file.is_file():
        rows = runs.read_metrics(path)
        steps = [r["total_env_steps"] for r in rows]
        if fewshot:  # training batches' accuracy, smoothed, and the validation measurements
            train = np.convolve([r["accuracy"] for r in rows], np.ones(50) / 50, mode="valid")
            ax_train.plot(steps[len(steps) - len(train) :], train, alpha=0.6, label="training")
            ax_train.plot(steps, [r["val_accuracy"] for r in rows], label="validation")
            ax_train.legend(fontsize=8)
        elif "pre_return" in rows[0]:  # adapted by gradient steps: before and after them
            ax_train.plot(steps, [r["pre_return"] for r in rows], label="before adaptation")
            ax_train.plot(steps, [r["mean_return"] for r in rows], label="after adaptation")
            ax_train.legend(fontsize=8)
        elif "length_episode_1" in rows[0]:  # maze trials: each episode's length
            for key in (k for k in rows[0] if k.startswith("length_episode_")):
                ax_train.plot(steps, [r[key] for r in rows], label=key.replace("_", " "))
            ax_train.legend(fontsize=8)
        else:
            ax_train.plot(steps, [r["mean_return"] for r in rows])
        for name, value in report["baselines"].items():
            ax_train.axhline(value, linestyle=":", alpha=0.6)
            ax_train.annotate(name, (0, value), fontsize=7, alpha=0.8)
    ax_train.set_xlabel("training episodes" if fewshot else "environment steps")
    ax_train.set_ylabel(f"training {report['metric']}")
    ax_train.set_title("training curve")
    fig.tight_layout()
    write_atomic(path / "eval.png", lambda f: fig.savefig(f, dpi=110, format="png"))
    plt.close(fig)
