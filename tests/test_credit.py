"""Credit modes against hand computations of their published formulas (numbers worked out on
paper in each test, never by calling the code under test), and the probe of reward hacks."""

from __future__ import annotations

import json
import math
import random
import subprocess
import sys
from pathlib import Path

import pytest

from openrlhf_visualprm.errors import ConfigError
from openrlhf_visualprm.rewards.credit import (
    CREDIT_MODES,
    DEFAULT_CREDIT,
    answer_step,
    group_returns,
    step_returns,
    token_rewards,
)

ROOT = Path(__file__).resolve().parents[1]


def close(got, want, tol=1e-9):
    assert len(got) == len(want), (got, want)
    for g, w in zip(got, want):
        assert len(g) == len(w), (got, want)
        assert all(abs(a - b) <= tol for a, b in zip(g, w)), (got, want)


def test_process_grpo_is_deepseekmath_4_1_3():
    # steps pooled: 0.2, 0.6, 1.0 -> mean 0.6, sample std sqrt((0.16 + 0 + 0.16) / 2) = 0.4
    # normalised: -1, 0 | 1; token return = sum of the normalised rewards of its and later steps
    # outcome z-score: o = 0, 1 -> mean 0.5, std sqrt(0.5) -> -/+ 0.5 / sqrt(0.5) = -/+ sqrt(0.5)
    z = math.sqrt(0.5)
    got = step_returns("process_grpo", [[0.2, 0.6], [1.0]], [0.0, 1.0])
    close(got, [[-1.0 - z, 0.0 - z], [1.0 + z]])
    # without outcomes only step scores count; weights scale each part
    close(step_returns("process_grpo", [[0.2, 0.6], [1.0]], None, prm_weight=2.0), [[-2.0, 0.0], [2.0]])


def test_process_grpo_stepless_response_is_one_step_at_empty_score():
    # [] counts as one step scored 0: pooled 0, 0.5, 1 -> mean 0.5, std 0.5
    close(step_returns("process_grpo", [[], [0.5, 1.0]]), [[-1.0], [1.0, 1.0]])


def test_pure_is_min_form_with_rloo_step_baseline_and_verifiable_reward():
    # PURE, T = 0.1: r = 2p - 1 -> [1, 0] and [0.5]; weights softmax(-r / T) = softmax([-10, 0])
    q = math.exp(-10) / (math.exp(-10) + 1)  # weight of the first step of response 0
    # r' = [q * 1, (1 - q) * 0] and [0.5]; per-response averages q / 2 and 0.5
    # step baseline = mean of the *other* responses' averages: 0.5 for response 0, q / 2 for 1
    # returns: response 0 [q - 0.5 + (0 - 0.5), 0 - 0.5], response 1 [0.5 - q / 2]
    # verifiable reward, leave-one-out: o = 1, 0 -> +1, -1
    got = step_returns("pure", [[1.0, 0.5], [0.75]], [1.0, 0.0])
    close(got, [[q - 1.0 + 1.0, -0.5 + 1.0], [0.5 - q / 2 - 1.0]])
    # T = 1: weights softmax([-1, 0]) = [e^-1, 1] / (1 + e^-1)
    w = math.exp(-1) / (1 + math.exp(-1))
    got = step_returns("pure", [[1.0, 0.5], [0.75]], None, temperature=1.0)
    close(got, [[w - 1.0, -0.5], [0.5 - w / 2]])


def test_rloo_is_prime_leave_one_out_per_source():
    # n = 3; mean step scores 0.4, 1.0, 0.5 (sum 1.9); r' = p * 3/2 - 1.9 / 2
    # response 0: [0.3 - 0.95, 0.9 - 0.95] = [-0.65, -0.05] -> returns [-0.7, -0.05]
    # response 1: [1.5 - 0.95] = [0.55]; response 2: [0.75 - 0.95] = [-0.2]
    # outcome source over the known outcomes 1, 0 (None left out): 1 - 0 = 1, 0 - 1 = -1, 0
    got = step_returns(
        "rloo", [[0.2, 0.6], [1.0], [0.5]], [1.0, 0.0, None], prm_weight=2.0, outcome_weight=0.5
    )
    close(got, [[-1.4 + 0.5, -0.1 + 0.5], [1.1 - 0.5], [-0.4]])


def test_diff_telescopes_and_a_stepless_response_is_never_above_a_scored_one():
    # v0 = 0 (default): rewards 0.5, 0.3, -0.2 -> returns 0.6, 0.1, -0.2; stepless: 0 - 0 = 0
    # outcome term o - mean(o): +0.5 / -0.5
    got = step_returns("diff", [[0.5, 0.8, 0.6], []], [1.0, 0.0])
    close(got, [[1.1, 0.6, 0.3], [-0.5]])


def test_diff_group_centres_the_first_token_return_in_the_group():
    # v0 = 0.2: first-token diff returns 0.6 - 0.2 = 0.4 and 0 - 0.2 = -0.2, mean 0.1
    # response 0 diff returns [0.4, 0.1, -0.2] - 0.1; response 1 [-0.2] - 0.1
    got = step_returns("diff_group", [[0.5, 0.8, 0.6], []], v0=0.2)
    close(got, [[0.3, 0.0, -0.3], [-0.3]])


def test_value_pays_each_step_up_to_the_cap():
    # cap 2: rewards 0.5, 0.8, 0 -> returns 1.3, 0.8, 0
    close(step_returns("value", [[0.5, 0.8, 0.6]], value_max_steps=2), [[1.3, 0.8, 0.0]])


def test_anchored_ranks_within_the_outcome_class_from_the_answer_step():
    # s: min from the answer step: 0.8 (step 2 on), 0.7 (unknown: all steps), 0.2, 0.5 (step 0 on)
    # class o=1: mean 0.75 -> +0.05, -0.05; class o=0: mean 0.35 -> -0.15, +0.15
    # outcome term o - 0.5
    got = step_returns(
        "anchored",
        [[0.9, 0.4, 0.8], [0.7], [0.2, 0.6], [0.5]],
        [1.0, 1.0, 0.0, 0.0],
        answer_steps=[2, None, None, 0],
    )
    close(got, [[0.55] * 3, [0.45], [-0.65, -0.65], [-0.35]])


def test_anchor_option_keeps_step_differences_and_sets_the_level():
    # process_grpo of the first test: [[-1 - z, 0 - z], [1 + z]] (z = sqrt(0.5))
    # anchored level: s = min from the last step (answer unknown: all steps) = 0.2 and 1.0, each
    # alone in its outcome class -> PRM term 0; outcome term o - 0.5 = -0.5, +0.5
    # anchor: R_ik = level_i + R_ik - R_i0 -> [-0.5, -0.5 + 1], [0.5]
    got = step_returns("process_grpo", [[0.2, 0.6], [1.0]], [0.0, 1.0], anchor=True)
    close(got, [[-0.5, 0.5], [0.5]])
    # anchored itself is unchanged by the option
    plain = step_returns("anchored", [[0.2, 0.6], [1.0]], [0.0, 1.0])
    assert step_returns("anchored", [[0.2, 0.6], [1.0]], [0.0, 1.0], anchor=True) == plain


def test_answer_step_is_the_step_holding_the_last_occurrence_of_the_answer():
    text = "x = 3.\n\nSo the answer is 12.\n\nDouble-check: fine."
    spans = [[0, 6], [8, 29], [31, 49]]
    assert answer_step(text, spans, "12") == 1
    assert answer_step(text, spans, None) is None and answer_step(text, spans, "99") is None


def test_token_rewards_have_the_returns_as_suffix_sums():
    assert token_rewards([1.1, 0.6, 0.3]) == pytest.approx([0.5, 0.3, 0.3])
    assert token_rewards([-0.5]) == [-0.5]


@pytest.mark.parametrize("v0", [0.0, 0.5])
@pytest.mark.parametrize("mode", ["diff", "diff_group", "value", "anchored"])
def test_saying_nothing_never_beats_a_scored_attempt_with_the_same_outcome(mode, v0):
    """(Sum-form modes such as process_grpo rank a long below-average attempt under silence.)"""
    rng = random.Random(0)
    for _ in range(200):
        group = [[rng.random() for _ in range(rng.randint(1, 6))] for _ in range(3)] + [[]]
        outcomes = [float(rng.random() < 0.5) for _ in range(3)] + [0.0]
        returns = step_returns(mode, group, outcomes, v0=v0)
        for i in range(3):
            if outcomes[i] == 0.0:
                assert returns[3][0] <= returns[i][0] + 1e-12, (mode, group, outcomes, returns)


def test_bad_mode_and_options_are_named():
    with pytest.raises(ConfigError, match="credit mode must be one of .*process_grpo"):
        step_returns("sum", [[0.5]])
    with pytest.raises(ConfigError, match="temperature"):
        step_returns("pure", [[0.5]], temperature=0)
    with pytest.raises(ValueError, match="2 outcomes for 1 responses"):
        step_returns("diff", [[0.5]], [1.0, 0.0])


def test_credit_probe_default_and_example_modes_have_no_hack_wins():
    out = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "credit_probe.py"), "--json"],
        capture_output=True,
        text=True,
        check=True,
    )
    result = json.loads(out.stdout)
    assert result["default"] == DEFAULT_CREDIT
    assert set(result["hack_wins"]) >= set(CREDIT_MODES)
    example_modes = set()
    for script in (ROOT / "examples").glob("*.sh"):
        lines = [line for line in script.read_text().splitlines() if not line.lstrip().startswith("#")]
        words = " ".join(lines).split()
        anchor = "+anchor" if "--reward.prm.credit_anchor" in words else ""
        example_modes.update(words[i + 1] + anchor for i, w in enumerate(words) if w == "--reward.prm.credit")
    assert example_modes, "no example sets --reward.prm.credit"
    for mode in {result["default"], *example_modes}:
        assert result["hack_wins"][mode] == 0, (mode, result["margins"][mode])
    # the probe can fail: the sum-form modes are paid for padding
    assert result["hack_wins"]["process_grpo"] > 0 and result["hack_wins"]["value"] > 0


def test_group_returns_reads_runtime_results_answers_and_failures():
    texts = ["Hmm, unsure.\n\nAnswer: 5.", "It is 5.", ""]
    rows = [
        {"components": {"prm": 0.2, "outcome": 1.0}, "prm": {"step_scores": [0.2, 0.9], "spans": [[0, 12], [14, 24]]},
         "outcome": {"answer": "5"}, "failed": []},
        {"components": {"prm": 0.5, "outcome": 1.0}, "prm": {"step_scores": [0.5], "spans": [[0, 8]]},
         "outcome": {"answer": "5"}, "failed": []},
        {"components": {"prm": 0.0, "outcome": 0.0}, "prm": {"step_scores": [], "spans": []},
         "outcome": {"answer": None}, "failed": []},
    ]  # fmt: skip
    # anchored: s = 0.9 (the answer "5" is in step 1, so the unsure step 0 does not count), 0.5,
    # 0 (stepless); class o=1: mean 0.7 -> +0.2, -0.2 (x w_prm 2); class o=0 alone -> 0;
    # outcome o - 2/3
    got = group_returns(rows, texts, {"prm": 2.0, "outcome": 1.0}, "anchored")
    close(got, [[0.4 + 1 / 3] * 2, [-0.4 + 1 / 3], [-2 / 3]])
    # the PRM failed for the group (a bad image): no PRM term at all, the outcome still counts
    for row in rows:
        row["failed"] = ["prm"]
    got = group_returns(rows, texts, {"prm": 2.0, "outcome": 1.0}, "anchored")
    close(got, [[1 / 3], [1 / 3], [-2 / 3]])
