"""Aggregators against hand-computed values; failures never count as wins."""

from __future__ import annotations

import random

import pytest

from openrlhf_visualprm.judge.aggregate import (
    CHANCE,
    Verdict,
    aggregate,
    borda,
    bradley_terry_rewards,
    combine_orders,
    fit_bradley_terry,
    listwise_value,
    pearson,
)
from openrlhf_visualprm.judge.schedule import REFERENCE, listwise

LISTWISE = [Verdict((0, 1, 2, 3), 0), Verdict((2, 0, 1), 2), Verdict((3, 2), None)]
PAIRWISE = [
    Verdict((0, 1), 0),
    Verdict((1, 0), 1),  # 0 beats 1 in both orders
    Verdict((0, 2), 0),
    Verdict((2, 0), 0),  # first position both times: a flip, i.e. a tie
    Verdict((1, 2), 1),
    Verdict((2, 1), None),  # 2 wins once, the swap failed to parse
]


def test_listwise_values_put_chance_at_one_half():
    assert listwise_value(4, True) == 1.0 and listwise_value(4, False) == pytest.approx(1 / 3)
    assert listwise_value(2, False) == 0.0 and listwise_value(3, False) == pytest.approx(0.25)
    for m in (2, 3, 4):  # a uniformly random pick is worth 0.5 in expectation
        assert (listwise_value(m, True) + (m - 1) * listwise_value(m, False)) / m == pytest.approx(CHANCE)


def test_listwise_win_rate_hand_computed():
    neutral = aggregate("listwise", 4, LISTWISE)
    assert neutral == pytest.approx([0.625, 2 / 3, 13 / 36, 5 / 12])
    skip = aggregate("listwise", 4, LISTWISE, on_failure="skip")
    assert skip == pytest.approx([0.625, 2 / 3, 7 / 24, 1 / 3])


def test_borda_hand_computed():
    assert aggregate("listwise", 4, LISTWISE, aggregator="borda") == pytest.approx([2 / 3, 1.0, 0.0, 1 / 3])
    assert borda([0.2, 0.2, 0.9]) == pytest.approx([0.25, 0.25, 1.0])
    assert borda([0.7]) == [CHANCE]


def test_pairwise_flip_is_a_tie_and_failures_follow_the_policy():
    assert aggregate("pairwise", 3, PAIRWISE) == pytest.approx([0.75, 0.25, 0.5])
    assert aggregate("pairwise", 3, PAIRWISE, on_failure="skip") == pytest.approx([0.75, 0.0, 0.75])
    pairs = {(p.a, p.b): p for p in combine_orders(PAIRWISE)}
    assert pairs[(0, 2)].flipped and pairs[(0, 2)].score == CHANCE
    assert not pairs[(0, 1)].flipped and pairs[(0, 1)].score == 1.0
    assert not pairs[(1, 2)].both_valid


def test_reference_schedule_scores_against_the_reference():
    verdicts = [
        Verdict((0, REFERENCE), 0),
        Verdict((REFERENCE, 0), 1),  # beats the reference both ways
        Verdict((1, REFERENCE), 1),
        Verdict((REFERENCE, 1), 0),  # loses both ways
        Verdict((2, REFERENCE), 0),
        Verdict((REFERENCE, 2), 0),  # flip
    ]
    assert aggregate("reference", 3, verdicts) == [1.0, 0.0, 0.5]


def test_bradley_terry_two_players_closed_form():
    comps = [(0, 1, 1.0)] * 3 + [(1, 0, 1.0)]
    assert bradley_terry_rewards(2, comps, prior=0.0) == pytest.approx([0.75, 0.25], abs=1e-9)


def test_bradley_terry_three_players_hand_computed():
    # Counts chosen so the maximum-likelihood strengths are exactly proportional to (4, 2, 1).
    comps = (
        [(0, 1, 1.0)] * 2
        + [(1, 0, 1.0)]
        + [(1, 2, 1.0)] * 2
        + [(2, 1, 1.0)]
        + [(0, 2, 1.0)] * 4
        + [(2, 0, 1.0)]
    )
    p = fit_bradley_terry(3, comps, prior=0.0)
    assert p / p[2] == pytest.approx([4.0, 2.0, 1.0], rel=1e-6)
    # reward = mean P(beat each other response): (2/3 + 4/5)/2, (1/3 + 2/3)/2, (1/5 + 1/3)/2
    assert bradley_terry_rewards(3, comps, prior=0.0) == pytest.approx([11 / 15, 0.5, 4 / 15], rel=1e-6)


def test_bradley_terry_prior_keeps_a_sweep_finite():
    rewards = bradley_terry_rewards(2, [(0, 1, 1.0)], prior=0.1)
    assert 0.5 < rewards[0] < 1.0 and rewards[0] + rewards[1] == pytest.approx(1.0)
    with pytest.raises(ValueError, match="prior"):
        fit_bradley_terry(2, [], prior=-1)


def test_bradley_terry_through_aggregate_orders_like_the_verdicts():
    rewards = aggregate("pairwise", 3, PAIRWISE, aggregator="bradley_terry")
    assert rewards[0] > rewards[2] > rewards[1]


def test_knockout_rewards_are_rounds_won():
    verdicts = [Verdict((0, 1), 0), Verdict((2, 3), None), Verdict((0, 3), 1)]
    assert aggregate("knockout", 4, verdicts) == [0.5, 0.0, 0.0, 0.5]


@pytest.mark.parametrize("aggregator", ["win_rate", "borda", "bradley_terry"])
@pytest.mark.parametrize("schedule", ["listwise", "pairwise"])
def test_all_failures_give_exactly_chance(schedule, aggregator):
    orders = (
        [(0, 1, 2, 3), (3, 2, 1, 0)]
        if schedule == "listwise"
        else [(0, 1), (1, 0), (2, 3), (3, 2), (0, 3), (3, 0)]
    )
    verdicts = [Verdict(o, None) for o in orders]
    for policy in ("neutral", "skip"):
        assert aggregate(schedule, 4, verdicts, aggregator, policy) == pytest.approx([CHANCE] * 4)


def test_a_failed_call_never_beats_a_win():
    """Turning a call into a parse failure never gives a member more than winning it would."""
    rng = random.Random(0)
    for trial in range(30):
        matchups = listwise(8, 4, 3, random.Random(trial))
        verdicts = [Verdict(m.order, rng.randrange(len(m.order))) for m in matchups]
        idx = rng.randrange(len(verdicts))
        for policy in ("neutral", "skip"):
            failed = aggregate(
                "listwise",
                8,
                verdicts[:idx] + [Verdict(verdicts[idx].order, None)] + verdicts[idx + 1 :],
                on_failure=policy,
            )
            for pos, member in enumerate(verdicts[idx].order):
                won = verdicts[:idx] + [Verdict(verdicts[idx].order, pos)] + verdicts[idx + 1 :]
                assert failed[member] <= aggregate("listwise", 8, won, on_failure=policy)[member] + 1e-12


def test_bad_aggregate_arguments():
    with pytest.raises(ValueError, match="aggregator"):
        aggregate("listwise", 2, [], aggregator="elo")
    with pytest.raises(ValueError, match="on_failure"):
        aggregate("listwise", 2, [], on_failure="guess")
    with pytest.raises(ValueError, match="2 candidates"):
        combine_orders([Verdict((0, 1, 2), 0)])


def test_pearson():
    assert pearson([1, 2, 3], [2, 4, 6]) == pytest.approx(1.0)
    assert pearson([1, 2, 3], [1, 1, 1]) is None
