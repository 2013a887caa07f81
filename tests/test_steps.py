"""Step splitting: VisualPRM's rule, spans back into the response, empty pieces, merging."""

from __future__ import annotations

import math
import re

import pytest

from openrlhf_visualprm.steps import split_steps, steps_from_list


def _check_spans(response, steps):
    for s in steps:
        assert response[s.start : s.end] == s.text


def test_default_split_matches_reference_rule():
    response = "First step.\n\nSecond, with a\nsingle newline.\n\nThe answer is 4."
    steps = split_steps(response)
    assert [s.text for s in steps] == response.split("\n\n")
    _check_spans(response, steps)


def test_unicode_spans_are_character_spans():
    response = "Angle α = 30°.\n\nSo β = 60° — done ✓."
    steps = split_steps(response)
    assert [s.text for s in steps] == ["Angle α = 30°.", "So β = 60° — done ✓."]
    _check_spans(response, steps)


def test_blank_chunks_are_dropped_and_spans_stay_true():
    response = "\n\nA\n\n\n\n   \n\nB\n\n"
    steps = split_steps(response)
    assert [s.text for s in steps] == ["A", "B"]
    _check_spans(response, steps)


@pytest.mark.parametrize("response", ["", "   ", "\n\n\n\n", "\t\n"])
def test_empty_response_has_no_steps(response):
    assert split_steps(response) == []


@pytest.mark.parametrize("n, max_steps", [(10, 4), (7, 3), (5, 5), (12, 5), (3, 1)])
def test_max_steps_merges_in_blocks_of_ceil(n, max_steps):
    chunks = [f"s{i}" for i in range(n)]
    response = "\n\n".join(chunks)
    steps = split_steps(response, max_steps=max_steps)
    block = math.ceil(n / max_steps) if n > max_steps else 1
    expected = ["\n\n".join(chunks[i : i + block]) for i in range(0, n, block)]
    assert [s.text for s in steps] == expected
    assert len(steps) <= max_steps
    _check_spans(response, steps)


def test_regex_splitter():
    response = "Step 1: read.\nStep 2: add.\nStep 3: answer 5."
    steps = split_steps(response, splitter=re.compile(r"\n(?=Step \d)"))
    assert [s.text for s in steps] == ["Step 1: read.", "Step 2: add.", "Step 3: answer 5."]
    _check_spans(response, steps)


def test_bad_arguments_raise_clearly():
    with pytest.raises(TypeError, match="str"):
        split_steps(None)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="max_steps"):
        split_steps("a\n\nb", max_steps=0)
    with pytest.raises(ValueError, match="splitter"):
        split_steps("a", splitter="")


def test_explicit_steps_keep_blank_entries_and_exact_spans():
    text, steps = steps_from_list(["a\n\ninner blank", "", "c"])
    assert [s.text for s in steps] == ["a\n\ninner blank", "", "c"]
    _check_spans(text, steps)


def test_one_responses_reader_for_both_clis(tmp_path):
    import json

    from openrlhf_visualprm.judge.cli import read_responses
    from openrlhf_visualprm.steps import read_responses_file

    whole = tmp_path / "whole.jsonl"
    whole.write_text(
        "\n".join([json.dumps("a\n\nb"), json.dumps({"response": "c"}), json.dumps({"text": "d"})])
    )
    assert read_responses_file(whole) == (["a\n\nb", "c", "d"], None)
    assert read_responses(whole) == ["a\n\nb", "c", "d"]  # the judge CLI reads the same lines
    steps = tmp_path / "steps.jsonl"
    steps.write_text(json.dumps({"steps": ["x", "y"]}) + "\n")
    assert read_responses_file(steps) == (None, [["x", "y"]])
    with pytest.raises(ValueError, match="compares whole responses"):
        read_responses(steps)
    mixed = tmp_path / "mixed.jsonl"
    mixed.write_text(json.dumps("a") + "\n" + json.dumps({"steps": ["x"]}) + "\n")
    with pytest.raises(ValueError, match="mixes"):
        read_responses_file(mixed)
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps("a") + "\n{oops\n")
    with pytest.raises(ValueError, match="bad.jsonl:2: not valid JSON"):
        read_responses_file(bad)
