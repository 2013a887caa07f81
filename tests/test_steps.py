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


@pytest.mark.parametrize("n, max_steps", [(10, 4), (7, 3), (5, 5), (12, 5), (3, 1), (9, 2)])
def test_max_steps_merges_in_blocks_of_ceil_and_keeps_the_final_answer_alone(n, max_steps):
    chunks = [f"s{i}" for i in range(n)]
    response = "\n\n".join(chunks)
    steps = split_steps(response, max_steps=max_steps)
    if n <= max_steps:
        expected = chunks
    elif max_steps == 1:
        expected = [response]
    else:  # the first n - 1 in blocks of ceil((n - 1) / (max_steps - 1)), the last one alone
        block = math.ceil((n - 1) / (max_steps - 1))
        expected = ["\n\n".join(chunks[i : min(i + block, n - 1)]) for i in range(0, n - 1, block)]
        expected.append(chunks[-1])
    assert [s.text for s in steps] == expected
    assert len(steps) <= max_steps
    _check_spans(response, steps)


def test_the_final_answer_is_never_merged_into_reasoning():
    # 14 paragraphs, max_steps 12: VisualPRM's ceil rule made 7 blocks of 2, the answer inside the
    # last one with reasoning 12; now reasoning 0-12 make 7 blocks and the answer is step 8
    chunks = [f"Reasoning {i}." for i in range(13)] + ["So the answer is \\boxed{7}."]
    steps = split_steps("\n\n".join(chunks), max_steps=12)
    assert steps[-1].text == "So the answer is \\boxed{7}." and len(steps) == 8
    assert steps[-2].text == "Reasoning 12."


# realistic VLM math outputs, one per preset
NUMBERED = (
    "Step 1: From the figure, triangle ABC is right-angled at C with AC = 6 and BC = 8.\n"
    "Step 2: By the Pythagorean theorem, AB = sqrt(6^2 + 8^2) = 10.\n"
    "Step 3: The perimeter is 6 + 8 + 10 = 24.\n"
    "Therefore, the answer is \\boxed{24}."
)
MARKDOWN_LIST = (
    "Let's read the bar chart.\n\n"
    "1. The bar for 2019 reaches 35.\n"
    "2. The bar for 2020 reaches 50.\n"
    "3) The increase is 50 - 35 = 15.\n\n"
    "**Step 4:** As a percentage: 15 / 35 ≈ 42.9%.\n"
    "The answer is 42.9%."
)
THINK = (
    "<think>\nThe image shows a circle with a central angle of 60°.\n\n"
    + "\n\n".join(f"Check {i}: the arc is 60/360 of the circle." for i in range(40))
    + "\n\nSo the arc length is (1/6) * 2π * 3 = π.\n</think>\n\nThe arc length is $\\pi$, so the answer is \\boxed{\\pi}."
)


def test_preset_steps_splits_numbered_lists_written_with_single_newlines():
    steps = split_steps(NUMBERED, splitter="preset:steps")
    assert [s.text[:7] for s in steps] == ["Step 1:", "Step 2:", "Step 3:"]  # the conclusion stays in 3
    assert steps[-1].text.endswith("the answer is \\boxed{24}.")
    _check_spans(NUMBERED, steps)
    assert len(split_steps(NUMBERED)) == 1  # the default (paragraphs) sees one step
    steps = split_steps(MARKDOWN_LIST, splitter="preset:steps")
    assert [s.text.split()[0] for s in steps] == ["Let's", "1.", "2.", "3)", "**Step"]
    assert steps[-1].text.endswith("The answer is 42.9%.")
    _check_spans(MARKDOWN_LIST, steps)


def test_preset_lines_and_paragraphs():
    assert len(split_steps(NUMBERED, splitter="preset:lines")) == 4
    assert [s.text for s in split_steps(MARKDOWN_LIST, splitter="preset:paragraphs")] == MARKDOWN_LIST.split(
        "\n\n"
    )


def test_preset_think_merges_the_reasoning_and_keeps_the_answer_its_own_last_step():
    assert len(split_steps(THINK)) == 43  # paragraphs: every check is a step, tags inside steps
    steps = split_steps(THINK, splitter="preset:think")
    assert len(steps) == 12  # DEFAULT_THINK_STEPS: 11 reasoning blocks + the answer
    assert steps[-1].text == "The arc length is $\\pi$, so the answer is \\boxed{\\pi}."
    assert all("<think>" not in s.text and "</think>" not in s.text for s in steps)
    assert steps[0].text.startswith("The image shows")
    _check_spans(THINK, steps)
    steps = split_steps(THINK, max_steps=4, splitter="preset:think")
    assert len(steps) == 4 and steps[-1].text.startswith("The arc length")
    # no </think> (cut off by the length limit): all reasoning, merged under the same cap
    cut = THINK.split("</think>")[0]
    assert len(split_steps(cut, max_steps=5, splitter="preset:think")) == 5


def test_splitter_specs_are_taken_literally():
    from openrlhf_visualprm.errors import ConfigError
    from openrlhf_visualprm.steps import unescape_separator

    assert unescape_separator("\\n\\n") == "\n\n" and unescape_separator("\\t") == "\t"
    assert unescape_separator("\\x") == "\\x"  # not an escape: a backslash and an x, no traceback
    assert unescape_separator("re:\\d+\\.\\n") == "re:\\d+\\.\\n"  # regexes as typed
    assert unescape_separator("。\\n") == "。\n"  # non-ASCII survives (unicode_escape garbled it)
    steps = split_steps("一。\n二。\n三", splitter=unescape_separator("。\\n"))
    assert [s.text for s in steps] == ["一", "二", "三"]
    steps = split_steps("a1b22c", splitter="re:\\d+")
    assert [s.text for s in steps] == ["a", "b", "c"]
    with pytest.raises(ConfigError, match="unknown preset; choose one of preset:paragraphs"):
        split_steps("a", splitter="preset:bullets")
    with pytest.raises(ConfigError, match="not a valid regular expression"):
        split_steps("a", splitter="re:\\x")


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


@pytest.mark.parametrize("spec", ["\n\n", "\n", "\t", "。", "Step 1:\n", "re:\\n+", "preset:lines"])
def test_escape_separator_is_the_inverse_of_unescape(spec):
    """What --help and the README show for a splitter types back to the same splitter."""
    from openrlhf_visualprm.steps import escape_separator, unescape_separator

    shown = escape_separator(spec)
    assert "\n" not in shown and "\t" not in shown
    assert unescape_separator(shown) == spec
