"""Reward components -> the numbers RL trains on and logs (pure Python, no OpenRLHF).

- ``reward`` (scalar, one per response): ``sum_c weight_c * component_c``. With a credit mode
  (``--reward.prm.credit``) the *credited* components (PRM, outcome) are left out here and arrive
  instead as per-step returns (:func:`openrlhf_visualprm.rewards.credit.group_returns`).
- ``score`` (absolute, for filtering and logs): the weighted sum with the PRM's scalar
  aggregate, credit mode or not, before any estimator shaping.
- per-sample logs, averaged by OpenRLHF into its wandb / tensorboard metrics.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping


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


JUDGE_LOG_STATS = ("parse_failure_rate", "first_position_pick_rate", "swap_flip_rate", "reward_spread")


def sample_logs(result: dict, components: Iterable[str] | None = None) -> dict[str, float]:
    """The one log schema: numbers to log for one response, on every route.

    The keys depend only on ``components`` (default: the result's own), never on the sample:
    OpenRLHF turns each key into a per-sample ``info`` entry and splits them by batch size, so a
    bad sample must return the same keys as a good one. A value a sample does not have (a bad
    sample's step statistics, a statistic the judge's schedule does not measure) is 0.0;
    ``reward/failed_group`` says which samples those are.
    """
    names = list(result["components"] if components is None else components)
    logs = {f"reward/{name}": float(result["components"].get(name, 0.0)) for name in names}
    logs["reward/failed_group"] = float(bool(result.get("error")))
    if "prm" in names:
        prm = result.get("prm") or {}
        steps = prm.get("step_scores") or []
        logs["prm/num_steps"] = float(len(steps))
        logs["prm/min_step_score"] = float(min(steps)) if steps else 0.0
        logs["prm/first_step_score"] = float(steps[0]) if steps else 0.0
        logs["prm/last_step_score"] = float(steps[-1]) if steps else 0.0
        logs["prm/truncated"] = float(bool(prm.get("truncated")))
        logs["prm/noted"] = float(prm.get("note") is not None)
    if "judge" in names:
        judge = result.get("judge") or {}
        for key in JUDGE_LOG_STATS:
            value = judge.get(key)
            logs[f"judge/{key}"] = float(value) if isinstance(value, (int, float)) else 0.0
    if "outcome" in names:
        outcome = result.get("outcome")
        logs["outcome/no_answer"] = float(outcome is None or outcome.get("answer") is None)
    return logs
