"""The plugin's reward actor: takes the place of OpenRLHF's ``RewardModelActor``.

OpenRLHF's reward actor only ever sees token ids; this one receives all of its prompt groups of
a step (text, label, images, responses) from the experience hook in one call and scores them
with the reward runtime (:mod:`openrlhf_visualprm.rewards`), batched across groups.
It keeps OpenRLHF's actor contract (constructor, ``init_model_from_pretrained``,
``execute_batch`` via ``RayActorGroup.async_run_method_batch``, ``empty_cache``) so OpenRLHF's
``train()`` creates, places and initialises it exactly like its own.
"""

from __future__ import annotations

import functools

import ray
import torch
from openrlhf.trainer.ray.launcher import BaseModelActor

from openrlhf_visualprm.plugin.plan import PLAN_ENV, RewardPlan


class RewardActor(BaseModelActor):
    """Plain class (testable without Ray); :func:`plugin_reward_actor` gives its Ray actor form."""

    def init_model_from_pretrained(
        self, strategy, pretrain: str | None = None, plan: RewardPlan | None = None
    ):
        """Load the reward components. No DeepSpeed / torch.distributed: nothing here is trained."""
        from openrlhf_visualprm.plugin.reward_host import PluginRewards

        self.strategy = strategy  # execute_batch reads strategy.is_rank_0()
        plan = plan or RewardPlan.from_env()
        if plan is None:
            raise RuntimeError(
                f"the plugin reward actor started without a reward plan: {PLAN_ENV} is not set in this worker. "
                "Launch with `openrlhf-visualprm train` (it exports the plan to every Ray worker)."
            )
        self.rewards = PluginRewards(plan)
        return plan.components

    def score_payloads(self, groups: list[dict | None], batched: bool = True) -> list[list[dict] | None]:
        """Every group this actor got for the step, scored in one runtime call."""
        return self.rewards.score_payloads(groups, batched=batched)

    def forward(self, *args, **kwargs):
        raise RuntimeError(
            "OpenRLHF asked the plugin reward actor for token-only rewards: the plugin's experience hook is not "
            "installed in the trainer process. Start Ray with runtime_env worker_process_setup_hook="
            "'openrlhf_visualprm.plugin.worker_hook.setup_worker' (the launcher does this)."
        )

    def empty_cache(self) -> None:
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
            torch.cuda.synchronize()


@functools.cache
def plugin_reward_actor():
    """:class:`RewardActor` as a Ray actor class (one GPU by default, like OpenRLHF's), made on
    first use: importing this module does nothing Ray-side."""
    return ray.remote(num_gpus=1)(RewardActor)
