"""Reward components -> the numbers RL trains on and logs (pure Python, no OpenRLHF).

- ``reward`` (scalar, one per response): ``sum_c weight_c * component_c``. In dense mode the
  PRM term is left out here and arrives instead as per-step rewards (``step_rewards``), each
  ``weight_prm * dense_rewards(step_scores, mode, v0)[k]``, placed on the token ending step k.
- ``score`` (absolute, for filtering and logs): the weighted sum with the PRM's scalar
  aggregate, dense mode or not, before any estimator shaping.
- per-sample logs, averaged by OpenRLHF into its wandb / tensorboard metrics.
"""

from __future__ import annotations

from collections.abc import Mapping


def combine(
    components: Mapping[str, float], weights: Mapping[str, float], dense: bool = False
) -> tuple[float, float]:
    """``(reward, score)`` for one response; every weighted component must be present.

    ``weights`` names the active components; ``dense``: the PRM term arrives as step rewards,
    so it is left out of ``reward`` (not of ``score``).
    """
    missing = [c for c in weights if c not in components]
    if missing:
        raise ValueError(f"reward components {missing} missing from the reward runtime's result")
    score = sum(weights[c] * float(components[c]) for c in weights)
    if dense:
        reward = sum(weights[c] * float(components[c]) for c in weights if c != "prm")
    else:
        reward = score
    return reward, score


def step_rewards(prm: dict | None, weight: float, mode: str, v0: float) -> list[float]:
    """Weighted dense step rewards of one response (``mode`` 'value' or 'diff'); empty without
    steps or with ``mode`` 'off'."""
    if mode == "off" or not prm or not prm.get("step_scores"):
        return []
    from openrlhf_visualprm.prm.aggregate import dense_rewards

    return [weight * r for r in dense_rewards(prm["step_scores"], mode, v0)]


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
