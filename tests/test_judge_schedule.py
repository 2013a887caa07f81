"""Schedules: documented appearance counts, label balance, determinism."""

from __future__ import annotations

import itertools
import random
from collections import Counter

import pytest

from openrlhf_visualprm.judge.schedule import (
    REFERENCE,
    all_pairs,
    knockout_round,
    knockout_rounds,
    knockout_seeding,
    listwise,
    run_bracket,
    versus_reference,
)


def appearances(matchups, n):
    counts = Counter(r for m in matchups for r in m.order)
    return [counts[i] for i in range(n)]


@pytest.mark.parametrize(
    ("n", "k", "rounds"), [(8, 4, 4), (8, 4, 8), (6, 4, 3), (4, 2, 4), (9, 3, 6), (16, 4, 4)]
)
def test_listwise_equal_sets_balance_labels_exactly(n, k, rounds):
    ms = listwise(n, k, rounds, random.Random(1))
    assert appearances(ms, n) == [rounds] * n
    for r in range(rounds):  # each response exactly once per round
        assert sorted(x for m in ms if m.round == r for x in m.order) == list(range(n))
    m = len(ms[0].order)
    assert all(len(x.order) == m for x in ms)
    labels = Counter((resp, pos) for x in ms for pos, resp in enumerate(x.order))
    # rounds come in blocks of m: within full blocks every response holds every label equally
    full = (rounds // m) * m
    per = Counter((resp, pos) for x in ms if x.round < full for pos, resp in enumerate(x.order))
    if full:
        assert set(per.values()) == {full // m} and len(per) == n * m
    assert max(labels.values()) - min(labels[(i, p)] for i in range(n) for p in range(m)) <= 1


def test_listwise_reshuffles_partners():
    ms = listwise(8, 4, 8, random.Random(0))
    sets_per_round = [frozenset(frozenset(m.order) for m in ms if m.round == r) for r in range(8)]
    assert len(set(sets_per_round)) > 1
    met = {frozenset(p) for m in ms for p in itertools.combinations(m.order, 2)}
    assert len(met) > 20  # far more than the 12 pairs one fixed partition would give


@pytest.mark.parametrize(("n", "k"), [(5, 4), (7, 4), (10, 4), (7, 3)])
def test_listwise_unequal_sets_greedy_balance(n, k):
    rounds = 6
    ms = listwise(n, k, rounds, random.Random(3))
    assert appearances(ms, n) == [rounds] * n
    sizes = [len(m.order) for m in ms if m.round == 0]
    assert max(sizes) - min(sizes) <= 1 and all(2 <= s <= k for s in sizes)
    first = Counter(m.order[0] for m in ms)
    # label A is spread: nobody holds it in more than half of its appearances
    assert max(first.values()) <= rounds // 2 + 1


def test_listwise_pairs_with_odd_group_rotate_a_bye():
    ms = listwise(5, 2, 5, random.Random(0))
    assert all(len(m.order) == 2 for m in ms)
    assert appearances(ms, 5) == [4] * 5  # each response sits out exactly once in 5 rounds
    for r in range(5):
        assert len({x for m in ms if m.round == r for x in m.order}) == 4


def test_listwise_small_groups():
    assert listwise(1, 4, 3, random.Random(0)) == []
    ms = listwise(2, 4, 4, random.Random(0))
    assert [m.order for m in ms] in ([(0, 1), (1, 0)] * 2, [(1, 0), (0, 1)] * 2)


def test_listwise_is_deterministic_under_a_seed():
    assert listwise(8, 4, 4, random.Random(7)) == listwise(8, 4, 4, random.Random(7))
    assert listwise(8, 4, 4, random.Random(7)) != listwise(8, 4, 4, random.Random(8))


def test_listwise_rejects_bad_parameters():
    with pytest.raises(ValueError, match="k must be 2..4"):
        listwise(8, 5, 1)
    with pytest.raises(ValueError, match="rounds"):
        listwise(8, 4, 0)


def test_all_pairs_both_orders():
    ms = all_pairs(5, random.Random(0))
    assert len(ms) == 5 * 4
    assert Counter(m.order for m in ms) == Counter({o: 1 for o in itertools.permutations(range(5), 2)})
    assert appearances(ms, 5) == [8] * 5
    firsts = Counter(m.order[0] for m in ms)
    assert set(firsts.values()) == {4}  # each response is first exactly in half its calls


def test_versus_reference_both_orders():
    ms = versus_reference(3, random.Random(0))
    assert sorted(m.order for m in ms) == sorted(
        [(i, REFERENCE) for i in range(3)] + [(REFERENCE, i) for i in range(3)]
    )


def test_knockout_bracket_calls_and_byes():
    rng = random.Random(0)
    for n in (2, 5, 8):
        survivors, calls = knockout_seeding(n, rng), 0
        rounds = 0
        while len(survivors) > 1:
            matches, byes = knockout_round(survivors, rounds, rng)
            calls += len(matches)
            survivors = byes + [m.order[0] for m in matches]
            rounds += 1
        assert calls == n - 1 and rounds == knockout_rounds(n)


def test_run_bracket_the_strongest_wins_in_n_minus_1_calls_whatever_the_seeding():
    strength = [3, 9, 1, 5, 7]

    def stronger(m):  # reads who is in the match, not where they are shown
        return max(m.order, key=lambda i: strength[i])

    for seed in range(6):
        assert run_bracket(5, stronger, random.Random(seed)) == (1, 4, 0)


def test_run_bracket_follows_mrjudge_knockout_rules_on_failed_verdicts():
    # The evaluator's bracket and the judge's batched knockout share seeding, label order, byes and
    # the coin for failed verdicts: with the same seed they show the same matches, crown the same one.
    from openrlhf_visualprm.judge import MRJudge, ScriptedBackend
    from openrlhf_visualprm.judge.judge import JudgeGroup, group_seed

    group = JudgeGroup([], "Which is right?", [f"answer {i}" for i in range(7)])
    judge = MRJudge(ScriptedBackend(lambda req: "no verdict"), schedule="knockout", seed=3)
    result = judge.judge_groups([group])[0]
    shown = []

    def failing(m):
        shown.append(m.order)
        return None

    winner, calls, failures = run_bracket(7, failing, random.Random(group_seed(3, group)))
    assert (calls, failures) == (6, 6) == (len(result.calls), result.stats["parse_failures"])
    assert shown == [c.order for c in result.calls]
    assert winner == result.best


def test_balanced_rounds_is_where_an_always_A_judge_stops_paying():
    import random as _random

    from openrlhf_visualprm.judge.schedule import balanced_rounds, listwise

    assert balanced_rounds(8, 4) == 4 and balanced_rounds(6, 4) == 3 and balanced_rounds(8, 2) == 2
    assert balanced_rounds(7, 4) is None and balanced_rounds(1, 4) is None  # uneven sets: greedy

    def always_a_win_rates(rounds):
        wins, seen = [0] * 8, [0] * 8
        for m in listwise(8, 4, rounds, _random.Random(3)):
            for resp in m.order:
                seen[resp] += 1
            wins[m.order[0]] += 1  # the judge picks whatever stands under label A
        return [w / s for w, s in zip(wins, seen)]

    assert len(set(always_a_win_rates(4))) == 1  # a balanced block: position bias cancels
    assert len(set(always_a_win_rates(8))) == 1
    assert len(set(always_a_win_rates(2))) > 1  # 2 rounds: rewards from position alone
