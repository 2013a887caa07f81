"""The reward runtime: every host (reward actor, pool workers, ``reward_fns``, CLI, evaluators)
scores a list of prompt groups at once through :class:`RewardRuntime`.

No Ray and no OpenRLHF here: hosts bring the transport, this package brings the scoring, the
error policy (a bad sample is neutral for the components it breaks; anything else propagates)
and the weighted combination. Imports are lazy so the package loads without torch.
"""

from __future__ import annotations

from openrlhf_visualprm.lazy import lazy_exports

_EXPORTS = {
    "RewardGroup": "groups",
    "prepare_groups": "groups",
    "Component": "components",
    "PRMComponent": "components",
    "JudgeComponent": "components",
    "OutcomeComponent": "components",
    "RewardRuntime": "runtime",
    "combine": "combine",
    "step_returns": "credit",
    "group_returns": "credit",
    "sample_logs": "combine",
}

__all__ = sorted(_EXPORTS)


__getattr__ = lazy_exports(__name__, _EXPORTS)
