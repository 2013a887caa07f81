"""The reward runtime: the configured components over a list of groups, with the error policy.

Per response the result is a plain dict (cheap to ship through Ray, JSON-friendly)::

    {"components": {"prm": 0.71, "judge": 0.5, "outcome": 1.0},
     "prm": {"step_scores": [...], "spans": [[0, 41], ...], "truncated": False, "note": None},
     "judge": {group statistics} | None,
     "outcome": {"answer": "12"} | None,
     "error": "image: ..." | None,            # a bad sample: the reason, logged once per group
     "failed": ["prm", "judge"],              # the components that gave their neutral value
     "reasons": ["bad_image"]}                # InputError reason tags (only on failed groups)

Error policy: a bad sample (recorded by ``prepare_groups``) gives the neutral value to exactly
the components that need the broken part, and ``reward/failed_group`` counts it. Any exception a
component raises propagates: a model, config or template error stops the run.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Mapping, Sequence
from typing import Any

from openrlhf_visualprm.errors import InputError, RewardFailureError
from openrlhf_visualprm.rewards.components import Component
from openrlhf_visualprm.rewards.groups import RewardGroup

logger = logging.getLogger("openrlhf_visualprm.rewards")


class RewardRuntime:
    """Components by name (``prm`` / ``judge`` / ``outcome``), scored over many groups at once."""

    def __init__(self, components: Mapping[str, Component]) -> None:
        self.components = dict(components)
        self.last_timings: dict[str, float] = {}
        self.failed_groups = 0

    @property
    def names(self) -> list[str]:
        return list(self.components)

    def score_groups(
        self, groups: Sequence[RewardGroup | None], batched: bool = True
    ) -> list[list[dict] | None]:
        """Per-response results for each group (``None`` in, ``None`` out: host padding).

        ``batched=False`` scores group by group: the same computation, one group per call (the
        equality check and the benchmark's baseline).
        """
        real = [i for i, g in enumerate(groups) if g is not None]
        rows: dict[int, list[dict[str, Any]]] = {
            i: [
                {"components": {}, "prm": None, "judge": None, "outcome": None, "error": None, "failed": []}
                for _ in range(groups[i].n)
            ]
            for i in real
        }
        # The error policy, decided before any model runs: component -> group -> bad-sample error.
        failures: dict[str, dict[int, InputError]] = {}
        for name, comp in self.components.items():
            for i in real:
                exc = _input_error(comp, groups[i])
                if exc is not None:
                    failures.setdefault(name, {})[i] = exc
        for i in real:
            errors = {name: f[i] for name, f in failures.items() if i in f}
            if not errors:
                continue
            reason = "; ".join(dict.fromkeys(str(e) for e in errors.values()))
            logger.error(
                "prompt group %d: bad sample, neutral reward for %s: %s", i, ", ".join(errors), reason
            )
            self.failed_groups += 1
            for row in rows[i]:
                row["error"], row["failed"] = reason, list(errors)
                row["reasons"] = sorted({e.reason for e in errors.values()})
        self.last_timings = {}
        for name, comp in self.components.items():
            start = time.perf_counter()
            todo = [i for i in real if i not in failures.get(name, {})]
            if batched:
                scored = comp.score_groups([groups[i] for i in todo]) if todo else []
            else:
                scored = [comp.score_groups([groups[i]])[0] for i in todo]
            if len(scored) != len(todo):
                raise RuntimeError(f"{name}: {len(scored)} results for {len(todo)} groups")
            for i, group_scores in zip(todo, scored):
                if len(group_scores) != groups[i].n:
                    raise RuntimeError(f"{name}: {len(group_scores)} results for {groups[i].n} responses")
                for row, res in zip(rows[i], group_scores):
                    row["components"][name] = float(res["score"])
                    row[name] = res.get("detail")
            for i in failures.get(name, {}):
                for row in rows[i]:
                    row["components"][name] = float(comp.neutral)
            self.last_timings[name] = time.perf_counter() - start
        return [rows.get(i) for i in range(len(groups))]


def _input_error(comp: Component, group: RewardGroup) -> InputError | None:
    """The bad-sample error that stops ``comp`` on ``group``, if any (only ``InputError``)."""
    for need in comp.needs:
        if need in group.broken:
            return group.broken[need]
    check = getattr(comp, "check", None)
    if check is not None:
        try:
            check(group)
        except InputError as exc:
            return exc
    return None


def check_failed_fraction(results: Sequence[Sequence[dict] | None], max_fraction: float) -> None:
    """Stop the run when more than ``max_fraction`` of a step's groups had a bad sample, naming
    the most common reasons (``--reward.max_failed_fraction``)."""
    real = [rows for rows in results if rows]
    failed = [rows for rows in real if rows[0].get("error")]
    if not real or len(failed) <= max_fraction * len(real):
        return
    reasons = Counter(r for rows in failed for r in rows[0].get("reasons") or ["unknown"])
    common = ", ".join(f"{reason} ({count})" for reason, count in reasons.most_common(3))
    example = failed[0][0]["error"]
    raise RewardFailureError(
        f"{len(failed)} of {len(real)} prompt groups of this step could not be scored (more than "
        f"--reward.max_failed_fraction={max_fraction}); most common reasons: {common}. First: {example}"
    )
