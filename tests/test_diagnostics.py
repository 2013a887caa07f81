"""Hacking diagnostics against hand-computed numbers (pure functions over runtime results)."""

from __future__ import annotations

import math

import pytest

from openrlhf_visualprm.rewards.diagnostics import step_diagnostics


def row(prm, outcome, steps, truncated=False, judge=None, stats=None):
    components = {"prm": prm, "outcome": outcome}
    if judge is not None:
        components["judge"] = judge
    return {
        "components": components,
        "prm": {"step_scores": [0.5] * steps, "truncated": truncated},
        "judge": stats,
    }


STATS = {"first_position_pick_rate": 0.75, "first_position_chance": 0.25}
RESULTS = [
    [  # both outcomes; a judge
        row(0.9, 1.0, 3, judge=1.0, stats=STATS),
        row(0.4, 0.0, 1, truncated=True, judge=0.0, stats=STATS),
        row(0.4, 1.0, 2, judge=0.5, stats=STATS),
    ],
    [row(0.5, 0.0, 1), row(0.5, 0.0, 0)],  # one outcome class, flat components, an empty response
    None,  # host padding
]
TEXTS = [["x" * 10, "x" * 2, "x" * 6], ["a", ""], []]
FIRST = [[1.0, -1.0, 0.5], [0.0, -0.5], []]


def test_step_diagnostics_by_hand():
    got = step_diagnostics(RESULTS, TEXTS, FIRST, max_steps=3)
    want = {
        # group 0 pairs (right, wrong): (0.9, 0.4) -> 1, (0.4, 0.4) -> 0.5; group 1 has no pair
        "diag/prm_outcome_auroc": 0.75,
        # step counts 3, 1, 2, 1, 0 -> sorted 0 1 1 2 3: median 1, p95 at 3.8 -> 2 + 0.8 * 1
        "diag/steps_p50": 1.0,
        "diag/steps_p95": 2.8,
        "diag/steps_max": 3.0,
        "diag/steps_frac_1": 2 / 5,
        "diag/steps_frac_max": 1 / 5,
        # x - 1.4 = [1.6, -0.4, 0.6, -0.4, -1.4], y = [1, -1, 0.5, 0, -0.5]: 3.0 / sqrt(5.2 * 2.5)
        "diag/corr_steps_first_return": 3.0 / math.sqrt(13.0),
        "diag/zero_var_prm": 0.5,
        "diag/zero_var_outcome": 0.5,
        "diag/zero_var_judge": 0.0,
        "diag/prm_empty_rate": 1 / 5,  # the 0-step response (the truncated one is counted apart)
        "diag/prm_truncated_rate": 1 / 5,
        # group 0 only: lengths 10, 2, 6 -> +4, -4, 0; judge 1, 0, 0.5 -> +0.5, -0.5, 0
        "diag/judge_length_corr": 1.0,
        "diag/judge_first_position": 0.75,
        "diag/judge_first_position_chance": 0.25,
    }
    assert set(got) == set(want)
    for key, value in want.items():
        assert got[key] == pytest.approx(value, abs=1e-12), key


def test_undefined_numbers_are_left_out():
    one_class = [[row(0.2, 0.0, 2), row(0.3, 0.0, 2)]]
    got = step_diagnostics(one_class)
    assert "diag/prm_outcome_auroc" not in got and "diag/corr_steps_first_return" not in got
    assert "diag/steps_frac_max" not in got  # no max_steps
    assert got["diag/zero_var_outcome"] == 1.0 and got["diag/zero_var_prm"] == 0.0
    assert step_diagnostics([None, []]) == {}
