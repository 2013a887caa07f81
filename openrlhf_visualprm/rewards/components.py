"""Reward components: each scores a *list* of groups in one call (one RL step's work).

A component returns, per group, one ``{"score": float, "detail": dict | None}`` per response.
Batching is the component's business: the PRM runs image + question once per group and the
suffixes of several groups in one batch; the judge sends every call of every group of a round
as one backend batch; the outcome check verifies every answer of the step in one batch.
``score_groups([g])`` is the per-group form of the same computation (used to check equality).
Hosts that keep the model elsewhere (a Ray pool) implement the same protocol in ``workers/``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol

from openrlhf_visualprm.rewards.groups import RewardGroup

Scored = dict[str, Any]  # {"score": float, "detail": dict | None}


class Component(Protocol):
    """``name``: prm | judge | outcome; ``needs``: the sample parts (``errors.PARTS``) whose
    breakage gives this component its ``neutral`` value. An optional ``check(group)`` raises
    :class:`~openrlhf_visualprm.errors.InputError` for a need only the component knows (the
    outcome's answer key, the judge's reference)."""

    name: str
    needs: tuple[str, ...]
    neutral: float

    def score_groups(self, groups: Sequence[RewardGroup]) -> list[list[Scored]]: ...


class PRMComponent:
    """VisualPRM step scores aggregated to one number per response (details keep the steps)."""

    name = "prm"
    needs = ("label", "image")
    neutral = 0.0

    def __init__(self, prm: Any, config: Any = None, max_batch_tokens: int = 32768) -> None:
        """``config``: a :class:`~openrlhf_visualprm.prm.config.PRMConfig` (its scoring options)."""
        from openrlhf_visualprm.prm.config import PRMConfig

        self.prm = prm
        self.config = config if config is not None else PRMConfig()
        self.max_batch_tokens = max_batch_tokens

    def score_groups(self, groups: Sequence[RewardGroup]) -> list[list[Scored]]:
        results = self.prm.score_groups(
            [(g.images, g.question, g.responses) for g in groups],
            max_batch_tokens=self.max_batch_tokens,
            **self.config.score_kwargs(),
        )
        return [[prm_scored(r.to_dict()) for r in group] for group in results]


def prm_scored(result: dict[str, Any]) -> Scored:
    """A PRM result dict (``PRMResult.to_dict`` or a pool worker's reply) as a component result."""
    detail = {k: result.get(k) for k in ("steps", "step_scores", "spans", "truncated", "note")}
    return {"score": float(result["score"]), "detail": detail}


class JudgeComponent:
    """MR. Judge rewards; all groups' calls of a round go to the backend as one batch."""

    name = "judge"
    needs = ("label", "image", "question")
    neutral = 0.0

    def __init__(self, judge: Any) -> None:
        self.judge = judge

    def check(self, group: RewardGroup) -> None:
        if self.judge.schedule == "reference":
            group.label.require_reference()

    def score_groups(self, groups: Sequence[RewardGroup]) -> list[list[Scored]]:
        from openrlhf_visualprm.judge.judge import JudgeGroup

        results = self.judge.judge_groups(
            [JudgeGroup(g.images, g.question, list(g.responses), g.reference) for g in groups]
        )
        out = []
        for g, result in zip(groups, results, strict=True):
            if len(result.rewards) != g.n:
                raise RuntimeError(f"judge returned {len(result.rewards)} rewards for {g.n} responses")
            stats = {k: v for k, v in result.stats.items() if isinstance(v, (int, float)) and v is not None}
            best = getattr(result, "best", None)
            out.append(
                [
                    {"score": float(r), "detail": {**stats, "best": j == best}}
                    for j, r in enumerate(result.rewards)
                ]
            )
        return out


class OutcomeComponent:
    """1 for a final answer equal to the label's ground truth, else 0; one verification batch
    for all groups. A label without the ground truth is a bad sample (neutral 0, counted)."""

    name = "outcome"
    needs = ("label", "truth")
    neutral = 0.0

    def __init__(self, config: Any = None) -> None:
        """``config``: an :class:`~openrlhf_visualprm.outcome.config.OutcomeConfig`."""
        from openrlhf_visualprm.outcome.config import OutcomeConfig

        self.config = config if config is not None else OutcomeConfig()

    def check(self, group: RewardGroup) -> None:
        group.label.require_truth(self.config.answer_key)

    def score_groups(self, groups: Sequence[RewardGroup]) -> list[list[Scored]]:
        from openrlhf_visualprm.answers import extract_final_answer, normalize_answer, verify_answers

        cfg = self.config
        answers = [[extract_final_answer(r) for r in g.responses] for g in groups]
        truths = [g.label.require_truth(cfg.answer_key) for g in groups]
        preds = [a for group in answers for a in group]
        gts = [t for t, g in zip(truths, groups) for _ in range(g.n)]
        if cfg.checker == "exact":
            flags = [p is not None and normalize_answer(p) == normalize_answer(t) for p, t in zip(preds, gts)]
        else:
            flags = verify_answers(preds, gts, timeout_s=cfg.timeout_s) if preds else []
        out, k = [], 0
        for group in answers:
            out.append(
                [
                    {"score": 1.0 if flags[k + j] else 0.0, "detail": {"answer": a}}
                    for j, a in enumerate(group)
                ]
            )
            k += len(group)
        return out
