"""Which candidates meet in which judge call, and in which order.

A *matchup* is one judge call: ``order[p]`` is the response shown under label ``LABELS[p]``
(``REFERENCE`` = the reference solution). All schedules take a ``random.Random`` so a seed fixes
every shuffle. Documented guarantees (tested):

- ``listwise(n, k, rounds)``: each round splits the group into ``ceil(n / k)`` sets whose sizes
  differ by at most one, so every response appears exactly once per round (``rounds``
  appearances in all; n = 1 gives no calls). Partners are reshuffled every round. Labels: when
  the sets have equal size m (``n % ceil(n/k) == 0``, e.g. n = 8, k = 4), rounds come in blocks of
  m in which each response takes every label exactly once; otherwise each set's labels are
  assigned to the members that have held them least so far (balanced greedily). The one case
  that would leave a set of one (k = 2, odd n) gives one response per round a bye instead,
  rotating, so appearance counts then differ by at most one.
  :func:`balanced_rounds` gives that block size m: with ``rounds`` not a multiple of it some
  responses never hold some labels, so a position-biased judge (always "A") hands out rewards
  that are pure noise; the launcher refuses such ``rounds``.
- ``all_pairs(n)``: every unordered pair twice, once in each order: n(n-1) calls.
- ``versus_reference(n)``: each response against the reference, both orders: 2n calls.
- knockout: :func:`knockout_round` pairs the survivors of the previous round (random order
  within a match, a bye for an odd one out); n - 1 calls over ``ceil(log2 n)`` rounds.
"""

from __future__ import annotations

import itertools
import math
import random
from collections.abc import Callable
from dataclasses import dataclass

from .template import LABELS, MAX_CANDIDATES

REFERENCE = -1
SCHEDULES = ("listwise", "pairwise", "reference", "knockout")
# Listwise rounds with reshuffled labels. Four: with groups of 8 and K=4 the rounds come in
# balanced blocks, and position bias averages out (balanced_rounds). JudgeConfig's default.
DEFAULT_ROUNDS = 4


@dataclass(frozen=True)
class Matchup:
    """One judge call. ``order``: response ids in label order; ``round``: schedule round."""

    order: tuple[int, ...]
    round: int
    kind: str

    @property
    def labels(self) -> tuple[str, ...]:
        return LABELS[: len(self.order)]


def _set_sizes(n: int, k: int) -> list[int]:
    groups = math.ceil(n / k)
    base, extra = divmod(n, groups)
    return [base + 1] * extra + [base] * (groups - extra)


def balanced_rounds(n: int, k: int = MAX_CANDIDATES) -> int | None:
    """The block of rounds after which every response has held every label equally often (the
    set size m when the ``ceil(n / k)`` sets have equal size), or None when the sets are uneven
    (labels are then balanced greedily, never exactly) or there is nothing to compare."""
    if n < 2 or not 2 <= k <= MAX_CANDIDATES:
        return None
    sizes = _set_sizes(n, k)
    return sizes[0] if len(set(sizes)) == 1 else None


def listwise(
    n: int, k: int = MAX_CANDIDATES, rounds: int = DEFAULT_ROUNDS, rng: random.Random | None = None
) -> list[Matchup]:
    """Listwise rounds; see the module docstring for the guarantees."""
    if not 2 <= k <= MAX_CANDIDATES:
        raise ValueError(f"listwise set size k must be 2..{MAX_CANDIDATES}, got {k}")
    if rounds < 1:
        raise ValueError(f"rounds must be >= 1, got {rounds}")
    rng = rng or random.Random(0)
    if n < 2:
        return []
    sizes = _set_sizes(n, k)
    if len(set(sizes)) == 1:
        return _listwise_exact(n, sizes[0], len(sizes), rounds, rng)
    return _listwise_greedy(n, sizes, rounds, rng)


def _listwise_exact(n: int, m: int, groups: int, rounds: int, rng: random.Random) -> list[Matchup]:
    # Each response gets an offset; in round r it holds label (offset + r) mod m. Every label is
    # held by exactly `groups` responses per round, so one set takes one response per label.
    out: list[Matchup] = []
    offsets: dict[int, int] = {}
    for r in range(rounds):
        if r % m == 0:  # new block: new offsets, hence new partner structure
            perm = list(range(n))
            rng.shuffle(perm)
            offsets = {resp: idx % m for idx, resp in enumerate(perm)}
        buckets: list[list[int]] = [[] for _ in range(m)]
        for resp in range(n):
            buckets[(offsets[resp] + r) % m].append(resp)
        for bucket in buckets:
            rng.shuffle(bucket)
        for g in range(groups):
            out.append(Matchup(tuple(buckets[label][g] for label in range(m)), r, "listwise"))
    return out


def _listwise_greedy(n: int, sizes: list[int], rounds: int, rng: random.Random) -> list[Matchup]:
    counts = [[0] * MAX_CANDIDATES for _ in range(n)]
    byes = [0] * n
    needs_bye = 1 in sizes  # a set of one compares nothing: rotate a bye instead
    sizes = [s for s in sizes if s != 1]
    out: list[Matchup] = []
    for r in range(rounds):
        perm = list(range(n))
        rng.shuffle(perm)
        if needs_bye:
            sit_out = min(perm, key=lambda resp: byes[resp])
            byes[sit_out] += 1
            perm.remove(sit_out)
        start = 0
        for size in sizes:
            members = perm[start : start + size]
            start += size
            options = list(itertools.permutations(members))
            rng.shuffle(options)  # random tie-break among equally balanced assignments
            best = min(options, key=lambda order: sum(counts[resp][p] for p, resp in enumerate(order)))
            for p, resp in enumerate(best):
                counts[resp][p] += 1
            out.append(Matchup(tuple(best), r, "listwise"))
    return out


def all_pairs(n: int, rng: random.Random | None = None) -> list[Matchup]:
    """Every unordered pair in both orders; round 0 holds a random first order, round 1 the swap."""
    rng = rng or random.Random(0)
    out: list[Matchup] = []
    for i, j in itertools.combinations(range(n), 2):
        first = (i, j) if rng.random() < 0.5 else (j, i)
        out.append(Matchup(first, 0, "pairwise"))
        out.append(Matchup(first[::-1], 1, "pairwise"))
    return out


def versus_reference(n: int, rng: random.Random | None = None) -> list[Matchup]:
    """Each response against the reference in both orders."""
    rng = rng or random.Random(0)
    out: list[Matchup] = []
    for i in range(n):
        first = (i, REFERENCE) if rng.random() < 0.5 else (REFERENCE, i)
        out.append(Matchup(first, 0, "reference"))
        out.append(Matchup(first[::-1], 1, "reference"))
    return out


def knockout_seeding(n: int, rng: random.Random | None = None) -> list[int]:
    """Random initial bracket order."""
    rng = rng or random.Random(0)
    order = list(range(n))
    rng.shuffle(order)
    return order


def knockout_round(
    survivors: list[int], round_index: int, rng: random.Random
) -> tuple[list[Matchup], list[int]]:
    """Pair consecutive survivors (random label order per match). Returns (matches, byes)."""
    matches = []
    for a, b in zip(survivors[0::2], survivors[1::2], strict=False):
        order = (a, b) if rng.random() < 0.5 else (b, a)
        matches.append(Matchup(order, round_index, "knockout"))
    byes = [survivors[-1]] if len(survivors) % 2 else []
    return matches, byes


def knockout_advance(match: Matchup, winner: int | None, rng: random.Random) -> int:
    """Who goes on from ``match``: the judged winner, or a seeded coin when the verdict failed.

    A failed verdict credits no one. The one tie rule of every bracket (the judge's knockout
    schedule and the best-of-N evaluator).
    """
    return winner if winner is not None else match.order[rng.randrange(len(match.order))]


def run_bracket(
    n: int, judge_match: Callable[[Matchup], int | None], rng: random.Random
) -> tuple[int, int, int]:
    """A sequential knockout over ``range(n)``: ``(champion, calls, failed verdicts)``.

    ``judge_match(m)`` returns the winning response id of one call, or None when it failed.
    Seeding, label order, byes (the odd one out goes first next round) and the tie rule are the
    same as :class:`~openrlhf_visualprm.judge.MRJudge`'s batched knockout.
    """
    survivors = knockout_seeding(n, rng)
    calls = failures = round_index = 0
    while len(survivors) > 1:
        matches, byes = knockout_round(survivors, round_index, rng)
        advancing = []
        for m in matches:
            winner = judge_match(m)
            calls += 1
            failures += winner is None
            advancing.append(knockout_advance(m, winner, rng))
        survivors = byes + advancing
        round_index += 1
    return survivors[0], calls, failures


def knockout_rounds(n: int) -> int:
    return math.ceil(math.log2(n)) if n > 1 else 0


def plan(
    schedule: str, n: int, *, k: int = MAX_CANDIDATES, rounds: int = DEFAULT_ROUNDS, rng: random.Random
) -> list[Matchup]:
    """All calls of a non-adaptive schedule (knockout is adaptive: see :func:`knockout_round`)."""
    if schedule == "listwise":
        return listwise(n, k, rounds, rng)
    if schedule == "pairwise":
        return all_pairs(n, rng)
    if schedule == "reference":
        return versus_reference(n, rng)
    raise ValueError(
        f"unknown or adaptive schedule {schedule!r}; non-adaptive ones: listwise, pairwise, reference"
    )
