"""The reward runtime: the configured components over a list of groups, with the error policy.

Per response the result is a plain dict (cheap to ship through Ray, JSON-friendly)::

    {"components": {"prm": 0.71, "judge": 0.5, "outcome": 1.0},
     "prm": {"step_scores": [...], "spans": [[0, 41], ...], "truncated": False, "note": None},
     "judge": {group statistics} | None,
     "outcome": {"answer": "12", "has_truth": True} | None,
     "error": "bad_image: ..." | None,        # a bad sample: the reason, logged once per group
     "failed": ["prm", "judge"],              # the components that gave their neutral value
     "reasons": ["bad_image"]}                # short tags (InputError.reason) the guard counts

Error policy: a bad sample (recorded by ``prepare_groups``, or refused by a component's own
``check``, e.g. the PRM's placeholder count) gives the neutral value to exactly the components
that need the broken part, and ``reward/failed_group`` counts it. Any exception a
component raises propagates: a model, config or template error stops the run.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping, Sequence
from typing import Any

from openrlhf_visualprm.errors import InputError
from openrlhf_visualprm.rewards.components import Component
from openrlhf_visualprm.rewards.groups import RewardGroup

logger = logging.getLogger("openrlhf_visualprm.rewards")


class RewardRuntime:
    """Components by name (``prm`` / ``judge`` / ``outcome``), scored over many groups at once."""

    def __init__(self, components: Mapping[str, Component], log_interval_s: float = 0.0) -> None:
        self.components = dict(components)
        self.last_timings: dict[str, float] = {}
        self.failed_groups = 0
        # Bad groups are logged at ERROR with their reason; a host that takes a stream of single
        # samples (the HTTP service) logs at most one line per interval, counting the rest.
        self.log_interval_s = log_interval_s
        self._last_log = float("-inf")
        self._unlogged = 0

    def _log_bad(self, index: int, failed: list[str], reason: str) -> None:
        now = time.monotonic()
        if now - self._last_log < self.log_interval_s:
            self._unlogged += 1
            return
        more = f" ({self._unlogged} more bad groups since the last line)" if self._unlogged else ""
        logger.error(
            "prompt group %d: bad sample, neutral reward for %s: %s%s", index, ", ".join(failed), reason, more
        )
        self._last_log, self._unlogged = now, 0

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
                {
                    "components": {},
                    "prm": None,
                    "judge": None,
                    "outcome": None,
                    "error": None,
                    "failed": [],
                    "reasons": [],
                }
                for _ in range(groups[i].n)
            ]
            for i in real
        }
        refused = {i: self._refused(groups[i]) for i in real}  # component -> InputError of its check
        for i in real:
            g = groups[i]
            failed = [
                n
                for n, c in self.components.items()
                if n in refused[i] or any(need in g.broken for need in c.needs)
            ]
            if failed:  # a broken part no component needs (no reference without that schedule) is fine
                parts = {need for n in failed for need in self.components[n].needs if need in g.broken}
                causes = [g.broken[p] for p in sorted(parts)] + [
                    f"{e.reason}: {e}" for e in refused[i].values()
                ]
                reason = "; ".join(dict.fromkeys(causes))
                self._log_bad(i, failed, reason)
                self.failed_groups += 1
                tags = sorted({c.split(":", 1)[0] for c in causes})
                for row in rows[i]:
                    row["error"], row["failed"], row["reasons"] = reason, failed, tags
        self.last_timings = {}
        for name, comp in self.components.items():
            start = time.perf_counter()
            todo = [
                i
                for i in real
                if name not in refused[i] and not any(need in groups[i].broken for need in comp.needs)
            ]
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
                bad = next((res["bad"] for res in group_scores if res.get("bad")), None)
                if bad:
                    self._result_unusable(i, rows[i], name, float(comp.neutral), str(bad))
            for i in real:
                if i not in set(todo):
                    for row in rows[i]:
                        row["components"][name] = float(comp.neutral)
            self.last_timings[name] = time.perf_counter() - start
        return [rows.get(i) for i in range(len(groups))]

    def _result_unusable(self, index: int, rows: list[dict], name: str, neutral: float, bad: str) -> None:
        """A component ran on a group but says its result carries no signal (``Scored["bad"]``):
        the neutral value, and the group counts as failed (the step guard and windows see it)."""
        first_failure = not rows[0]["error"]
        for row in rows:
            row["components"][name] = neutral
            row["failed"] = [*row["failed"], name]
            row["error"] = f"{row['error']}; {bad}" if row["error"] else bad
            row["reasons"] = sorted({*row["reasons"], bad.split(":", 1)[0]})
        if first_failure:
            self.failed_groups += 1
        self._log_bad(index, [name], bad)

    def _refused(self, group: RewardGroup) -> dict[str, InputError]:
        """Components whose own ``check`` refuses ``group`` (a bad sample for them only)."""
        out = {}
        for name, comp in self.components.items():
            check = getattr(comp, "check", None)
            if check is None or any(need in group.broken for need in comp.needs):
                continue
            try:
                check(group)
            except InputError as exc:
                out[name] = exc
        return out
