"""Credit assignment: PRM step scores (and outcomes) of one prompt group -> per-step returns.

How step scores become advantages decides what a policy learns (a reward teaches: check what it teaches), so each
mode here is one published formula, with its hand-computed test, and ``benchmarks/credit_probe.py``
shows which of the usual hacks (say nothing, pad with confident steps, collapse to one step, repeat
a step, append confident steps after a wrong answer) pay under it. Torch-free; no Ray, no OpenRLHF.

``step_returns(mode, step_scores, outcomes)[i][k]`` is the return credited to every token of step
``k`` of response ``i`` (gamma 1, before OpenRLHF's batch whitening), i.e. the sum of the rewards
of step ``k`` and of every later step, the outcome term included. Notation: ``p_ik`` = P('+') of
step k of response i (``K_i`` steps), ``o_i`` the outcome (``None``: unknown, then only step
scores count for it and it is left out of outcome statistics), ``w_p`` / ``w_o`` the PRM / outcome
weights, ``n`` the group size, ``ō`` the mean of the known outcomes.

**A stepless response** (EOS only, all-blank text, or a PRM prompt that overflowed) has ``[]``
steps. It is valued as *one step scored* ``empty_score`` (default 0.0, the worst P('+')), in the
group statistics and in its own return, and that one return goes on its last token. So under
``diff``, ``diff_group``, ``value`` and ``anchored`` saying nothing is never worth more than a
scored attempt with the same outcome (tested); the sum-form modes (``process_grpo``, ``pure``,
``rloo``) can still rank a long below-average attempt under it.

The outcome term ``out_i`` is ``w_o * (o_i - ō)`` (REINFORCE with the group mean as baseline)
unless a mode says otherwise; it is added to every step's return (it sits on the last token).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from openrlhf_visualprm.errors import ConfigError
from openrlhf_visualprm.prm.aggregate import (
    CREDIT_MODES,
    DEFAULT_CREDIT,
    DEFAULT_CREDIT_TEMPERATURE,
    DEFAULT_VALUE_MAX_STEPS,
)

__all__ = [
    "CREDIT_MODES",
    "DEFAULT_CREDIT",
    "DEFAULT_VALUE_MAX_STEPS",
    "answer_step",
    "group_returns",
    "step_returns",
    "token_rewards",
]

_STD_FLOOR = 1e-8  # a group whose numbers are all equal has no spread to normalise: terms are 0


def step_returns(
    mode: str,
    step_scores: Sequence[Sequence[float]],
    outcomes: Sequence[float | None] | None = None,
    *,
    prm_weight: float = 1.0,
    outcome_weight: float = 1.0,
    v0: float = 0.0,
    empty_score: float = 0.0,
    temperature: float = DEFAULT_CREDIT_TEMPERATURE,
    value_max_steps: int = DEFAULT_VALUE_MAX_STEPS,
    answer_steps: Sequence[int | None] | None = None,
    anchor: bool = False,
) -> list[list[float]]:
    """Per response of one prompt group, the return of each of its steps (one value if stepless).

    ``mode`` is one of :data:`CREDIT_MODES` except ``off``; see the ``_<mode>`` functions for
    each formula. ``temperature`` is PURE's T; ``value_max_steps`` the ``value`` step cap;
    ``answer_steps[i]`` the index of the step holding response i's final answer (``anchored``;
    None: not found, then its steps all count). ``anchor``: the outcome-anchored option, keep
    the mode's step-to-step credit but set each response's level (its first-token return) to the
    ``anchored`` value: ``R_ik = A_i + R_ik - R_i0``.
    """
    if mode not in _MODES:
        raise ConfigError(f"credit mode must be one of {', '.join(_MODES)}, got {mode!r}")
    scores = [[float(p) for p in steps] or [float(empty_score)] for steps in step_scores]
    n = len(scores)
    if outcomes is None:
        outs: list[float | None] = [None] * n
    else:
        outs = [None if o is None else float(o) for o in outcomes]
        if len(outs) != n:
            raise ValueError(f"{len(outs)} outcomes for {n} responses")
    if temperature <= 0:
        raise ConfigError(f"credit temperature must be > 0, got {temperature}")
    if value_max_steps < 1:
        raise ConfigError(f"credit value_max_steps must be >= 1, got {value_max_steps}")
    answers = list(answer_steps) if answer_steps is not None else [None] * n
    if len(answers) != n:
        raise ValueError(f"{len(answers)} answer steps for {n} responses")
    opts = {
        "v0": float(v0),
        "temperature": float(temperature),
        "value_max_steps": int(value_max_steps),
        "answer_steps": [
            0 if a is None else min(max(int(a), 0), len(s) - 1) for a, s in zip(answers, scores)
        ],
    }
    process, outcome = _MODES[mode](scores, outs, opts)
    returns = [[prm_weight * r + outcome_weight * outcome[i] for r in process[i]] for i in range(n)]
    if anchor and mode != "anchored":
        a_process, a_outcome = _anchored(scores, outs, opts)
        level = [prm_weight * a_process[i][0] + outcome_weight * a_outcome[i] for i in range(n)]
        returns = [[level[i] + r - ret[0] for r in ret] for i, ret in enumerate(returns)]
    return returns


# ----------------------------------------------------------------------------- helpers
def _suffix_sums(rewards: Sequence[float]) -> list[float]:
    """``[sum(rewards[k:]) for k]``: the return of step k from per-step rewards."""
    out, acc = [], 0.0
    for r in reversed(rewards):
        acc += r
        out.append(acc)
    return out[::-1]


def _std(xs: Sequence[float]) -> float:
    """Sample standard deviation (n - 1, as ``torch.std`` and OpenRLHF's group_norm); 0 below 2."""
    if len(xs) < 2:
        return 0.0
    mean = sum(xs) / len(xs)
    return math.sqrt(sum((x - mean) ** 2 for x in xs) / (len(xs) - 1))


def _mean_baseline(outs: Sequence[float | None]) -> list[float]:
    """``o_i - ō`` over the known outcomes; 0 for an unknown one."""
    known = [o for o in outs if o is not None]
    mean = sum(known) / len(known) if known else 0.0
    return [0.0 if o is None else o - mean for o in outs]


def _leave_one_out(values: Sequence[float | None]) -> list[float]:
    """``x_i - mean_{j != i} x_j`` over the known values; 0 for an unknown one or a lone value."""
    known = [v for v in values if v is not None]
    total, m = sum(known), len(known)
    return [0.0 if v is None or m < 2 else v - (total - v) / (m - 1) for v in values]


Outs = Sequence[float | None]
Result = tuple[list[list[float]], list[float]]  # (PRM part per step, outcome part per response)


# ----------------------------------------------------------------------------- modes
def _process_grpo(scores: list[list[float]], outs: Outs, opts: dict) -> Result:
    """DeepSeekMath (Shao et al. 2024), section 4.1.3, process supervision:
    ``r~_ik = (p_ik - mean R) / std R`` with R every step score of the group,
    ``R_ik = w_p * sum_{j >= k} r~_ij + out_i`` with the outcome z-scored like GRPO's:
    ``out_i = w_o * (o_i - ō) / std(o)``. A spread-less group gives 0 terms."""
    pooled = [p for steps in scores for p in steps]
    mean, std = sum(pooled) / len(pooled), _std(pooled)
    process = [
        _suffix_sums([(p - mean) / std if std > _STD_FLOOR else 0.0 for p in steps]) for steps in scores
    ]
    known = [o for o in outs if o is not None]
    o_std = _std(known)
    centred = _mean_baseline(outs)
    outcome = [c / o_std if o_std > _STD_FLOOR else 0.0 for c in centred]
    return process, outcome


def _pure(scores: list[list[float]], outs: Outs, opts: dict) -> Result:
    """PURE, min-form credit assignment (Cheng et al. 2025, arXiv 2504.15275):
    ``r_ik = 2 p_ik - 1``; ``w_ik = softmax_k(-r_ik / T)`` (T = 0.1) so ``sum_k w_ik r_ik`` is a
    soft minimum; ``r'_ik = w_ik r_ik``; RLOO step baseline ``b_i = mean_{j != i} (sum_k r'_jk / K_j)``
    subtracted from every step; ``R_ik = w_p * sum_{j >= k} (r'_ij - b_i) + out_i`` with the
    verifiable-reward term ``out_i = w_o * (o_i - mean_{j != i} o_j)`` (RLOO on ``o - 1``)."""
    temp = opts["temperature"]
    weighted = []
    for steps in scores:
        r = [2.0 * p - 1.0 for p in steps]
        top = max(-x / temp for x in r)  # stable softmax
        e = [math.exp(-x / temp - top) for x in r]
        z = sum(e)
        weighted.append([ei / z * x for ei, x in zip(e, r)])
    averages = [sum(w) / len(w) for w in weighted]
    n = len(scores)
    process = []
    for i, w in enumerate(weighted):
        b = (sum(averages) - averages[i]) / (n - 1) if n > 1 else 0.0
        process.append(_suffix_sums([x - b for x in w]))
    return process, _leave_one_out(outs)


def _rloo(scores: list[list[float]], outs: Outs, opts: dict) -> Result:
    """Leave-one-out per reward source, then summed (PRIME, Cui et al. 2025; verl
    ``recipe/prime`` ``compute_rloo_advantage_return``). Step source: with ``m_j`` the mean step
    score of response j, ``r'_ik = p_ik * n / (n - 1) - sum_j m_j / (n - 1)``; outcome source on the
    last token: ``o_i - mean_{j != i} o_j``. ``R_ik = w_p * sum_{j >= k} r'_ij + w_o * that``."""
    n = len(scores)
    means = [sum(s) / len(s) for s in scores]
    total = sum(means)
    process = []
    for steps in scores:
        if n > 1:
            process.append(_suffix_sums([p * n / (n - 1) - total / (n - 1) for p in steps]))
        else:
            process.append(_suffix_sums(steps))
    return process, _leave_one_out(outs)


def _diff_rewards(steps: Sequence[float], v0: float) -> list[float]:
    return [b - a for a, b in zip([v0, *steps[:-1]], steps)]


def _diff(scores: list[list[float]], outs: Outs, opts: dict) -> Result:
    """Potential differences ``r_ik = p_ik - p_i,k-1`` with ``p_i,-1 = v0`` (default 0): they
    telescope, ``R_ik = w_p * (p_iK - p_i,k-1) + out_i``, so length earns nothing and the return
    from the first token is ``w_p * (last step - v0)``."""
    return [_suffix_sums(_diff_rewards(s, opts["v0"])) for s in scores], _mean_baseline(outs)


def _diff_group(scores: list[list[float]], outs: Outs, opts: dict) -> Result:
    """Group-centred ``diff``: the ``diff`` returns minus the group mean of the first-token
    ``diff`` return, ``R_ik = w_p * (p_iK - p_i,k-1 - mean_j (p_jK - v0)) + out_i``; at the
    first token ``w_p * (p_iK - mean_j p_jK)``, so prompt difficulty no longer leaks into it."""
    v0 = opts["v0"]
    baseline = sum(s[-1] - v0 for s in scores) / len(scores)
    process = [[r - baseline for r in _suffix_sums(_diff_rewards(s, v0))] for s in scores]
    return process, _mean_baseline(outs)


def _value(scores: list[list[float]], outs: Outs, opts: dict) -> Result:
    """Each step paid its own score, capped: ``r_ik = p_ik`` for ``k < value_max_steps`` else 0,
    ``R_ik = w_p * sum_{j >= k} r_ij + out_i``. Pays per step (up to the cap): padding with
    confident steps pays, so the launcher warns; prefer ``anchored`` or ``diff_group``."""
    cap = opts["value_max_steps"]
    return (
        [_suffix_sums([p if k < cap else 0.0 for k, p in enumerate(s)]) for s in scores],
        _mean_baseline(outs),
    )


def _anchored(scores: list[list[float]], outs: Outs, opts: dict) -> Result:
    """Outcome-anchored: the PRM only ranks responses *within* the same outcome class,
    ``R_ik = w_p * (s_i - mean_{j: o_j = o_i} s_j) + w_o * (o_i - ō)`` for every step, where
    ``s_i = min_{k >= a_i} p_ik``, the PRM's verdict on the step holding the final answer ``a_i``
    and anything after it (all steps when the answer step is unknown), and unknown outcomes form
    one class. The PRM term sums to 0 within each class, so it never turns a wrong answer into a
    better one than a right answer by more than ``w_p``. Why from the answer on: a minimum cannot be
    raised by padding or repeating confident steps, nor by appending them after a wrong answer,
    and a reasoning collapsed into one step keeps the same last step, so it gains nothing either."""
    agg = [min(s[a:]) for s, a in zip(scores, opts["answer_steps"])]
    classes: dict[float | None, list[float]] = {}
    for o, s in zip(outs, agg):
        classes.setdefault(o, []).append(s)
    mean = {o: sum(v) / len(v) for o, v in classes.items()}
    process = [[agg[i] - mean[outs[i]]] * len(scores[i]) for i in range(len(scores))]
    return process, _mean_baseline(outs)


_MODES: dict[str, Callable[[list[list[float]], Outs, dict], Result]] = {
    "process_grpo": _process_grpo,
    "pure": _pure,
    "rloo": _rloo,
    "diff": _diff,
    "diff_group": _diff_group,
    "value": _value,
    "anchored": _anchored,
}
assert tuple(_MODES) == CREDIT_MODES[1:]


def token_rewards(returns: Sequence[float]) -> list[float]:
    """Per-step rewards whose suffix sums are ``returns``: ``R_k - R_{k+1}`` (last: ``R_K``).

    The experience hook puts reward k on the token ending step k and the last one on the
    response's last token, so OpenRLHF's reverse cumulative sum gives back ``returns``.
    """
    vals = list(returns)
    return [a - b for a, b in zip(vals, vals[1:])] + vals[-1:]


def answer_step(text: str, spans: Sequence[Sequence[int]], answer: str | None) -> int | None:
    """Index of the step whose span holds the last occurrence of ``answer`` in ``text`` (the
    outcome checker's final answer), or None when there is no answer or it is in no step."""
    if not answer or not spans:
        return None
    at = text.rfind(answer)
    if at < 0:
        return None
    end = at + len(answer)
    for k in range(len(spans) - 1, -1, -1):
        start, stop = spans[k]
        if start <= at and end <= stop:
            return k
    return None


def group_returns(
    rows: Sequence[Mapping[str, Any]],
    texts: Sequence[str],
    weights: Mapping[str, float],
    mode: str,
    options: Mapping[str, Any] | None = None,
) -> list[list[float]]:
    """:func:`step_returns` of one group from the reward runtime's per-response results.

    ``weights``: the plan's component weights (PRM -> ``prm_weight``, outcome ->
    ``outcome_weight``). A group whose PRM failed (a bad sample) gets no PRM term, the neutral
    value, rather than the stepless value; an outcome that failed or is not configured is None.
    The answer step is where the outcome checker's final answer sits in the response.
    """
    failed = set(rows[0].get("failed") or []) if rows else set()
    prm_ok = "prm" in weights and "prm" not in failed
    outcome_ok = "outcome" in weights and "outcome" not in failed
    steps, outcomes, answers = [], [], []
    for row, text in zip(rows, texts, strict=True):
        prm = row.get("prm") or {}
        steps.append(list(prm.get("step_scores") or []) if prm_ok else [])
        outcomes.append(float(row["components"]["outcome"]) if outcome_ok else None)
        answer = (row.get("outcome") or {}).get("answer")
        answers.append(answer_step(text, prm.get("spans") or [], answer))
    return step_returns(
        mode,
        steps,
        outcomes,
        prm_weight=float(weights["prm"]) if prm_ok else 0.0,
        outcome_weight=float(weights.get("outcome", 0.0)),
        answer_steps=answers,
        **dict(options or {}),
    )
