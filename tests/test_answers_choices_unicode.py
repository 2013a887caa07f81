"""Multiple choice (issue 20 item 2) and Unicode normalisation (issue 22 item 11) in the one
answer check: every route (the reward runtime's outcome component, both checkers), and eval-bon."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from openrlhf_visualprm.answers import exact_answers, extract_final_answer, verify_answers
from openrlhf_visualprm.data import samples
from openrlhf_visualprm.data.image_refs import ImageStore
from openrlhf_visualprm.data.math_prompts import convert_math
from openrlhf_visualprm.data.records import ErrorLog
from openrlhf_visualprm.errors import InputError
from openrlhf_visualprm.eval.bon import evaluate_bon
from openrlhf_visualprm.images import ImageRoots
from openrlhf_visualprm.labels import decode_label
from openrlhf_visualprm.plugin.plan import OutcomeConfig, RewardPlan
from openrlhf_visualprm.plugin.reward_host import PluginRewards

CHOICES = ["circle", "square", "triangle"]  # the right option is (B) square
# prediction -> right?  The letter and the text of (B) both verify, and nothing else does.
MC_CASES = [
    ("B", True),
    ("square", True),
    ("(B)", True),
    ("(B) square", True),
    ("B. square", True),
    ("Option B", True),
    ("\\text{B}", True),
    ("Ｂ", True),  # fullwidth letter: NFKC
    ("A", False),
    ("C", False),
    ("D", False),  # no option D
    ("circle", False),
    ("(B) circle", False),  # right letter, another option's text
    ("(A) square", False),  # right text, another option's letter
    ("B, C", False),  # hedging over options
    ("A or B", False),
    ("В", False),  # Cyrillic Ve, not the letter B
    ("b", False),  # a variable, not an option letter
]


@pytest.mark.parametrize("truth", ["square", "B"])  # MathVista stores the text; geometry3k the letter
@pytest.mark.parametrize("check", ["math-verify", "exact"])
def test_letter_and_option_text_both_verify_and_nothing_else(truth, check):
    preds = [p for p, _ in MC_CASES]
    choices = [CHOICES] * len(preds)
    if check == "exact":
        got = exact_answers(preds, [truth] * len(preds), choices=choices)
    else:
        got = verify_answers(preds, [truth] * len(preds), choices=choices)
    assert dict(zip(preds, got)) == dict(MC_CASES)


def test_without_choices_a_letter_is_just_a_string():
    assert verify_answers(["B", "square"], ["square", "B"]) == [False, False]


def test_options_that_are_letters_themselves_turn_the_letter_route_off():
    # (A) "B", (B) "A": a bare "A" could be either, so only the option text counts
    assert verify_answers(["A", "B"], ["B", "B"], choices=[["B", "A"]] * 2) == [False, True]


def _scorer(checker: str) -> PluginRewards:
    plan = RewardPlan(outcome=OutcomeConfig(checker=checker), weights={"outcome": 1.0}, device="cpu")
    return PluginRewards(plan)


@pytest.fixture(scope="module")
def sample_dir(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("samples")
    samples.write_samples(out)
    return out


@pytest.mark.parametrize("checker", ["math-verify", "exact"])
def test_mathvista_row_from_convert_data_rewards_the_letter(sample_dir, tmp_path, checker):
    """The reported bug end to end: convert-data's MathVista multiple-choice row (prompt asks for
    the letter, label stores the option text) through the reward runtime."""
    rows = convert_math(
        sample_dir / "mathvista.jsonl", ImageStore(ImageRoots.of(sample_dir), tmp_path / "i"), ErrorLog()
    )
    row = next(r for r in rows if json.loads(r["label"]).get("choices"))
    label = decode_label(row["label"])
    assert label.choices == ("red", "blue") and label.truth() == "red"
    responses = [
        "\\boxed{A}",
        "\\boxed{red}",
        "\\boxed{B}",
        "\\boxed{blue}",
        "The answer is (A) red.",
        "\\boxed{(A) blue}",
    ]
    out = _scorer(checker).score_payloads(
        [{"prompt": row["prompt"], "label": row["label"], "responses": responses}]
    )[0]
    assert [r["components"]["outcome"] for r in out] == [1.0, 1.0, 0.0, 0.0, 1.0, 0.0]


def test_malformed_choices_are_a_bad_label_naming_the_field():
    with pytest.raises(InputError, match=r"label\.choices must be a list"):
        decode_label({"answer": "x", "choices": "A, B"})
    with pytest.raises(InputError, match="at most 26"):
        decode_label({"answer": "x", "choices": [str(i) for i in range(27)]})
    assert decode_label({"answer": "x", "choices": None}).choices is None
    assert decode_label({"answer": "2", "choices": [1, 2.5]}).choices == ("1", "2.5")


def test_eval_bon_reads_choices_with_the_real_checker(sample_dir, tmp_path):
    row = {
        "id": "mc",
        "image": "images/a.png",
        "question": "Which shape? Choices: (A) circle (B) square",
        "answer": "square",
        "choices": ["circle", "square"],
        "responses": ["\\boxed{B}", "\\boxed{A}", "\\boxed{square}", "\\boxed{circle}"],
    }
    data = tmp_path / "bon.jsonl"
    data.write_text(json.dumps(row) + "\n")
    evaluate_bon(data, tmp_path / "o", ImageRoots.of(sample_dir), {"d": 1}, progress=False)
    record = [json.loads(x) for x in (tmp_path / "o" / "results.jsonl").read_text().splitlines()][-1]
    assert record["correct"] == [True, False, True, False]


# ----------------------------------------------------------------------------- Unicode
# The correct answer 12 in nine spellings a policy produces (issue 22 item 11: 6 of 9 got 0).
VARIANTS = [
    "１２",  # fullwidth digits
    "١٢",  # Arabic-Indic digits
    "۱۲",  # extended Arabic-Indic (Persian) digits
    "१२",  # Devanagari digits
    "\u200f12",  # right-to-left mark
    "12\u200e",  # left-to-right mark
    "1\u200d2",  # zero-width joiner
    "\ufeff12",  # byte order mark
    "1\u200b2",  # zero-width space
]
# Attempts to be paid for a wrong answer through the normalisation.
SPOOFS = [
    ("\u202e21", "12"),  # right-to-left override: shows "12", says 21
    ("\u202e12", "12"),  # an override makes the displayed order untrustworthy either way
    ("\u20661\u20692", "12"),  # isolates
    ("3²", "32"),  # 3 squared is 9: NFKC alone would make it 32
    ("1½", "11/2"),  # one and a half: NFKC alone would make it 11/2
    ("1\u0338", "1"),  # "not 1" (combining long solidus overlay); math-verify read it as 1
    ("１２", "21"),
    ("\u200b", "12"),  # nothing but a format character
]


@pytest.mark.parametrize("variant", VARIANTS)
def test_nine_spellings_of_the_right_answer_verify_on_every_route(variant):
    assert verify_answers([variant], ["12"]) == [True]
    assert exact_answers([variant], ["12"]) == [True]
    assert extract_final_answer(f"So the total is \\boxed{{{variant}}}.") == "12"
    assert extract_final_answer(f"Final answer: {variant}") == "12"
    out = _scorer("math-verify").score_payloads(
        [{"prompt": "p", "label": {"answer": "12"}, "responses": [f"The answer is \\boxed{{{variant}}}"]}]
    )[0]
    assert out[0]["components"]["outcome"] == 1.0


def test_spoofs_are_not_rewarded():
    preds, truths = [p for p, _ in SPOOFS], [t for _, t in SPOOFS]
    assert verify_answers(preds, truths) == [False] * len(SPOOFS)
    assert exact_answers(preds, truths) == [False] * len(SPOOFS)


def test_what_nfkc_would_garble_keeps_its_value():
    assert verify_answers(["3²", "1½", "٣٫٥", "x²"], ["9", "3/2", "3.5", "x^2"]) == [True] * 4


def test_format_characters_inside_the_answer_phrase_do_not_hide_the_answer():
    assert extract_final_answer("Final\u200b answer\u200d: 7") == "7"
    assert extract_final_answer("\\box\u200bed{7}") == "7"
