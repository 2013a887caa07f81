"""Turn judge verdicts into one reward per response.

Scale: every aggregator except knockout puts *chance at 0.5* (``CHANCE``): a judge that picks
uniformly at random gives each response an expected reward of 0.5, and a group of responses the
judge cannot tell apart gets 0.5 each. Rewards lie in [0, 1].

- ``win_rate`` (default). Listwise: the mean, over a response's appearances, of its per-call
  value: 1 for the pick, ``(m - 2) / (2 (m - 1))`` for each of the other m - 1 members of a set of
  m (0 in a pair, 1/3 in a set of 4). This is "wins / appearances" rescaled per set size so that
  chance is 0.5; it equals the tie-averaged Borda count of the call, normalised. Pairwise and
  reference: the mean pair score, 1 for a win confirmed in both orders, 0 for a loss, 0.5 for a
  tie (a verdict that flips when the order is swapped is a tie).
- ``borda``: the rank transform of the win rates over the group: the fraction of the other
  responses a response beats (ties count half). Robust to the scale of the win rates; the group
  mean is exactly 0.5.
- ``bradley_terry``: strengths fitted by Hunter's MM algorithm to the pairwise preferences the
  verdicts imply (a listwise pick beats each other member of its set; ties count half), with
  ``prior`` tie pseudo-comparisons between every two players so strengths stay finite. The
  reward is the fitted probability of beating another response of the group, averaged.
- knockout (best-of-N): fraction of the bracket's ``ceil(log2 n)`` rounds a response won; the
  champion gets 1. Byes are not wins.

Failed parses never count as a win. ``on_failure="neutral"``: a failed call is a tie among its
members (listwise value 0.5; a pair with any failed order is a tie). ``"skip"``: a failed call is
ignored (a pair is then decided by its remaining order); a response left with no information
gets 0.5.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from .schedule import REFERENCE, knockout_rounds

CHANCE = 0.5
AGGREGATORS = ("win_rate", "borda", "bradley_terry")
FAILURE_POLICIES = ("neutral", "skip")
DEFAULT_AGGREGATOR, DEFAULT_ON_FAILURE = "win_rate", "neutral"  # JudgeConfig's defaults


@dataclass(frozen=True)
class Verdict:
    """One parsed call: ``order`` as shown (label order), ``choice`` = chosen position or None."""

    order: tuple[int, ...]
    choice: int | None

    @property
    def winner(self) -> int | None:
        return None if self.choice is None else self.order[self.choice]


@dataclass(frozen=True)
class PairOutcome:
    """Both orders of one pair combined. ``score`` is for ``a`` (1 win, 0.5 tie, 0 loss)."""

    a: int
    b: int
    score: float
    flipped: bool  # both orders parsed and disagreed
    both_valid: bool


def _check(on_failure: str) -> None:
    if on_failure not in FAILURE_POLICIES:
        raise ValueError(f"on_failure must be one of {FAILURE_POLICIES}, got {on_failure!r}")


def listwise_value(set_size: int, won: bool) -> float:
    """Per-appearance value of a listwise call (see the module docstring)."""
    if set_size < 2:
        raise ValueError(f"a listwise call needs at least 2 members, got {set_size}")
    return 1.0 if won else (set_size - 2) / (2 * (set_size - 1))


def listwise_win_rate(
    n: int, verdicts: Sequence[Verdict], on_failure: str = DEFAULT_ON_FAILURE
) -> list[float]:
    _check(on_failure)
    totals, counts = [0.0] * n, [0] * n
    for v in verdicts:
        if v.choice is None and on_failure == "skip":
            continue
        for resp in v.order:
            value = CHANCE if v.choice is None else listwise_value(len(v.order), resp == v.winner)
            totals[resp] += value
            counts[resp] += 1
    return [totals[i] / counts[i] if counts[i] else CHANCE for i in range(n)]


def combine_orders(verdicts: Sequence[Verdict], on_failure: str = DEFAULT_ON_FAILURE) -> list[PairOutcome]:
    """Group two-candidate verdicts by pair and combine their orders (flip = tie)."""
    _check(on_failure)
    by_pair: dict[tuple[int, int], list[Verdict]] = {}
    for v in verdicts:
        if len(v.order) != 2:
            raise ValueError(f"pairwise verdicts must have 2 candidates, got order {v.order}")
        by_pair.setdefault(tuple(sorted(v.order)), []).append(v)
    out = []
    for (a, b), group in by_pair.items():
        valid = [v.winner for v in group if v.choice is not None]
        failed = len(valid) < len(group)
        both_valid = len(valid) >= 2 and not failed
        if failed and on_failure == "neutral":
            out.append(PairOutcome(a, b, CHANCE, False, False))
            continue
        if not valid:  # skip policy, nothing parsed
            continue
        if all(w == valid[0] for w in valid):
            out.append(PairOutcome(a, b, 1.0 if valid[0] == a else 0.0, False, both_valid))
        else:
            out.append(PairOutcome(a, b, CHANCE, both_valid, both_valid))
    return out


def pair_win_rate(n: int, pairs: Sequence[PairOutcome]) -> list[float]:
    totals, counts = [0.0] * n, [0] * n
    for p in pairs:
        for resp, score in ((p.a, p.score), (p.b, 1.0 - p.score)):
            if resp != REFERENCE:
                totals[resp] += score
                counts[resp] += 1
    return [totals[i] / counts[i] if counts[i] else CHANCE for i in range(n)]


def knockout_rewards(n: int, verdicts: Sequence[Verdict]) -> list[float]:
    wins = [0] * n
    for v in verdicts:
        if v.winner is not None:
            wins[v.winner] += 1
    total = knockout_rounds(n)
    return [w / total if total else CHANCE for w in wins]


def borda(scores: Sequence[float], tol: float = 1e-12) -> list[float]:
    """Fraction of the other responses each one outscores (ties half); 0.5 for a single one."""
    n = len(scores)
    if n < 2:
        return [CHANCE] * n
    out = []
    for i, s in enumerate(scores):
        beaten = sum(
            1.0 if s > t + tol else 0.5 if abs(s - t) <= tol else 0.0 for j, t in enumerate(scores) if j != i
        )
        out.append(beaten / (n - 1))
    return out


def fit_bradley_terry(
    n_players: int,
    comparisons: Sequence[tuple[int, int, float]],
    prior: float = 0.1,
    max_iter: int = 10_000,
    tol: float = 1e-12,
) -> np.ndarray:
    """Bradley-Terry strengths (normalised to sum 1) from ``(i, j, score_of_i)`` comparisons.

    Hunter's MM update ``p_i <- W_i / sum_j N_ij / (p_i + p_j)``. ``prior`` adds that many tie
    comparisons between every two players (0 gives the plain maximum-likelihood fit, which is
    finite only when the comparison graph is strongly connected).
    """
    if prior < 0:
        raise ValueError(f"Bradley-Terry prior must be >= 0, got {prior}")
    wins = np.zeros((n_players, n_players))
    for i, j, s in comparisons:
        if not 0.0 <= s <= 1.0:
            raise ValueError(f"comparison score must be in [0, 1], got {s}")
        wins[i, j] += s
        wins[j, i] += 1.0 - s
    if prior > 0:
        off = 1.0 - np.eye(n_players)
        wins += off * (prior / 2.0)
    games = wins + wins.T
    w = wins.sum(axis=1)
    p = np.full(n_players, 1.0 / n_players)
    for _ in range(max_iter):
        denom = (games / (p[:, None] + p[None, :] + 1e-300)).sum(axis=1)
        new = np.where(denom > 0, w / np.maximum(denom, 1e-300), p)
        new = new / new.sum()
        if np.max(np.abs(new - p)) < tol:
            p = new
            break
        p = new
    return p


def bradley_terry_rewards(
    n: int, comparisons: Sequence[tuple[int, int, float]], prior: float = 0.1
) -> list[float]:
    """Mean fitted P(i beats j) over the other responses (the reference is player ``n``)."""
    has_ref = any(REFERENCE in (i, j) for i, j, _ in comparisons)
    players = n + (1 if has_ref else 0)
    mapped = [(n if i == REFERENCE else i, n if j == REFERENCE else j, s) for i, j, s in comparisons]
    p = fit_bradley_terry(players, mapped, prior)
    out = []
    for i in range(n):
        opponents = [j for j in range(n) if j != i] or ([n] if has_ref else [])
        if not opponents:
            out.append(CHANCE)
            continue
        probs = [p[i] / (p[i] + p[j]) if p[i] + p[j] > 0 else CHANCE for j in opponents]
        out.append(float(sum(probs) / len(probs)))
    return out


def implied_comparisons(
    schedule: str, verdicts: Sequence[Verdict], on_failure: str
) -> list[tuple[int, int, float]]:
    """Pairwise preferences implied by the verdicts (input of the Bradley-Terry fit)."""
    if schedule in ("pairwise", "reference"):
        return [(p.a, p.b, p.score) for p in combine_orders(verdicts, on_failure)]
    out = []
    for v in verdicts:
        if v.choice is None:
            if on_failure == "neutral" and schedule == "listwise":
                out += [(a, b, CHANCE) for x, a in enumerate(v.order) for b in v.order[x + 1 :]]
            continue
        out += [(v.winner, other, 1.0) for other in v.order if other != v.winner]
    return out


def aggregate(
    schedule: str,
    n: int,
    verdicts: Sequence[Verdict],
    aggregator: str = DEFAULT_AGGREGATOR,
    on_failure: str = DEFAULT_ON_FAILURE,
    bt_prior: float = 0.1,
) -> list[float]:
    """Rewards for the ``n`` responses of one group from its verdicts."""
    _check(on_failure)
    if aggregator not in AGGREGATORS:
        raise ValueError(f"aggregator must be one of {AGGREGATORS}, got {aggregator!r}")
    if schedule == "listwise":
        base = listwise_win_rate(n, verdicts, on_failure)
    elif schedule in ("pairwise", "reference"):
        base = pair_win_rate(n, combine_orders(verdicts, on_failure))
    elif schedule == "knockout":
        base = knockout_rewards(n, verdicts)
    else:
        raise ValueError(f"unknown schedule {schedule!r}")
    if aggregator == "win_rate":
        return base
    if aggregator == "borda":
        return borda(base)
    return bradley_terry_rewards(n, implied_comparisons(schedule, verdicts, on_failure), bt_prior)


def pearson(xs: Sequence[float], ys: Sequence[float]) -> float | None:
    """Pearson correlation, or None when either side is constant or there are < 2 points."""
    if len(xs) < 2 or len(xs) != len(ys):
        return None
    mx, my = sum(xs) / len(xs), sum(ys) / len(ys)
    sxx = sum((x - mx) ** 2 for x in xs)
    syy = sum((y - my) ** 2 for y in ys)
    if sxx <= 0 or syy <= 0:
        return None
    return sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True)) / math.sqrt(sxx * syy)
