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
    "success_rate": "success rate",
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


BASELINE_COLOURS = (
    "tab:green",
    "tab:red",
    "tab:pink",
    "tab:olive",
    "tab:gray",
    "tab:cyan",
    "tab:purple",
    "tab:brown",
    "tab:blue",
    "tab:orange",
)
"""Baselines' colours in order of first appearance; the agent is black. Blue and orange come
last: a maze trial's episodes are drawn in them (:data:`envs.mazes.PATH_RGB`)."""

STEP_LABELS = {
    "total_env_steps": "environment steps",
    "total_episodes": "training episodes",
    "wall_time": "training wall-clock minutes",
}
"""x-axis label of the training curve, by the cumulative column of ``metrics.csv``."""


def series_colours(report: dict[str, Any]) -> dict[str, str]:
    """One colour per series of ``report`` (its curve and its baselines), the same in every
    panel of ``eval.png``: the agent black, each baseline its own."""
    names = [n for n in [*report.get("curve", {}), *report["baselines"]] if n not in ("x", "agent")]
    unique = list(dict.fromkeys(names))
    colours = {n: BASELINE_COLOURS[i % len(BASELINE_COLOURS)] for i, n in enumerate(unique)}
    return {"agent": "black", **colours}


def fewshot_settings(report: dict[str, Any], path: Path) -> list[dict[str, Any]]:
    """The few-shot settings measured on the same checkpoint as ``report``, from the
    ``eval-{ways}w{shots}s.json`` files beside it and ``report`` itself, ordered by ways then
    shots."""
    found = {(report["ways"], report["shots"]): report}
    for file in path.glob("eval-*w*s.json"):
        other = runs.read_json(file)
        same = other.get("trained_iterations") == report.get("trained_iterations")
        if same and "ways" in other and "shots" in other:
            found.setdefault((other["ways"], other["shots"]), other)
    return [found[key] for key in sorted(found)]


def _plot_settings(ax: Any, settings: list[dict[str, Any]], colours: dict[str, str]) -> None:
    """Grouped bars with 95% CIs: per few-shot setting, the agent and each baseline."""
    names = ["agent", *dict.fromkeys(n for r in settings for n in r["baselines"])]
    width = 0.8 / len(names)
    for j, name in enumerate(names):
        means, errors = [], []
        for r in settings:
            ci = r.get("baselines_ci95", {})
            means.append(r["value"] if name == "agent" else r["baselines"].get(name, np.nan))
            errors.append(r["ci95"] if name == "agent" else ci.get(name, 0.0))
        x = np.arange(len(settings)) + (j - (len(names) - 1) / 2) * width
        colour = colours.setdefault(name, BASELINE_COLOURS[len(colours) % len(BASELINE_COLOURS)])
        ax.bar(x, means, width, yerr=errors, capsize=3, color=colour, label=name)
        for xi, mean, error in zip(x, means, errors, strict=True):
            if np.isfinite(mean):  # above the error bar
                ax.annotate(f"{mean:.3f}", (xi, mean + error), ha="center", va="bottom", fontsize=6)
    ax.set_xticks(np.arange(len(settings)))
    ax.set_xticklabels([f"{r['ways']}-way {r['shots']}-shot" for r in settings])
    ax.set_ylim(0, 1.15)
    ax.set_ylabel("test accuracy (95% CI)")
    ax.set_title(f"{settings[0].get('episodes', '')} test episodes per setting")
    ax.legend(fontsize=8, loc="upper center", ncol=len(names))


def _plot_curve(ax: Any, report: dict[str, Any], colours: dict[str, str]) -> None:
    """The adaptation curve of the agent and each baseline, coloured by name."""
    from matplotlib.ticker import MaxNLocator

    curve = report["curve"]
    marker = "o" if len(curve["x"]) <= 20 else None
    for name, values in curve.items():
        if name == "x":
            continue
        style = {"linewidth": 2.5} if name == "agent" else {"alpha": 0.85}
        ax.plot(curve["x"], values, label=name, marker=marker, color=colours[name], **style)
    ax.set_xlabel(CURVE_LABELS.get(report.get("curve_of", ""), "pull"))
    ax.set_ylabel(METRIC_LABELS.get(report["metric"], "mean reward"))
    setting = f" {report['ways']}-way" if "ways" in report else ""
    ax.set_title(
        f"{report['experiment']}: adaptation on {report['episodes']}{setting} held-out tasks"
    )
    ax.legend(fontsize=8)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))


def _smooth(values: list[float], window: int = 50) -> np.ndarray:
    """Trailing mean over up to ``window`` values, from the first value on."""
    sums = np.cumsum(np.concatenate([[0.0], values]))
    ends = np.arange(1, len(values) + 1)
    starts = np.maximum(ends - window, 0)
    return (sums[ends] - sums[starts]) / (ends - starts)


def _training_baselines(report: dict[str, Any], path: Path) -> tuple[dict[str, float], str]:
    """The baselines of the setting the training curve measures, and that setting's name:
    for few-shot runs, the validation setting of the run's ``config.yaml`` (its
    ``eval-*.json``, else chance alone), whatever setting this evaluation used; otherwise
    the report's."""
    if "shots" not in report:
        return report["baselines"], ""
    trained = runs.read_run_config(path).get("eval", {})
    ways, shots = trained.get("ways", report["ways"]), trained.get("shots", report["shots"])
    setting = f"{ways}-way {shots}-shot"
    if (ways, shots) == (report["ways"], report["shots"]):
        return report["baselines"], setting
    measured = path / f"eval-{ways}w{shots}s.json"
    if measured.is_file():
        return runs.read_json(measured)["baselines"], setting
    return {"chance": 1 / ways}, setting


def _plot_training(ax: Any, report: dict[str, Any], path: Path, colours: dict[str, str]) -> None:
    """The training curve from ``metrics.csv``, with the baselines as labelled lines."""
    from envs.mazes import PATH_RGB

    rows = runs.read_metrics(path)
    column = next((k for k in rows[0] if k.startswith("total_")), "iteration")
    if "val_accuracy" in rows[0]:  # few-shot: time to accuracy is what users compare
        column = "wall_time"
    steps = [r[column] / 60 if column == "wall_time" else r[column] for r in rows]
    lines: list[tuple[str, list[float], dict[str, Any]]] = []
    baselines, setting = _training_baselines(report, path)
    # Meta-World's training batches report success besides return: plot what eval measures
    measured = "success_rate" if "success_rate" in rows[0] else "mean_return"
    before = "pre_success_rate" if measured == "success_rate" else "pre_return"
    if "val_accuracy" in rows[0]:  # few-shot: training batches' accuracy, smoothed; validation
        ways = runs.read_run_config(path).get("episodes", {}).get("ways", "?")
        train = _smooth([r["accuracy"] for r in rows]).tolist()
        lines.append((f"training ({ways}-way), mean of last 50", train, {"color": "0.6"}))
        validation = [r["val_accuracy"] for r in rows]
        lines.append((f"validation ({setting})", validation, {"color": "black"}))
    elif before in rows[0]:  # adapted by gradient steps: before and after them
        lines.append(("before adaptation", [r[before] for r in rows], {"color": "0.6"}))
        lines.append(("after adaptation", [r[measured] for r in rows], {"color": "black"}))
    elif "length_episode_1" in rows[0]:  # maze trials: each episode's length, as drawn
        keys = [k for k in rows[0] if k.startswith("length_episode_")]
        for i, key in enumerate(keys):
            rgb = np.array(PATH_RGB[i % len(PATH_RGB)]) / 255
            lines.append((key.replace("_", " "), [r[key] for r in rows], {"color": rgb}))
    else:
        lines.append(("agent", [r[measured] for r in rows], {"color": "black"}))
    for label, values, style in lines:
        finite = np.isfinite(values)
        if finite.any():  # validation not yet measured: no line, no legend entry
            marker = "o" if finite.sum() <= 20 else None
            x, y = np.asarray(steps)[finite], np.asarray(values)[finite]
            ax.plot(x, y, label=label, marker=marker, **style)
    for name, value in baselines.items():
        colour = colours.setdefault(name, BASELINE_COLOURS[len(colours) % len(BASELINE_COLOURS)])
        ax.axhline(value, linestyle=":", linewidth=1.5, color=colour, label=name)
    ax.set_xlabel(STEP_LABELS.get(column, column.removeprefix("total_").replace("_", " ")))
    ax.set_ylabel(f"training {report['metric'].replace('_', ' ')}")
    of = f" of {setting}" if setting else ""
    ax.set_title(f"training curve (dotted: baselines{of})")
    ax.legend(fontsize=7)


def _plot_maze(ax: Any, trial: dict[str, Any]) -> None:
    """One held-out maze trial: each episode's path in its own colour, with a legend for
    the start and goal squares and the episodes."""
    from matplotlib.patches import Patch

    from envs.mazes import GOAL_RGB, PATH_RGB, START_RGB, draw_paths

    ax.imshow(draw_paths(np.asarray(trial["task"]), trial["paths"]))
    handles = [
        Patch(color=np.array(START_RGB) / 255, label="start (every episode)"),
        Patch(color=np.array(GOAL_RGB) / 255, label="goal"),
    ]
    handles += [
        Patch(color=np.array(PATH_RGB[i % len(PATH_RGB)]) / 255, label=f"episode {i + 1}")
        for i in range(len(trial["paths"]))
    ]
    ax.legend(handles=handles, fontsize=7, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    ax.set_title("one held-out trial: the agent's path per episode")
    ax.axis("off")


def report_figure(report: dict[str, Any], path: Path) -> Any:
    """The figure of ``eval.png`` (a matplotlib ``Figure``): the agent against its baselines,
    and, when the run has ``metrics.csv``, the training curve; each baseline has one colour
    in every panel.

    Few-shot runs show every setting measured on this checkpoint side by side (grouped bars
    with 95% CIs; ``eval-5w1s.json`` and the like) and their adaptation curve only when it has
    more than one point; maze runs add one trial's paths."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    colours = series_colours(report)
    panels: list[str] = []
    if "shots" in report:
        panels.append("settings")
    if "shots" not in report or len(report["curve"]["x"]) > 1:
        panels.append("curve")
    if (path / runs.METRICS).is_file():
        panels.append("training")
    if report.get("rendered_trial"):
        panels.append("maze")
    fig, axes = plt.subplots(1, len(panels), figsize=(6 * len(panels), 4.5), squeeze=False)
    ax = dict(zip(panels, axes[0], strict=True))
    if "settings" in ax:
        _plot_settings(ax["settings"], fewshot_settings(report, path), colours)
    if "curve" in ax:
        _plot_curve(ax["curve"], report, colours)
    if "training" in ax:
        _plot_training(ax["training"], report, path, colours)
    if "maze" in ax:
        _plot_maze(ax["maze"], report["rendered_trial"])
    fig.tight_layout()
    return fig


def plot_report(report: dict[str, Any], path: Path) -> None:
    """Write ``eval.png`` (:func:`report_figure`) into the run folder ``path``."""
    import matplotlib.pyplot as plt

    fig = report_figure(report, path)
    write_atomic(path / "eval.png", lambda f: fig.savefig(f, dpi=110, format="png"))
    plt.close(fig)
