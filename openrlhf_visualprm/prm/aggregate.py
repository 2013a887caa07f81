"""Turn per-step P('+') into one response score; name the credit modes (step scores -> RL returns).

Scalar aggregations (``aggregate``):
- ``mean``: the paper's default (best Best-of-N in its ablation).
- ``min``: the weakest step decides; harder to game by padding with easy steps.
- ``last``: the final step's value.
- ``product``: probability that every step is right, if steps were independent.
- ``softmin``: ``-T * log(mean(exp(-s / T)))``; tends to ``min`` as T -> 0 and to ``mean`` as
  T -> inf, a smooth compromise between the two.
Per-step credit (how step scores become per-token returns in RL: ``--reward.prm.credit``) lives
in :mod:`openrlhf_visualprm.rewards.credit`; its mode names are defined here, next to the
aggregations, because the PRM config (this layer) validates them.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from openrlhf_visualprm.errors import ConfigError

AGGREGATIONS = ("mean", "min", "last", "product", "softmin")
# "off": the scalar aggregate; the others: rewards.credit.step_returns (one formula each).
CREDIT_MODES = ("off", "process_grpo", "pure", "rloo", "diff", "diff_group", "value", "anchored")
DEFAULT_CREDIT = "anchored"  # 0 hack wins in benchmarks/credit_probe.py
# Defaults PRMConfig and the functions share (the config imports them from here: one home each).
DEFAULT_TEMPERATURE = 0.1  # softmin aggregation
DEFAULT_CREDIT_TEMPERATURE = 0.1  # credit pure: PURE's min-form softmax
DEFAULT_VALUE_MAX_STEPS = 8  # credit value: steps after this many earn nothing


def aggregate(
    step_scores: Sequence[float], how: str = "mean", temperature: float = DEFAULT_TEMPERATURE
) -> float:
    """One score from step scores. Raises on an empty list: callers decide what empty means."""
    if how not in AGGREGATIONS:
        raise ValueError(f"unknown aggregation {how!r}; choose one of {', '.join(AGGREGATIONS)}")
    scores = [float(s) for s in step_scores]
    if not scores:
        raise ValueError("cannot aggregate zero step scores")
    if how == "mean":
        return sum(scores) / len(scores)
    if how == "min":
        return min(scores)
    if how == "last":
        return scores[-1]
    if how == "product":
        return math.prod(scores)
    if not (temperature > 0 and math.isfinite(temperature)):
        raise ConfigError(f"softmin temperature must be a finite number > 0, got {temperature}")
    # min + softmin of the gaps d = s - min >= 0: -T log(mean(exp(-d/T))) written as
    # -T log1p(mean(expm1(-d/T))). Plain exp/log rounds exp(-d/T) to 1 once d/T < 1e-16 and returns
    # the minimum for T >= ~1e16; expm1/log1p keep the small terms, so large T tends to the mean.
    # The minimum's own term is exactly 0, so 1 + mean >= 1/n: no cancellation for small T either.
    lo = min(scores)
    mean_m1 = sum(math.expm1(-(s - lo) / temperature) for s in scores) / len(scores)
    return lo - temperature * math.log1p(mean_m1)
