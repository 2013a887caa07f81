"""Metric functions against numbers computed by hand (the arithmetic is in the comments)."""

from __future__ import annotations

import math

import pytest

from openrlhf_visualprm.eval.metrics import (
    accuracy_report,
    argmax_first,
    class_f1,
    grouped_step_f1,
    majority_vote,
    n_values,
    order_stats,
    step_f1,
    threshold_sweep,
)


def test_step_f1_per_class_and_macro_by_hand():
    # labels:  1    1    1    -1   -1   0(neutral)
    # scores: .9   .8   .95  .9   .1   .99   threshold .85 -> pred: T F T T F (neutral dropped)
    # correct class: tp=2 (s0,s2) fp=1 (s3) fn=1 (s1) -> F1 = 4/(4+1+1) = 2/3
    # incorrect class: tp=1 (s4) fp=1 (s1) fn=1 (s3) -> F1 = 2/(2+1+1) = 1/2
    r = step_f1([1, 1, 1, -1, -1, 0], [0.9, 0.8, 0.95, 0.9, 0.1, 0.99], 0.85)
    assert r["steps"] == 5 and r["neutral_excluded"] == 1
    assert r["correct"]["f1"] == pytest.approx(2 / 3)
    assert r["correct"]["precision"] == pytest.approx(2 / 3) and r["correct"]["recall"] == pytest.approx(
        2 / 3
    )
    assert r["incorrect"]["f1"] == pytest.approx(0.5)
    assert r["macro_f1"] == pytest.approx((2 / 3 + 0.5) / 2)


def test_threshold_is_strict():
    # a score equal to the threshold is predicted incorrect
    assert step_f1([1], [0.85], 0.85)["correct"]["tp"] == 0
    assert step_f1([1], [0.8501], 0.85)["correct"]["tp"] == 1


def test_macro_over_present_classes_only():
    # all gold correct, all predicted correct: only one class present -> macro = 1.0 (sklearn macro)
    assert step_f1([1, 1], [0.9, 0.99], 0.5)["macro_f1"] == pytest.approx(1.0)
    # all gold correct, one predicted incorrect: both classes present; incorrect F1 = 0
    r = step_f1([1, 1], [0.9, 0.1], 0.5)
    assert r["correct"]["f1"] == pytest.approx(2 / 3) and r["incorrect"]["f1"] == 0.0
    assert r["macro_f1"] == pytest.approx(1 / 3)
    assert math.isnan(step_f1([0, 0], [0.1, 0.2], 0.5)["macro_f1"])


def test_pooled_overall_differs_from_mean_over_sources():
    items = [
        # source A: 4 steps, all correct & predicted correct -> macro 1.0
        {"labels": [1, 1, 1, 1], "step_scores": [0.9] * 4, "data_source": "A", "policy_model": "p"},
        # source B: 1 correct predicted incorrect, 1 incorrect predicted incorrect
        # correct F1 = 0 (tp 0, fn 1), incorrect: tp=1, fp=1 -> 2/3; macro 1/3
        {"labels": [1, -1], "step_scores": [0.1, 0.2], "data_source": "B", "policy_model": "q"},
    ]
    r = grouped_step_f1(items, 0.5)
    assert r["by_data_source"]["A"]["macro_f1"] == pytest.approx(1.0)
    assert r["by_data_source"]["B"]["macro_f1"] == pytest.approx(1 / 3)
    assert r["macro_over_sources"] == pytest.approx((1 + 1 / 3) / 2)
    # pooled: correct tp=4 fp=0 fn=1 -> 8/9 ; incorrect tp=1 fp=1 fn=0 -> 2/3 ; macro = (8/9+2/3)/2
    assert r["overall"]["macro_f1"] == pytest.approx((8 / 9 + 2 / 3) / 2)
    assert set(r["by_policy_model"]) == {"p", "q"}


def test_sweep_rows_match_single_calls():
    labels, scores = [1, -1, 1, -1], [0.9, 0.6, 0.4, 0.1]
    rows = threshold_sweep(labels, scores, [0.0, 0.5, 0.95])
    for row in rows:
        assert row["macro_f1"] == pytest.approx(step_f1(labels, scores, row["threshold"])["macro_f1"])
    # t=0.5: pred T T F F -> correct tp1 fp1 fn1 = 1/2, incorrect tp1 fp1 fn1 = 1/2
    assert rows[1]["macro_f1"] == pytest.approx(0.5)


def test_class_f1_rejects_length_mismatch():
    with pytest.raises(ValueError, match="labels"):
        class_f1([True], [True, False], True)


def test_accuracy_overall_vs_macro_by_hand():
    # general: 1/2 right ; hallucination: 3/4 right (one unjudged counts wrong) ; reasoning: 0/1
    outcomes = [True, False, True, True, None, True, False]
    cats = [
        "general",
        "general",
        "hallucination",
        "hallucination",
        "hallucination",
        "hallucination",
        "reasoning",
    ]
    r = accuracy_report(outcomes, cats)
    assert r["overall"]["accuracy"] == pytest.approx(4 / 7)
    assert r["by_category"]["hallucination"]["accuracy"] == pytest.approx(3 / 4)
    assert r["by_category"]["hallucination"]["accuracy_valid"] == pytest.approx(1.0)
    assert r["by_category"]["hallucination"]["unjudged"] == 1
    assert r["macro_accuracy"] == pytest.approx((1 / 2 + 3 / 4 + 0) / 3)


def test_order_stats_by_hand():
    # (orig pick, swapped pick) as shown: (0,1) consistent, (0,0) flip (always first), (1,None) failure
    s = order_stats([(0, 1), (0, 0), (1, None)])
    assert s["calls"] == 6 and s["parse_failures"] == 1
    assert s["first_position_rate"] == pytest.approx(3 / 5)
    assert s["pairs_both_parsed"] == 2
    assert s["swap_consistent_rate"] == pytest.approx(0.5) and s["swap_flip_rate"] == pytest.approx(0.5)


def test_majority_vote_and_argmax_ties():
    assert majority_vote(["3", "4", "4", "3"]) == 0  # tie 2-2: answer seen first wins
    assert majority_vote([None, "5", "6", "6"]) == 2
    assert majority_vote([None, None]) is None
    assert argmax_first([0.2, 0.7, 0.7]) == 1
    assert argmax_first([math.nan, 0.1]) == 1


def test_n_values():
    assert n_values(1) == [1]
    assert n_values(4) == [1, 2, 4]
    assert n_values(6) == [1, 2, 4, 6]
