"""Strict verdict parsing: one valid label after the reasoning, or a failure with a reason."""

from __future__ import annotations

import pytest

from openrlhf_visualprm.judge.parse import parse_verdict

LABELS = ("A", "B", "C")


@pytest.mark.parametrize(
    ("output", "choice"),
    [
        ("<think>B looks wrong, C is best</think>\n<answer>C</answer>", "C"),
        ("<think>hm</think><answer> b </answer>", "B"),
        ("<think>x</think><answer>A.</answer>", "A"),
        ("<think>x</think><answer>Candidate B</answer>", "B"),
        ("<answer>A</answer>", "A"),  # no reasoning at all is allowed
        ("<think>quote: <answer>B</answer></think> final <answer>A</answer>", "A"),  # only after </think>
        ("<think>a</think><answer>C</answer> and again <answer>C</answer>", "C"),
    ],
)
def test_valid_verdicts(output, choice):
    parsed = parse_verdict(output, LABELS)
    assert parsed.ok and parsed.choice == choice and parsed.reason is None


@pytest.mark.parametrize(
    ("output", "reason"),
    [
        ("<think>I cannot decide <answer>A</answer>", "not closed"),
        ("The answer is A.", "no <answer>"),
        ("<think>x</think>A", "no <answer>"),
        ("<think>x</think><answer>D</answer>", "not one of the labels"),
        ("<think>x</think><answer>A or B</answer>", "not a single label"),
        ("<think>x</think><answer></answer>", "not a single label"),
        ("<think>x</think><answer>A</answer><answer>B</answer>", "conflicting"),
        ("", "no <answer>"),
    ],
)
def test_failures_carry_a_reason_and_no_choice(output, reason):
    parsed = parse_verdict(output, LABELS)
    assert not parsed.ok and parsed.choice is None
    assert reason in parsed.reason


def test_non_text_output_is_a_failure_not_a_crash():
    assert parse_verdict(None, LABELS).reason == "output is NoneType, not text"  # type: ignore[arg-type]
