"""Reward components: each scores a *list* of groups in one call (one RL step's work).

A component returns, per group, one ``{"score": float, "detail": dict | None}`` per response.
Batching is the component's business: the PRM runs image + question once per group and the
suffixes of several groups in one batch; the judge sends every call of every group of a round
as one backend batch; the outcome check verifies every answer of the step in one batch.
``score_groups([g])`` is the per-group form of the same computation (used to check equality).
Hosts that keep the model elsewhere (a Ray pool) implement the same protocol in ``workers/``.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any, Protocol

from openrlhf_visualprm.rewards.groups import RewardGroup

Scored = dict[str, Any]  # {"score": float, "detail": dict | None}


class Component(Protocol):
    """``name``: prm | judge | outcome; ``needs``: sample parts whose breakage neutralises it.

    A component may also define ``check(group)``: raise :class:`~openrlhf_visualprm.errors.InputError`
    for a group it cannot score (the runtime gives it the neutral value, counted), before any batch.
    """

    name: str
    needs: tuple[str, ...]
    neutral: float

    def score_groups(self, groups: Sequence[RewardGroup]) -> list[list[Scored]]: ...


def splitter_of(text: str) -> str | re.Pattern[str]:
    """``re:PATTERN`` is a regular expression, anything else a literal separator."""
    return re.compile(text[3:]) if text.startswith("re:") else text


class PRMComponent:
    """VisualPRM step scores aggregated to one number per response (details keep the steps)."""

    name = "prm"
    needs = ("label", "image", "response")
    neutral = 0.0

    def __init__(
        self,
        prm: Any,
        method: str = "shared",
        aggregation: str = "mean",
        max_steps: int | None = None,
        splitter: str = "\n\n",
        temperature: float = 0.1,
        max_batch_tokens: int = 32768,
    ) -> None:
        self.prm = prm
        self.method, self.aggregation, self.max_steps = method, aggregation, max_steps
        self.splitter, self.temperature, self.max_batch_tokens = splitter, temperature, max_batch_tokens

    @staticmethod
    def check(group: RewardGroup) -> None:
        """A question whose ``<image>`` placeholders do not match its images is a bad sample."""
        from openrlhf_visualprm.prm.template import format_question

        format_question(group.question, len(group.images))

    def score_groups(self, groups: Sequence[RewardGroup]) -> list[list[Scored]]:
        results = self.prm.score_groups(
            [(g.images, g.question, g.responses) for g in groups],
            method=self.method,
            aggregation=self.aggregation,
            max_steps=self.max_steps,
            splitter=splitter_of(self.splitter),
            temperature=self.temperature,
            max_batch_tokens=self.max_batch_tokens,
        )
        return [[prm_scored(r.to_dict()) for r in group] for group in results]


def prm_scored(result: dict[str, Any]) -> Scored:
    """A PRM result dict (``PRMResult.to_dict`` or a pool worker's reply) as a component result."""
    detail = {k: result.get(k) for k in ("steps", "step_scores", "spans", "truncated", "note")}
    return {"score": float(result["score"]), "detail": detail}


class JudgeComponent:
    """MR. Judge rewards; all groups' calls of a round go to the backend as one batch."""

    name = "judge"
    needs: tuple[str, ...] = ("label", "image", "question", "response")
    neutral = 0.0

    def __init__(self, judge: Any) -> None:
        self.judge = judge
        if getattr(judge, "schedule", None) == "reference":  # compares each response with the label's
            self.needs = (*JudgeComponent.needs, "reference")

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
    """1 for a final answer equal to the label's ground truth, else 0; one verification batch for
    all groups. A label without a ground truth is a bad sample (need ``truth``): neutral, counted."""

    name = "outcome"
    needs = ("label", "truth", "response")
    neutral = 0.0

    def __init__(
        self, checker: str = "math-verify", timeout_s: float = 5.0, answer_key: str = "answer"
    ) -> None:
        self.checker, self.timeout_s, self.answer_key = checker, timeout_s, answer_key

    def score_groups(self, groups: Sequence[RewardGroup]) -> list[list[Scored]]:
        from openrlhf_visualprm.answers import extract_final_answer, normalize_answer, verify_answers

        answers = [[extract_final_answer(r) for r in g.responses] for g in groups]
        truths = [g.label.truth(self.answer_key) for g in groups]
        todo = [(gi, j) for gi, t in enumerate(truths) if t is not None for j in range(groups[gi].n)]
        ok: dict[tuple[int, int], bool] = {}
        if todo:
            preds = [answers[gi][j] for gi, j in todo]
            gts = [truths[gi] for gi, _ in todo]
            if self.checker == "exact":
                flags = [
                    p is not None and normalize_answer(p) == normalize_answer(t) for p, t in zip(preds, gts)
                ]
            else:
                flags = verify_answers(preds, gts, timeout_s=self.timeout_s)
            ok = dict(zip(todo, flags))
        return [
            [
                {
                    "score": 1.0 if ok.get((gi, j)) else 0.0,
                    "detail": {"answer": answers[gi][j], "has_truth": truths[gi] is not None},
                }
                for j in range(g.n)
            ]
            for gi, g in enumerate(groups)
        ]


# ----------------------------------------------------------------------------- from the config types
# One home for "these settings -> this component", so every in-process host (the plugin's reward
# actor, the reward_fns files) loads a model the same way and gives a sample the same reward.
def load_prm_component(cfg: Any, device: str, max_batch_tokens: int = 32768) -> PRMComponent:
    """The VisualPRM a :class:`~openrlhf_visualprm.prm.config.PRMConfig` names, loaded on ``device``
    with its model options, scoring with its scoring options."""
    from openrlhf_visualprm.prm.scorer import VisualPRM

    prm = VisualPRM.from_pretrained(
        cfg.path or cfg.model,
        device=device,
        dtype=cfg.load_dtype(device),
        max_tiles=cfg.max_tiles,
        system_message=cfg.system_message,
    )
    return PRMComponent(prm, max_batch_tokens=max_batch_tokens, **cfg.scoring_options())


def load_judge_component(cfg: Any, device: str, image_roots: Any = None) -> JudgeComponent:
    """MR. Judge as a :class:`~openrlhf_visualprm.judge.config.JudgeConfig` describes it."""
    from openrlhf_visualprm.judge.judge import MRJudge

    judge = MRJudge.from_pretrained(
        cfg.path or cfg.model,
        backend=cfg.backend,
        device=device,
        max_new_tokens=cfg.max_new_tokens,
        image_roots=image_roots,
        **cfg.judge_kwargs(),
    )
    return JudgeComponent(judge)


def outcome_component(cfg: Any) -> OutcomeComponent:
    """The answer check an :class:`~openrlhf_visualprm.outcome.config.OutcomeConfig` describes."""
    return OutcomeComponent(cfg.checker, cfg.timeout_s, cfg.answer_key)
