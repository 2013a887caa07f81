"""The reward runtime: every host (reward actor, pool workers, ``reward_fns``, CLI, evaluators)
scores a list of prompt groups at once through :class:`RewardRuntime`.

No Ray and no OpenRLHF here: hosts bring the transport, this package brings the scoring, the
error policy (a bad sample is neutral for the components it breaks; anything else propagates)
and the weighted combination. Imports are lazy so the package loads without torch.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "RewardGroup": "openrlhf_visualprm.rewards.groups",
    "prepare_groups": "openrlhf_visualprm.rewards.groups",
    "Component": "openrlhf_visualprm.rewards.components",
    "PRMComponent": "openrlhf_visualprm.rewards.components",
    "JudgeComponent": "openrlhf_visualprm.rewards.components",
    "OutcomeComponent": "openrlhf_visualprm.rewards.components",
    "RewardRuntime": "openrlhf_visualprm.rewards.runtime",
    "combine": "openrlhf_visualprm.rewards.combine",
    "step_rewards": "openrlhf_visualprm.rewards.combine",
    "sample_logs": "openrlhf_visualprm.rewards.combine",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(_EXPORTS[name]), name)
