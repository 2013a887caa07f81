"""The failed-group guard: a step in which too many prompt groups had a bad sample stops the run.

A bad sample gets a neutral reward (see :mod:`openrlhf_visualprm.errors`), which is right for a
few broken rows and ruinous when most of a step is broken: the policy then trains on zeros. The
usual causes are set-up mistakes (image roots pointing elsewhere, the wrong label column), so
the guard names the most common reasons. ``--reward.max_failed_fraction`` (default 0.5): a step
with a larger fraction of failed groups raises :class:`RewardFailureError`; 1 disables it.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence

from openrlhf_visualprm.errors import RewardFailureError


def failed_group_stats(results: Sequence[list[dict] | None]) -> tuple[int, int, Counter]:
    """``(failed groups, groups, reason counts)`` over per-group runtime results (None: padding)."""
    groups = [rows for rows in results if rows]
    failed = [rows for rows in groups if rows[0].get("error")]
    reasons: Counter = Counter()
    for rows in failed:
        reasons.update(rows[0].get("reasons") or [str(rows[0]["error"]).split(":", 1)[0]])
    return len(failed), len(groups), reasons


def check_failed_fraction(
    results: Sequence[list[dict] | None], max_fraction: float, where: str = "this step"
) -> tuple[int, int]:
    """Raise :class:`RewardFailureError` when more than ``max_fraction`` of the groups failed;
    return ``(failed, groups)`` otherwise."""
    failed, total, reasons = failed_group_stats(results)
    if total and failed / total > max_fraction:
        common = ", ".join(f"{reason} ({count})" for reason, count in reasons.most_common(3))
        example = next(rows[0]["error"] for rows in results if rows and rows[0].get("error"))
        raise RewardFailureError(
            f"{failed} of {total} prompt groups in {where} had a bad sample and got neutral rewards "
            f"({failed / total:.0%} > --reward.max_failed_fraction {max_fraction:g}); most common reasons: "
            f"{common}. First: {example}. This is usually a set-up problem (image roots, label column, "
            "answer key); fix it or raise --reward.max_failed_fraction"
        )
    return failed, total
