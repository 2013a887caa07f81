"""Reward components -> the numbers RL trains on and logs (pure Python, no OpenRLHF).

- ``reward`` (scalar, one per response): ``sum_c weight_c * component_c``. With a credit mode
  (``--reward.prm.credit``) the *credited* components (PRM, outcome) are left out here and arrive
  instead as per-step returns (:func:`openrlhf_visualprm.rewards.credit.group_returns`).
- ``score`` (absolute, for filtering and logs): the weighted sum with the PRM's scalar
  aggregate, credit mode or not, before any estimator shaping.
- per-sample logs, averaged by OpenRLHF into its wandb / tensorboard metrics.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping


def combine(
    components: Mapping[str, float], weights: Mapping[str, float], credited: Collection[str] = ()
) -> tuple[float, float]:
    """``(reward, score)`` for one response; every weighted component must be present.

    ``weights`` names the active components; ``credited``: components that arrive as credit
    returns, so they are left out of ``reward`` (not of ``score``).
    """
    missing = [c for c in weights if c not in components]
    if missing:
        raise ValueError(f"reward components {missing} missing from the reward runtime's result")
    score = sum(weights[c] * float(components[c]) for c in weights)
    reward = sum(weights[c] * float(components[c]) for c in weights if c not in credited)
    return reward, score


def sample_logs(result: dict) -> dict[str, float]:
    """Numbers to log for one response (``reward/<component>``, PRM / judge / outcome stats)."""
    logs = {f"reward/{name}": float(value) for name, value in result["components"].items()}
    logs["reward/failed_group"] = float(bool(result.get("error")))
    prm = result.get("prm")
    if prm is not None:
        steps = prm.get("step_scores") or []
        logs["prm/num_steps"] = float(len(steps))
        if steps:
            logs["prm/min_step_score"] = float(min(steps))
            logs["prm/first_step_score"] = float(steps[0])
            logs["prm/last_step_score"] = float(steps[-1])
        logs["prm/truncated"] = float(bool(prm.get("truncated")))
        logs["prm/noted"] = float(prm.get("note") is not None)
    judge = result.get("judge")
    if judge:
        for key in ("parse_failure_rate", "first_position_pick_rate", "swap_flip_rate", "reward_spread"):
            if isinstance(judge.get(key), (int, float)):
                logs[f"judge/{key}"] = float(judge[key])
    outcome = result.get("outcome")
    if outcome is not None:
        logs["outcome/no_answer"] = float(outcome.get("answer") is None)
    return logs
