"""The failed-group guard: a step in which too many prompt groups had a bad sample stops the run.

A bad sample gets a neutral reward (see :mod:`openrlhf_visualprm.errors`), which is right for a
few broken rows and ruinous when most of a step is broken: the policy then trains on zeros. The
usual causes are set-up mistakes (image roots pointing elsewhere, the wrong label column), so
the guard names the most common reasons. ``--reward.max_failed_fraction`` (default 0.5): a step
with a larger fraction of failed groups raises :class:`RewardFailureError`; 1 disables it.

The stock ``reward_fns`` route has no step: OpenRLHF calls the function one sample at a time in
each vLLM engine. There :class:`FailureWindow` keeps the last samples that process scored and
applies the same limit to them, so a run whose samples are all bad stops there too.
"""

from __future__ import annotations

from collections import Counter, deque
from collections.abc import Sequence

from openrlhf_visualprm.errors import ConfigError, RewardFailureError

DEFAULT_MAX_FAILED_FRACTION = 0.5  # of a step's groups (launcher) or of a reward_fns window
DEFAULT_FAILURE_WINDOW = 64  # samples a reward_fns process judges the fraction over


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


class FailureWindow:
    """The last ``size`` samples one process scored (their failure reasons, None when scored).

    :meth:`record` raises :class:`RewardFailureError` once the window is full and more than
    ``max_fraction`` of it failed; a few bad rows among many good ones never trip it.
    """

    def __init__(
        self,
        size: int = DEFAULT_FAILURE_WINDOW,
        max_fraction: float = DEFAULT_MAX_FAILED_FRACTION,
        names: tuple[str, str] = ("failure window", "max failed fraction"),
    ) -> None:
        """``names``: what the user set the two values with (a flag, an env var), for the error."""
        size_name, fraction_name = names
        if isinstance(size, bool) or not isinstance(size, int) or size < 1:
            raise ConfigError(f"{size_name} must be a whole number of samples >= 1, got {size!r}")
        if (
            isinstance(max_fraction, bool)
            or not isinstance(max_fraction, (int, float))
            or not 0 <= max_fraction <= 1  # NaN fails this too
        ):
            raise ConfigError(
                f"{fraction_name} must be a fraction in [0, 1] (1: never stop), got {max_fraction!r}"
            )
        self.size = size
        self.max_fraction = max_fraction
        self.reasons: deque[str | None] = deque(maxlen=size)

    def record(self, error: str | None, where: str) -> None:
        self.reasons.append(error)
        failed = [r for r in self.reasons if r is not None]
        if len(self.reasons) < self.size or len(failed) / self.size <= self.max_fraction:
            return
        common = Counter(r.split(":", 1)[0] for r in failed).most_common(3)
        listed = ", ".join(f"{reason} ({count})" for reason, count in common)
        self.reasons.clear()  # a caller that carries on gets a fresh window, not an error per sample
        raise RewardFailureError(
            f"{len(failed)} of the last {self.size} samples {where} were bad samples and got neutral rewards "
            f"({len(failed) / self.size:.0%} > {self.max_fraction:g}); most common reasons: {listed}. "
            f"Last: {failed[-1]}. This is usually a set-up problem (image roots, label column, answer key)"
        )
