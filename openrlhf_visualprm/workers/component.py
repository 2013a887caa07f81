"""A reward-runtime component whose model runs in a reward pool (Ray workers).

The plugin's reward actor and ``reward_fns`` use it for the component of the pool's kind, so
that component gets the pool's batching across groups, cache, OOM splitting and restarts while
the runtime (error policy, combination) stays the same as with a local model.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from openrlhf_visualprm.rewards.components import JudgeComponent, PRMComponent, Scored, prm_scored
from openrlhf_visualprm.rewards.groups import RewardGroup


class PoolComponent:
    """``name``: ``prm`` or ``judge`` (the pool's worker kind); ``config``: PRM request options."""

    def __init__(self, pool: Any, name: str, config: dict[str, Any] | None = None) -> None:
        if name not in ("prm", "judge"):
            raise ValueError(f"a reward pool serves 'prm' or 'judge', not {name!r}")
        self.pool, self.name, self.config = pool, name, config
        ref = PRMComponent if name == "prm" else JudgeComponent
        self.needs, self.neutral = ref.needs, ref.neutral
        if name == "prm":  # the same per-group check as a local PRM: a bad sample, not a failed request
            self.check = PRMComponent.check

    @classmethod
    def for_config(cls, pool: Any, cfg: Any, where: str) -> PoolComponent:
        """The component of ``pool``'s kind for ``cfg`` (its ``PRMConfig`` / ``JudgeConfig``).

        Load-time options the pool's workers were started with (PRM tiles, dtype, system message;
        judge options and backend) must equal the asked ones, else a ``ConfigError`` names them:
        they change every reward. PRM scoring options travel with each request.
        """
        worker = pool.config.worker
        if worker.kind == "prm":
            cfg.check_loaded(worker.max_tiles, worker.dtype, where, worker.system_message)
            return cls(pool, "prm", cfg.scoring_options())
        cfg.check_loaded(worker.judge_options, worker.judge_backend, where)
        return cls(pool, "judge")

    def score_groups(self, groups: Sequence[RewardGroup]) -> list[list[Scored]]:
        payload = []
        for g in groups:
            item: dict[str, Any] = {
                "images": list(g.images),
                "question": g.question,
                "responses": list(g.responses),
            }
            if self.config is not None:
                item["config"] = dict(self.config)
            if self.name == "judge" and g.reference is not None:
                item["reference"] = g.reference
            payload.append(item)
        results = self.pool.score_groups(payload)  # one request: the pool batches across groups
        if self.name == "prm":
            return [[prm_scored(r) for r in group] for group in results]
        return [[{"score": float(r["score"]), "detail": None} for r in group] for group in results]
