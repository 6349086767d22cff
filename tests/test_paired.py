"""eval.json's paired comparisons and adaptation gains, on hand-computed cases."""

import math

import numpy as np
import pytest

from metarl.eval.paired import gains, paired

T_DF2 = 4.302652730  # 97.5% quantile of Student's t with 2 degrees of freedom


def test_paired_difference_and_verdict_when_higher_is_better():
    # differences 2, 3, 1: mean 2, sample variance 1, standard error 1/sqrt(3).
    result = paired([3.0, 5.0, 4.0], [1.0, 2.0, 3.0], higher_is_better=True)
    assert result["diff"] == pytest.approx(2.0) and result["tasks"] == 3
    assert result["ci95"] == pytest.approx(T_DF2 / math.sqrt(3))  # 2.48 > 2: no verdict
    assert result["verdict"] == "tie"
    # differences 2, 2.1, 1.9: mean 2, standard error 0.1/sqrt(3): the agent is better.
    assert paired([3.0, 4.1, 4.9], [1.0, 2.0, 3.0], True)["verdict"] == "better"
    assert paired([1.0, 2.0, 3.0], [3.0, 4.1, 4.9], True)["verdict"] == "worse"


def test_lower_is_better_turns_the_verdict():
    # episode lengths: the agent's are shorter by 2 +- small on every maze.
    shorter = paired([5.0, 6.1, 6.9], [7.0, 8.0, 9.0], higher_is_better=False)
    assert shorter["diff"] == pytest.approx(-2.0) and shorter["verdict"] == "better"


def test_gains_are_per_task_differences_from_the_first_point():
    # task A: 1 -> 3 -> 4, task B: 2 -> 2 -> 6, task C: 0 -> 4 -> 2.
    # gains at step 1: 2, 0, 4 (mean 2, variance 4); step 2: 3, 4, 2 (mean 3, variance 1).
    curve = np.array([[1.0, 3.0, 4.0], [2.0, 2.0, 6.0], [0.0, 4.0, 2.0]])
    result = gains(curve, [1, 2])
    assert result["x"] == [1, 2]
    assert result["mean"] == pytest.approx([2.0, 3.0])
    assert result["ci95"] == pytest.approx([T_DF2 * 2 / math.sqrt(3), T_DF2 / math.sqrt(3)])


def test_gains_refuse_a_curve_that_does_not_match_its_labels():
    with pytest.raises(ValueError, match=r"\(tasks, 3\) for 2 later points, got \(3, 2\)"):
        gains(np.zeros((3, 2)), [1, 2])
