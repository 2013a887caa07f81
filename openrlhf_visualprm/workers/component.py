"""A reward-runtime component whose model runs in a reward pool (Ray workers).

The plugin's reward actor, ``reward_fns`` and the HTTP service use it for the component of the
pool's kind, so that component gets the pool's batching across groups, cache, OOM splitting and
restarts while the runtime (error policy, combination, logs) stays the same as with a local
model. The workers run the same runtime on the same component config, so a row comes back with
the same score and detail (judge statistics included) a local component would give.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from openrlhf_visualprm.errors import ConfigError
from openrlhf_visualprm.rewards.components import Scored, loaded_config_diff
from openrlhf_visualprm.rewards.groups import RewardGroup


class PoolComponent:
    """The pool's component (``prm`` or ``judge``) in a host's runtime.

    ``options``: the host's PRM scoring options, sent with every group whose request set none.
    """

    def __init__(self, pool: Any, options: dict[str, Any] | None = None) -> None:
        from openrlhf_visualprm.rewards.components import JudgeComponent, PRMComponent

        worker = pool.config.worker
        self.pool, self.name, self.options = pool, worker.kind, dict(options or {})
        ref = PRMComponent if self.name == "prm" else JudgeComponent
        self.needs, self.neutral, self.splittable = ref.needs, ref.neutral, ref.splittable
        if self.name == "judge" and getattr(worker.component, "schedule", None) == "reference":
            self.needs = (*ref.needs, "reference")
        if self.name == "prm":  # the same per-group check as a local PRM: a bad sample, not a failed request
            self.check = ref.check

    @classmethod
    def for_config(cls, pool: Any, cfg: Any, where: str) -> PoolComponent:
        """The component of ``pool``'s kind for ``cfg`` (the plan's ``PRMConfig`` / ``JudgeConfig``).

        The pool's workers were built from their own component config: every field of it that
        changes a score (checkpoint, tiles, dtype, system message; judge schedule, rounds,
        backend, max_new_tokens, ...) must equal the asked one, else a ``ConfigError`` names
        them. PRM scoring options travel with each request instead.
        """
        diff = loaded_config_diff(pool.config.worker.component, cfg)
        if diff:
            raise ConfigError(
                f"{where} runs its {pool.config.worker.kind} with {', '.join(diff)}; these are fixed when the pool "
                "starts, so make the plan's settings match the pool or start a pool with these values"
            )
        return cls(pool, cfg.scoring_options() if pool.config.worker.kind == "prm" else None)

    def score_groups(self, groups: Sequence[RewardGroup]) -> list[list[Scored]]:
        from dataclasses import replace

        sent = [replace(g, options={**self.options, **g.options}) if self.options else g for g in groups]
        rows = self.pool.score_rows(sent)  # one request: the pool batches across groups
        return [[self._scored(r) for r in group] for group in rows]

    def _scored(self, row: dict) -> dict:
        """A worker runtime's row as this host's component result; a result the worker found
        unusable (its component failed the group after scoring) stays unusable here."""
        out = {"score": float(row["components"][self.name]), "detail": row.get(self.name)}
        if self.name in (row.get("failed") or []) and row.get("error"):
            out["bad"] = row["error"]
        return out
