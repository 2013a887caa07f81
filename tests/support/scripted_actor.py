"""The plugin's reward actor with its judge generating by the scripted, content-aware rule of
:mod:`scorer_wrappers` (the tiny random judge gives 0.5 to every response, so a group routed to
the wrong samples, or reordered, would pass any check on the actor route unseen).

Only the judge's generating backend changes: the plan, the loading, the reward runtime and the
actor contract are the plugin's own. Import after ``cpu_stubs.install()`` (it imports OpenRLHF).
"""

from __future__ import annotations

from openrlhf_visualprm.plugin.reward_actor import RewardActor


class ScriptedJudgeRewardActor(RewardActor):
    def init_model_from_pretrained(self, strategy, pretrain=None, plan=None):
        from scorer_wrappers import scripted_backend

        import openrlhf_visualprm.judge.judge as judge_module

        judge_module.make_backend = lambda *args, **kwargs: scripted_backend()
        return super().init_model_from_pretrained(strategy, pretrain, plan)
