"""eval.png: colours shared between panels, labelled baselines, few-shot settings side by
side, training curves from the first update, and a maze drawing with a legend."""

from __future__ import annotations

import csv

import matplotlib.pyplot as plt
import numpy as np
import pytest

from metarl import runs
from metarl.eval.plots import _smooth, fewshot_settings, plot_report, report_figure


def write_metrics(path, rows: list[dict[str, float]]) -> None:
    with (path / runs.METRICS).open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)


def fewshot_report(ways: int, shots: int, value: float, iterations: int = 3) -> dict:
    return {
        "experiment": "protonet-omniglot",
        "metric": "accuracy",
        "higher_is_better": True,
        "value": value,
        "ci95": 0.01,
        "episodes": 100,
        "ways": ways,
        "shots": shots,
        "baselines": {"chance": 1 / ways, "pixel_nn": 0.3},
        "baselines_ci95": {"chance": 0.0, "pixel_nn": 0.02},
        "curve_of": "shots",
        "curve": {"x": list(range(1, shots + 1)), "agent": [value] * shots},
        "trained_iterations": iterations,
    }


def legend_labels(ax) -> list[str]:
    return [t.get_text() for t in ax.get_legend().get_texts()]


def test_trailing_mean_starts_at_the_first_value():
    np.testing.assert_allclose(_smooth([1.0, 2.0, 3.0, 5.0], window=2), [1.0, 1.5, 2.5, 4.0])


def test_baselines_share_their_colour_and_name_across_panels(tmp_path):
    report = {
        "experiment": "snail-bandit",
        "metric": "cumulative_reward",
        "value": 6.0,
        "episodes": 10,
        "baselines": {"random": 5.0, "gittins": 6.6},
        "curve": {"x": [1, 2], "agent": [0.5, 0.6], "random": [0.5, 0.5], "gittins": [0.5, 0.7]},
    }
    write_metrics(
        tmp_path,
        [{"iteration": i, "total_env_steps": 100 * i, "mean_return": 5.0} for i in range(3)],
    )
    fig = report_figure(report, tmp_path)
    curve, training = fig.axes
    colour = {line.get_label(): line.get_color() for line in curve.get_lines()}
    dotted = {line.get_label(): line.get_color() for line in training.get_lines()[1:]}
    assert dotted == {"random": colour["random"], "gittins": colour["gittins"]}
    assert colour["agent"] == "black" and colour["random"] != colour["gittins"]
    assert legend_labels(training) == ["agent", "random", "gittins"]
    assert training.get_xlabel() == "environment steps"
    plt.close(fig)


def test_fewshot_settings_are_shown_side_by_side(tmp_path):
    """A 1-shot evaluation shows no one-point curve: every setting measured on this
    checkpoint as grouped bars; a setting of an older checkpoint is left out."""
    report = fewshot_report(5, 1, 0.97)
    runs.write_json(tmp_path / "eval-20w1s.json", fewshot_report(20, 1, 0.9))
    runs.write_json(tmp_path / "eval-5w5s.json", fewshot_report(5, 5, 0.99))
    runs.write_json(tmp_path / "eval-20w5s.json", fewshot_report(20, 5, 0.5, iterations=1))
    settings = fewshot_settings(report, tmp_path)
    assert [(r["ways"], r["shots"]) for r in settings] == [(5, 1), (5, 5), (20, 1)]
    fig = report_figure(report, tmp_path)
    (bars,) = fig.axes
    assert [t.get_text() for t in bars.get_xticklabels()] == [
        "5-way 1-shot",
        "5-way 5-shot",
        "20-way 1-shot",
    ]
    assert legend_labels(bars) == ["agent", "chance", "pixel_nn"]
    heights = [p.get_height() for p in bars.patches]
    assert heights[:3] == pytest.approx([0.97, 0.99, 0.9])  # the agent's bars
    plt.close(fig)


def test_fewshot_training_panel_starts_at_the_first_update(tmp_path):
    """Three updates, no validation yet: the smoothed training accuracy has a point per
    update, the unmeasured validation no legend entry, and the baselines are the validation
    setting's (5-way) even when this evaluation was 20-way."""
    runs.write_yaml(
        tmp_path / runs.CONFIG,
        {"name": "protonet-omniglot", "agent": "fewshot-omniglot", "eval": {"ways": 5, "shots": 1}},
    )
    rows = [
        {
            "iteration": i,
            "total_episodes": i + 1,
            "wall_time": 30.0 * (i + 1),
            "accuracy": 0.5,
            "val_accuracy": float("nan"),
        }
        for i in range(3)
    ]
    write_metrics(tmp_path, rows)
    report = fewshot_report(20, 1, 0.9)
    fig = report_figure(report, tmp_path)
    training = fig.axes[-1]
    first = training.get_lines()[0]
    assert list(first.get_xdata()) == [0.5, 1.0, 1.5]  # minutes of training
    assert legend_labels(training) == ["training (?-way), mean of last 50", "chance"]
    assert training.get_lines()[1].get_ydata()[0] == pytest.approx(1 / 5)
    assert training.get_xlabel() == "training wall-clock minutes"
    plot_report(report, tmp_path)
    assert (tmp_path / "eval.png").stat().st_size > 10_000
    plt.close(fig)


def test_maze_drawing_explains_its_marks(tmp_path):
    from tests.test_mazes import SNAKE, task_from_text

    task = task_from_text(SNAKE)
    report = {
        "experiment": "snail-maze",
        "metric": "episode_length",
        "value": 10.0,
        "episodes": 4,
        "baselines": {"oracle": 8.0},
        "curve": {"x": [1, 2], "agent": [20.0, 10.0], "oracle": [8.0, 8.0]},
        "curve_of": "episode",
        "rendered_trial": {"task": task.tolist(), "paths": [[(0, 0), (0, 1)], [(0, 0)]]},
    }
    fig = report_figure(report, tmp_path)
    maze = fig.axes[-1]
    assert legend_labels(maze) == ["start (every episode)", "goal", "episode 1", "episode 2"]
    plt.close(fig)


def test_minutes_to_an_accuracy_is_the_first_validation_at_or_above_it():
    from metarl.eval.report import minutes_to

    nan = float("nan")
    rows = [
        {"wall_time": t, "val_accuracy": a}
        for t, a in [(60, nan), (120, 0.94), (180, 0.96), (240, 0.95), (300, 0.965)]
    ]
    assert minutes_to(rows, (0.95, 0.96, 0.97)) == {"0.95": 3.0, "0.96": 3.0, "0.97": None}
    assert minutes_to(rows[:1], (0.5,)) == {"0.5": None}
