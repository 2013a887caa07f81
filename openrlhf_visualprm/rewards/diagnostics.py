"""What a run needs to notice reward hacking, computed every step from the step's groups.

Pure functions over the reward runtime's per-response results (no torch, no Ray, no OpenRLHF);
hosts log the dict :func:`step_diagnostics` returns (the plugin's experience hook puts each number
into OpenRLHF's logged metrics). A number that is undefined this step (no group with both
outcomes, no judge) is left out rather than logged as 0 or NaN.

- ``diag/prm_outcome_auroc``: within-group AUROC of the PRM aggregate against the outcome: over
  every (right, wrong) pair of responses *of the same group*, the fraction the PRM ranks right
  (ties count half). Groups with one outcome class only are skipped. 0.5: the PRM is no better than
  chance at telling what the verifier tells; falling during a run: the policy found what the PRM
  likes and the verifier does not.
- ``diag/steps_p50`` / ``_p95`` / ``_max``, ``diag/steps_frac_1``, ``diag/steps_frac_max``
  (at ``max_steps``, when set): the step-count distribution; collapse to one step or padding to
  the cap shows here first.
- ``diag/corr_steps_first_return``: Pearson correlation of step count with the first-token
  return (credit modes: the credit return; off: the scalar reward minus its group mean), before
  OpenRLHF's whitening. Far from 0: length itself is being paid for (or punished).
- ``diag/zero_var_<component>``: fraction of groups whose responses all got the same value of
  that component (no learning signal from it in GRPO-style estimators).
- ``diag/prm_empty_rate`` (no step and not truncated: an empty or blank response) and
  ``diag/prm_truncated_rate`` (the PRM prompt overflowed): apart, because they mean different things.
- ``diag/judge_length_corr``: correlation of the judge reward with the response length, both
  centred within their group (a judge that pays for length shows here).
- ``diag/judge_first_position``: how often the judge picked the candidate shown first, mean over
  groups; ``diag/judge_first_position_chance`` is what an unbiased judge would give (1 / candidates,
  from the judge's own statistics).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

COMPONENTS = ("prm", "judge", "outcome")


def within_group_auroc(
    scores: Sequence[Sequence[float]], outcomes: Sequence[Sequence[float]]
) -> float | None:
    """AUROC over (positive, negative) pairs of the same group; None without such a pair."""
    wins = pairs = 0.0
    for group_scores, group_outcomes in zip(scores, outcomes, strict=True):
        pos = [s for s, o in zip(group_scores, group_outcomes) if o > 0.5]
        neg = [s for s, o in zip(group_scores, group_outcomes) if o <= 0.5]
        for p in pos:
            for n in neg:
                pairs += 1
                wins += 1.0 if p > n else 0.5 if p == n else 0.0
    return wins / pairs if pairs else None


def pearson(xs: Sequence[float], ys: Sequence[float]) -> float | None:
    """Pearson correlation; None when either side has no spread or fewer than 2 points."""
    if len(xs) != len(ys) or len(xs) < 2:
        return None
    mx, my = sum(xs) / len(xs), sum(ys) / len(ys)
    sxx = sum((x - mx) ** 2 for x in xs)
    syy = sum((y - my) ** 2 for y in ys)
    if sxx <= 1e-12 or syy <= 1e-12:
        return None
    return sum((x - mx) * (y - my) for x, y in zip(xs, ys)) / math.sqrt(sxx * syy)


def quantile(values: Sequence[float], q: float) -> float:
    """Linear-interpolation quantile (numpy's default) of a non-empty list."""
    ordered = sorted(values)
    pos = q * (len(ordered) - 1)
    lo = math.floor(pos)
    hi = min(lo + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (pos - lo)


def _centred(groups: Sequence[Sequence[float]]) -> list[float]:
    out = []
    for g in groups:
        mean = sum(g) / len(g)
        out.extend(v - mean for v in g)
    return out


def step_diagnostics(
    results: Sequence[Sequence[Mapping[str, Any]] | None],
    texts: Sequence[Sequence[str]] | None = None,
    first_returns: Sequence[Sequence[float]] | None = None,
    max_steps: int | None = None,
) -> dict[str, float]:
    """The step's diagnostics (see the module docstring) from per-group runtime results.

    ``texts[g][i]``: the response text (judge length correlation); ``first_returns[g][i]``: the
    first-token return before whitening (step-count correlation); both optional.
    """
    groups = [list(rows) for rows in results if rows]
    out: dict[str, float] = {}
    if not groups:
        return out
    for name in COMPONENTS:
        present = [g for g in groups if all(name in r["components"] for r in g)]
        if present:
            flat = sum(len({float(r["components"][name]) for r in g}) == 1 for g in present)
            out[f"diag/zero_var_{name}"] = flat / len(present)
    prm_groups = [g for g in groups if all(r.get("prm") is not None for r in g)]
    if prm_groups:
        steps = [[float(len(r["prm"].get("step_scores") or [])) for r in g] for g in prm_groups]
        flat_steps = [n for g in steps for n in g]
        out["diag/steps_p50"] = quantile(flat_steps, 0.5)
        out["diag/steps_p95"] = quantile(flat_steps, 0.95)
        out["diag/steps_max"] = max(flat_steps)
        out["diag/steps_frac_1"] = sum(n == 1 for n in flat_steps) / len(flat_steps)
        if max_steps is not None:
            out["diag/steps_frac_max"] = sum(n >= max_steps for n in flat_steps) / len(flat_steps)
        rows = [r for g in prm_groups for r in g]
        truncated = [bool(r["prm"].get("truncated")) for r in rows]
        empty = [not r["prm"].get("step_scores") and not t for r, t in zip(rows, truncated)]
        out["diag/prm_empty_rate"] = sum(empty) / len(rows)
        out["diag/prm_truncated_rate"] = sum(truncated) / len(rows)
        with_outcome = [g for g in prm_groups if all("outcome" in r["components"] for r in g)]
        auroc = within_group_auroc(
            [[float(r["components"]["prm"]) for r in g] for g in with_outcome],
            [[float(r["components"]["outcome"]) for r in g] for g in with_outcome],
        )
        if auroc is not None:
            out["diag/prm_outcome_auroc"] = auroc
        if first_returns is not None:
            returns = [list(r) for r, rows in zip(first_returns, results) if rows]
            pr = [ret for ret, g in zip(returns, groups) if all(r.get("prm") is not None for r in g)]
            corr = pearson(flat_steps, [x for g in pr for x in g])
            if corr is not None:
                out["diag/corr_steps_first_return"] = corr
    judge_groups = [(i, g) for i, g in enumerate(groups) if all("judge" in r["components"] for r in g)]
    if judge_groups:
        firsts = [
            float(g[0]["judge"]["first_position_pick_rate"])
            for _, g in judge_groups
            if isinstance((g[0].get("judge") or {}).get("first_position_pick_rate"), (int, float))
        ]
        if firsts:
            out["diag/judge_first_position"] = sum(firsts) / len(firsts)
        chances = [
            float(g[0]["judge"]["first_position_chance"])
            for _, g in judge_groups
            if isinstance((g[0].get("judge") or {}).get("first_position_chance"), (int, float))
        ]
        if chances:
            out["diag/judge_first_position_chance"] = sum(chances) / len(chances)
        if texts is not None:
            text_groups = [list(t) for t, rows in zip(texts, results) if rows]
            lengths = [[float(len(t)) for t in text_groups[i]] for i, _ in judge_groups]
            rewards = [[float(r["components"]["judge"]) for r in g] for _, g in judge_groups]
            corr = pearson(_centred(lengths), _centred(rewards))
            if corr is not None:
                out["diag/judge_length_corr"] = corr
    return out
