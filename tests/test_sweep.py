import json

import pytest

from metarl.errors import UsageError
from metarl.eval.report import evaluate_run
from metarl.sweep import parse_grid, summary_table, sweep, trial_grid


def test_grid_values_are_read_as_yaml_and_swept_keys_label_the_trials():
    grid = parse_grid(["ppo.lr=1e-3,0.003", "model.backbone=lstm", "env.horizon=10,100"])
    assert grid == {"ppo.lr": ["1e-3", 0.003], "model.backbone": ["lstm"], "env.horizon": [10, 100]}
    trials = trial_grid(grid, seeds=2, base_seed=7)
    assert len(trials) == 2 * 2 * 2
    assert trials[0]["label"] == "ppo.lr=1e-3 env.horizon=10"
    assert trials[0]["overrides"]["model.backbone"] == "lstm"
    assert [t["seed"] for t in trials[:2]] == [7, 8]
    assert trials[1]["dir"] == "ppo.lr=1e-3,env.horizon=10-seed1"
    assert len({t["dir"] for t in trials}) == len(trials)


@pytest.mark.parametrize(
    ("assignments", "seeds", "message"),
    [
        (["ppo.lr"], 1, "expected KEY=V1,V2"),
        (["ppo.lr=1,2", "ppo.lr=3"], 1, "given twice"),
        (["ppo.lr=1,2"], 0, "--seeds must be a positive integer"),
    ],
)
def test_bad_sweeps_are_refused(assignments, seeds, message):
    with pytest.raises(UsageError, match=message):
        trial_grid(parse_grid(assignments), seeds, 0)


def test_a_sweep_runs_every_trial_and_eval_aggregates_by_configuration(tmp_path):
    out = tmp_path / "sweep"
    rows = sweep(
        "snail-bandit",
        ["ppo.lr=0.001,0.003", "trials_per_iteration=64", "train.iterations=2"],
        seeds=2,
        out=out,
        parallel=2,
    )
    assert [(r["label"], r["seed"], r["status"]) for r in rows] == [
        ("ppo.lr=0.001", 0, "finished"),
        ("ppo.lr=0.001", 1, "finished"),
        ("ppo.lr=0.003", 0, "finished"),
        ("ppo.lr=0.003", 1, "finished"),
    ]
    table = summary_table(rows)
    assert "ppo.lr=0.003" in table and "    2" in table
    for folder in ("ppo.lr=0.001-seed0", "ppo.lr=0.003-seed1"):
        assert json.loads((out / folder / "summary.json").read_text())["iterations"] == 2
    report = evaluate_run(out, episodes=50)
    assert [c["label"] for c in report["configs"]] == ["ppo.lr=0.001", "ppo.lr=0.003"]
    for config in report["configs"]:
        assert config["seeds"] == [0, 1] and len(config["curve"]["mean"]) == 10
        values = [
            json.loads((out / f"{config['label']}-seed{s}" / "eval.json").read_text())["value"]
            for s in (0, 1)
        ]
        assert config["value"] == pytest.approx(sum(values) / 2)
    assert (out / "eval.png").stat().st_size > 10_000
    with pytest.raises(UsageError, match="already exists"):
        sweep("snail-bandit", ["ppo.lr=0.001"], out=out)
