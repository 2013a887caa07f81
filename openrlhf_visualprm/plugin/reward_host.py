"""The reward plan -> a loaded reward runtime (what the plugin's reward actor hosts).

The scoring itself lives in :mod:`openrlhf_visualprm.rewards` (shared with the pool workers,
``reward_fns`` and the CLI); this module only maps the plan's settings onto its components:
local models, or a named reward pool (``--reward.pool``) for the component of the pool's kind,
so that component gets the pool's batching, cache, OOM splitting and restarts.
"""

from __future__ import annotations

from typing import Any

from openrlhf_visualprm.errors import ConfigError
from openrlhf_visualprm.labels import DEFAULT_ANSWER_KEY
from openrlhf_visualprm.plugin.plan import RewardPlan
from openrlhf_visualprm.prm.config import DEFAULT_MAX_BATCH_TOKENS
from openrlhf_visualprm.rewards.groups import prepare_groups
from openrlhf_visualprm.rewards.runtime import RewardRuntime
from openrlhf_visualprm.torch_names import resolve_device


class PluginRewards:
    """Loads the plan's models once; :meth:`score_payloads` scores all groups of a step at once."""

    def __init__(self, plan: RewardPlan, prm_max_batch_tokens: int = DEFAULT_MAX_BATCH_TOKENS) -> None:
        from openrlhf_visualprm.images import ImageRoots
        from openrlhf_visualprm.rewards import components as C

        self.plan = plan
        self.device = resolve_device(plan.device)
        self.roots = ImageRoots.of(plan.image_roots or None)
        components: dict[str, Any] = {}
        pooled = None  # the component a named reward pool serves (--reward.pool), if any
        if plan.pool:
            from openrlhf_visualprm.workers.component import PoolComponent
            from openrlhf_visualprm.workers.pool import RewardPool

            pool = RewardPool.get(plan.pool)
            kind = pool.config.worker.kind
            if getattr(plan, kind, None) is None:
                raise ConfigError(
                    f"--reward.pool {plan.pool!r} runs {kind} workers but the plan has no {kind} component: "
                    f"add a {kind} model to --reward.model_name_or_path or point --reward.pool at another pool"
                )
            pooled = PoolComponent.for_config(pool, getattr(plan, kind), f"--reward.pool {plan.pool!r}")
        if plan.prm is not None:
            if pooled is not None and pooled.name == "prm":
                components["prm"] = pooled
            else:
                components["prm"] = C.load_prm_component(plan.prm, self.device, prm_max_batch_tokens)
        if plan.judge is not None:
            if pooled is not None and pooled.name == "judge":
                components["judge"] = pooled
            else:
                components["judge"] = C.load_judge_component(plan.judge, self.device, self.roots)
        if plan.outcome is not None:
            components["outcome"] = C.outcome_component(plan.outcome)
        self.runtime = RewardRuntime(components)

    def score_payloads(self, groups: list[dict | None], batched: bool = True) -> list[list[dict] | None]:
        """``groups``: ``{"prompt", "label", "images", "responses"}`` each (None: padding -> None)."""
        answer_key = self.plan.outcome.answer_key if self.plan.outcome else DEFAULT_ANSWER_KEY
        needs_images = self.plan.prm is not None or self.plan.judge is not None
        real = [g for g in groups if g is not None]
        prepared = iter(prepare_groups(real, self.roots, answer_key, needs_images))  # images decoded once
        return self.runtime.score_groups(
            [None if g is None else next(prepared) for g in groups], batched=batched
        )
