"""Final-answer extraction and math-verify checking in a process pool; the outcome reward."""

from __future__ import annotations

import threading
from concurrent.futures import Future

import pytest

from openrlhf_visualprm import answers
from openrlhf_visualprm.answers import extract_final_answer, verify_answers
from openrlhf_visualprm.plugin.plan import OutcomeConfig, RewardPlan
from openrlhf_visualprm.plugin.reward_host import PluginRewards


@pytest.mark.parametrize(
    "text, expected",
    [
        ("so x = \\boxed{\\frac{1}{2}}.", "\\frac{1}{2}"),
        ("first \\boxed{3}, corrected: \\boxed{4}", "4"),
        ("nested \\boxed{\\sqrt{\\frac{3}{4}}} done", "\\sqrt{\\frac{3}{4}}"),
        ("\\fbox{7}", "7"),
        ("Step 1: 3 + 4 = 7.\n\nThe answer is 42.", "42"),
        ("Final answer: $3.5$", "3.5"),
        ("**Answer:** 30^\\circ", "30^\\circ"),
        ("The final answer is \\boxed{12} cm.", "12"),
        ("we get 3 apples and 4.5 kg", "4.5"),
        ("The total is 1,000 and then -3/4 remains", "-3/4"),
        ("no numbers here", None),
        ("", None),
        ("   ", None),
    ],
)
def test_extract_final_answer(text, expected):
    assert extract_final_answer(text) == expected


def test_extract_final_answer_rejects_non_strings_as_none():
    assert extract_final_answer(None) is None  # type: ignore[arg-type]


def test_verify_answers_symbolic_numeric_and_wrong():
    predictions = ["0.5", "42", "2\\sqrt 3", "7", None, "x=3", "", "\\frac{3}{4}", "A"]
    truths = ["\\frac{1}{2}", "42", "2\\sqrt{3}", "8", "1", "3", "3", "0.75", "A"]
    assert verify_answers(predictions, truths) == [True, True, True, False, False, True, False, True, True]


def test_verify_answers_works_from_a_thread():
    """Ray actors and asyncio.to_thread call from non-main threads, where signal.alarm is refused:
    the checks run in pool processes, so the timeout still applies and results are right."""
    out = {}

    def call():
        out["r"] = verify_answers(["1/4", "5"], ["0.25", "6"], timeout_s=2)

    thread = threading.Thread(target=call)
    thread.start()
    thread.join(120)
    assert out["r"] == [True, False]


def test_verify_answers_input_errors():
    with pytest.raises(ValueError, match="2 predictions but 1 ground truths"):
        verify_answers(["1", "2"], ["1"])
    with pytest.raises(ValueError, match="ground truth #0 is empty"):
        verify_answers(["1"], [" "])
    with pytest.raises(ValueError, match="timeout_s must be > 0"):
        verify_answers(["1"], ["1"], timeout_s=0)


class _StuckPool:
    """A pool whose checks never finish (as when sympy ignores its alarm inside C code)."""

    _max_workers = 1
    _processes: dict = {}

    def __init__(self):
        self.shut_down = False

    def submit(self, fn, *args):
        return Future()  # never resolved

    def shutdown(self, wait=True, cancel_futures=False):
        self.shut_down = True


def test_a_batch_past_its_guard_counts_as_wrong_and_the_pool_is_replaced(monkeypatch):
    stuck = _StuckPool()
    monkeypatch.setattr(answers._POOL, "_executor", stuck)
    monkeypatch.setattr(answers, "_guard_seconds", lambda alarm, chunk: 0.2)
    assert verify_answers(["0.5"], ["\\frac{1}{2}"]) == [False]  # timed out: wrong, never right
    assert stuck.shut_down and answers._POOL._executor is None
    monkeypatch.undo()
    assert verify_answers(["0.5"], ["\\frac{1}{2}"]) == [True]  # a fresh pool took over


# ----------------------------------------------------------------------------- outcome reward
def _outcome_scorer(checker="math-verify", key="answer") -> PluginRewards:
    plan = RewardPlan(
        outcome=OutcomeConfig(checker=checker, answer_key=key), weights={"outcome": 1.0}, device="cpu"
    )
    return PluginRewards(plan)


@pytest.mark.parametrize("label", [{"answer": "21"}, '{"answer": "21", "question": "q"}', "21", 21])
def test_outcome_reward_reads_ground_truth_from_any_label_form(label):
    responses = ["Area is 7 x 3.\n\nThe answer is \\boxed{21}.", "It is 20.", "\\boxed{21.0}", "I give up"]
    out = _outcome_scorer().score_payloads(
        [{"prompt": "p", "label": label, "images": None, "responses": responses}]
    )[0]
    assert [r["components"]["outcome"] for r in out] == [1.0, 0.0, 1.0, 0.0]
    assert [r["outcome"]["answer"] for r in out] == ["21", "20", "21.0", None]
    assert all(r["outcome"]["has_truth"] for r in out)


def test_outcome_reward_without_ground_truth_is_neutral_zero_and_flagged():
    out = _outcome_scorer(key="solution").score_payloads(
        [{"prompt": "p", "label": {"answer": "21"}, "images": None, "responses": ["\\boxed{21}"]}]
    )[0]
    # a label without the field the component needs is a bad sample: neutral, counted, with its reason
    assert out[0]["components"]["outcome"] == 0.0 and out[0]["outcome"] is None
    assert (
        out[0]["failed"] == ["outcome"]
        and out[0]["reasons"] == ["no_truth"]
        and "'solution'" in out[0]["error"]
    )


def test_exact_checker_needs_the_same_string():
    out = _outcome_scorer(checker="exact").score_payloads(
        [
            {
                "prompt": "p",
                "label": {"answer": "0.5"},
                "images": None,
                "responses": ["\\boxed{1/2}", "\\boxed{ 0.5 }"],
            }
        ]
    )[0]
    assert [r["components"]["outcome"] for r in out] == [0.0, 1.0]


def test_unusable_label_is_neutral_for_all_and_unusable_image_only_for_image_components(caplog):
    scorer = _outcome_scorer()
    with caplog.at_level("ERROR", logger="openrlhf_visualprm.rewards"):
        out = scorer.score_payloads(
            [{"prompt": "p", "label": '{"answer": ', "images": None, "responses": ["1", "2"]}]
        )[0]
    assert [r["components"] for r in out] == [{"outcome": 0.0}, {"outcome": 0.0}]
    assert "is not valid JSON" in out[0]["error"] and "is not valid JSON" in caplog.text
    # The outcome check needs no image: an unreadable image leaves it scoring (images are not even loaded).
    out = scorer.score_payloads(
        [
            {
                "prompt": "p",
                "label": {"answer": "1"},
                "images": ["/etc/passwd"],
                "responses": ["\\boxed{1}", "2"],
            }
        ]
    )[0]
    assert [r["components"] for r in out] == [{"outcome": 1.0}, {"outcome": 0.0}]
    assert out[0]["error"] is None and out[0]["failed"] == []  # no component needed it: not a failed group
