"""Hostile responses for the answer extractor and math-verify's logging (issue 14 items 4, 8)."""

from __future__ import annotations

import logging
import sys
import time

import pytest

from openrlhf_visualprm import answers
from openrlhf_visualprm.answers import MAX_ANSWER_SCAN_CHARS, extract_final_answer


@pytest.mark.parametrize(
    "text, expected",
    [
        # unclosed boxes before a closed one: the closed one is the answer
        ("\\boxed{" * 5 + " then \\boxed{7}", "7"),
        # a box inside a box: the later-starting (inner) one, as before
        ("\\boxed{a \\boxed{1}}", "1"),
        # stray closing braces do not close a later box
        ("}} \\boxed{x}} }", "x"),
        # an unclosed final box does not hide the earlier closed one
        ("\\boxed{5} and \\boxed{6", "5"),
        ("\\fbox{ 9 }", "9"),
    ],
)
def test_boxed_matching_edge_cases(text, expected):
    assert extract_final_answer(text) == expected


def test_box_scan_does_linear_work():
    """Structural: Python lines executed by the box scanner grow linearly with the input."""

    def lines_run(text: str) -> int:
        count = 0

        def tracer(frame, event, arg):
            nonlocal count
            if event == "line":
                count += 1
            return tracer

        sys.settrace(tracer)
        try:
            assert answers._boxed_contents(text) == []
        finally:
            sys.settrace(None)
        return count

    small, large = lines_run("\\boxed{" * 500), lines_run("\\boxed{" * 2000)
    assert large <= 6 * small, f"4x the input took {large / small:.1f}x the work (quadratic: ~16x)"
    assert large <= 20 * 7 * 2000


def test_adversarial_boxes_finish_fast():
    """56 KB and 100 KB of repeated ``\\boxed{`` (165 s at 56 KB before); a generous bound."""
    for size in (56_000, 100_000):
        text = ("\\boxed{" * (size // 7 + 1))[:size]
        start = time.perf_counter()
        assert extract_final_answer(text) is None
        assert time.perf_counter() - start < 1.0


def test_only_the_tail_of_a_huge_response_is_scanned():
    head = "\\boxed{1} " + "x" * (MAX_ANSWER_SCAN_CHARS + 10)
    assert extract_final_answer(head) is None  # the head's box lies outside the scanned tail
    assert extract_final_answer(head + " \\boxed{2}") == "2"


def test_math_verify_log_lines_are_truncated(caplog):
    """math-verify logs its whole input on a timeout (1 MB per check); ours keep a short head."""
    answers.shorten_math_verify_logs()
    huge = "1+" * 500_000
    with caplog.at_level(logging.WARNING, logger="math_verify"):
        logging.getLogger("math_verify.parser").warning(f"Timeout during parsing: {huge}")
        logging.getLogger("math_verify.grader").warning("Timeout comparing %s", huge)
    messages = [r.getMessage() for r in caplog.records if r.name.startswith("math_verify")]
    assert len(messages) == 2
    assert all(len(m) < 1000 and "characters omitted" in m for m in messages), [len(m) for m in messages]
    assert messages[0].startswith("Timeout during parsing: 1+1+")


def test_a_stuck_checker_is_logged(monkeypatch, caplog):
    """A batch that overruns its wall-clock guard counts as wrong and says so in the log."""
    from concurrent.futures import Future

    class StuckPool:  # a checker process that never answers (a warm real pool can beat any guard)
        _max_workers = 1

        def submit(self, *args, **kwargs):
            return Future()

    monkeypatch.setattr(answers._POOL, "get", lambda: StuckPool())
    monkeypatch.setattr(answers, "_guard_seconds", lambda alarm, chunk: 0.05)
    with caplog.at_level(logging.WARNING, logger="openrlhf_visualprm.answers"):
        assert answers.verify_answers(["\\frac{1}{2}"], ["0.5"]) == [False]
    assert any("counted as wrong" in r.getMessage() for r in caplog.records), caplog.text
