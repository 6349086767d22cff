"""``metarl eval``: measure a run on held-out tasks, write ``eval.json`` and ``eval.png``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from metarl import runs
from metarl.errors import UsageError


def evaluate_run(path: str | Path, episodes: int | None = None) -> dict[str, Any]:
    """Evaluate the run in ``path`` on held-out tasks and write its report.

    Args:
        path: a run folder written by ``metarl train``.
        episodes: held-out tasks (default: the config's ``eval.episodes``).

    Returns:
        the ``eval.json`` dictionary (schema in DESIGN.md).
    """
    from agents import get_recipe
    from metarl.trainer import resolve_config

    path = Path(path)
    raw = runs.read_run_config(path)
    raw["sampler"] = {**raw.get("sampler", {}), "backend": "local"}
    config = resolve_config(raw)
    episodes = episodes if episodes is not None else config.eval.episodes
    if episodes < 2:
        raise UsageError(f"--episodes must be at least 2, got {episodes}")
    checkpoint = runs.load_checkpoint(path)
    agent = get_recipe(config.agent).build(config)
    try:
        agent.load_state_dict(checkpoint["agent"])
        report = {"experiment": config.name, **agent.evaluate(episodes)}
    finally:
        agent.close()
    report["trained_iterations"] = checkpoint["iteration"]
    runs.write_json(path / "eval.json", report)
    plot_report(report, path)
    return report


def plot_report(report: dict[str, Any], path: Path) -> None:
    """``eval.png``: the adaptation curve of the agent and its baselines, and, when the run
    has ``metrics.csv``, the training curve."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax_curve, ax_train) = plt.subplots(1, 2, figsize=(12, 4.5))
    curve = report["curve"]
    for name, values in curve.items():
        if name == "x":
            continue
        style = {"linewidth": 2.5, "color": "black"} if name == "agent" else {"alpha": 0.8}
        ax_curve.plot(curve["x"], values, label=name, **style)
    ax_curve.set_xlabel("pull" if report["metric"] == "cumulative_reward" else "step")
    ax_curve.set_ylabel("mean reward")
    ax_curve.set_title(f"{report['experiment']}: adaptation on {report['episodes']} held-out tasks")
    ax_curve.legend(fontsize=8)
    metrics_file = path / runs.METRICS
    if metrics_file.is_file():
        rows = runs.read_metrics(path)
        ax_train.plot([r["total_env_steps"] for r in rows], [r["mean_return"] for r in rows])
        for name, value in report["baselines"].items():
            ax_train.axhline(value, linestyle=":", alpha=0.6)
            ax_train.annotate(name, (0, value), fontsize=7, alpha=0.8)
    ax_train.set_xlabel("environment steps")
    ax_train.set_ylabel(f"training {report['metric']}")
    ax_train.set_title("training curve")
    fig.tight_layout()
    runs.write_atomic(path / "eval.png", lambda tmp: fig.savefig(tmp, dpi=110, format="png"))
    plt.close(fig)
