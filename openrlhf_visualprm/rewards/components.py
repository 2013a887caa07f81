"""Reward components: each scores a *list* of groups in one call (one RL step's work).

A component returns, per group, one ``{"score": float, "detail": dict | None}`` per response.
Batching is the component's business: the PRM runs image + question once per group and the
suffixes of several groups in one batch; the judge sends every call of every group of a round
as one backend batch; the outcome check verifies every answer of the step in one batch.
``score_groups([g])`` is the per-group form of the same computation (used to check equality).
Hosts that keep the model elsewhere (a Ray pool) implement the same protocol in ``workers/``.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any, Protocol

from openrlhf_visualprm.prm.config import DEFAULT_MAX_BATCH_TOKENS, PRMConfig
from openrlhf_visualprm.rewards.groups import RewardGroup

# {"score": float, "detail": dict | None, "bad": "reason: message" (optional)}. "bad" on a group's
# responses: the component ran but its result is no signal (every judge call unparseable); the
# runtime gives the group the neutral value and counts it as failed, like a bad sample.
Scored = dict[str, Any]
JUDGE_UNPARSED = "judge_unparsed"  # reason tag: no judge verdict of a group could be parsed
_PRM = PRMConfig()  # the scoring options' one set of defaults


class Component(Protocol):
    """``name``: prm | judge | outcome; ``needs``: sample parts whose breakage neutralises it.

    A component may also define ``check(group)``: raise :class:`~openrlhf_visualprm.errors.InputError`
    for a group it cannot score (the runtime gives it the neutral value, counted), before any batch.
    """

    name: str
    needs: tuple[str, ...]
    neutral: float

    def score_groups(self, groups: Sequence[RewardGroup]) -> list[list[Scored]]: ...


class PRMComponent:
    """VisualPRM step scores aggregated to one number per response (details keep the steps).

    A group's request options (``RewardGroup.options``) override these scoring options for that
    group; explicit step lists (``RewardGroup.steps``) are scored as given, without splitting."""

    name = "prm"
    needs = ("label", "image", "response")
    neutral = 0.0
    splittable = True  # a response's score does not depend on its siblings

    def __init__(
        self,
        prm: Any,
        method: str = _PRM.method,
        aggregation: str = _PRM.aggregation,
        max_steps: int | None = _PRM.max_steps,
        splitter: str = _PRM.splitter,
        temperature: float = _PRM.temperature,
        max_batch_tokens: int = DEFAULT_MAX_BATCH_TOKENS,
    ) -> None:
        self.prm = prm
        self.method, self.aggregation, self.max_steps = method, aggregation, max_steps
        self.splitter, self.temperature, self.max_batch_tokens = splitter, temperature, max_batch_tokens

    def options(self) -> dict[str, Any]:
        return {
            "method": self.method,
            "aggregation": self.aggregation,
            "max_steps": self.max_steps,
            "splitter": self.splitter,
            "temperature": self.temperature,
        }

    @staticmethod
    def check(group: RewardGroup) -> None:
        """A question whose ``<image>`` placeholders do not match its images is a bad sample."""
        from openrlhf_visualprm.prm.template import format_question

        format_question(group.question, len(group.images))

    def score_groups(self, groups: Sequence[RewardGroup]) -> list[list[Scored]]:
        out: list[list[Scored] | None] = [None] * len(groups)
        by_options: dict[str, list[int]] = {}
        for i, g in enumerate(groups):
            by_options.setdefault(json.dumps(g.options, sort_keys=True), []).append(i)
        for indices in by_options.values():
            # the one parser of these options (a "re:" splitter is a regular expression)
            kwargs = PRMConfig(**{**self.options(), **groups[indices[0]].options}).score_kwargs()
            stepped = [i for i in indices if groups[i].steps is not None]
            for i in stepped:
                g = groups[i]
                results = self.prm.score(g.images, g.question, steps=g.steps, **kwargs)
                out[i] = [prm_scored(r.to_dict()) for r in results]
            whole = [i for i in indices if groups[i].steps is None]
            if whole:
                results = self.prm.score_many(
                    [(groups[i].images, groups[i].question, groups[i].responses) for i in whole],
                    max_batch_tokens=self.max_batch_tokens,
                    **kwargs,
                )
                for i, group in zip(whole, results, strict=True):
                    out[i] = [prm_scored(r.to_dict()) for r in group]
        return [o or [] for o in out]


def prm_scored(result: dict[str, Any]) -> Scored:
    """A PRM result dict (``PRMResult.to_dict`` or a pool worker's reply) as a component result."""
    detail = {k: result.get(k) for k in ("steps", "step_scores", "spans", "truncated", "note")}
    return {"score": float(result["score"]), "detail": detail}


class JudgeComponent:
    """MR. Judge rewards; all groups' calls of a round go to the backend as one batch."""

    name = "judge"
    needs: tuple[str, ...] = ("label", "image", "question", "response")
    neutral = 0.0
    splittable = False  # rewards compare the responses of a group

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
            rows = [
                {"score": float(r), "detail": {**stats, "best": j == best}}
                for j, r in enumerate(result.rewards)
            ]
            if stats.get("n_calls") and stats.get("parse_failure_rate") == 1.0:
                bad = f"{JUDGE_UNPARSED}: none of the judge's {stats['n_calls']} verdicts for this group could be parsed"
                for row in rows:
                    row["bad"] = bad
            out.append(rows)
        return out


class OutcomeComponent:
    """1 for a final answer equal to the label's ground truth, else 0; one verification batch for
    all groups. A label without a ground truth is a bad sample (need ``truth``): neutral, counted."""

    name = "outcome"
    needs = ("label", "truth", "response")
    neutral = 0.0
    splittable = True

    def __init__(
        self, checker: str = "math-verify", timeout_s: float = 5.0, answer_key: str = "answer"
    ) -> None:
        self.checker, self.timeout_s, self.answer_key = checker, timeout_s, answer_key

    def score_groups(self, groups: Sequence[RewardGroup]) -> list[list[Scored]]:
        from openrlhf_visualprm.answers import exact_answers, extract_final_answer, verify_answers

        answers = [[extract_final_answer(r) for r in g.responses] for g in groups]
        truths = [g.label.truth(self.answer_key) for g in groups]
        todo = [(gi, j) for gi, t in enumerate(truths) if t is not None for j in range(groups[gi].n)]
        ok: dict[tuple[int, int], bool] = {}
        if todo:
            preds = [answers[gi][j] for gi, j in todo]
            gts = [truths[gi] for gi, _ in todo]
            options = [groups[gi].label.choices for gi, _ in todo]  # multiple choice: letter or text
            if self.checker == "exact":
                flags = exact_answers(preds, gts, choices=options)
            else:
                flags = verify_answers(preds, gts, timeout_s=self.timeout_s, choices=options)
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
# One home for "these settings -> this component", so every host (the plugin's reward actor, the
# pool workers, the reward_fns files) loads a model the same way and gives a sample the same reward.
def load_prm_component(
    cfg: Any,
    device: str,
    max_batch_tokens: int = DEFAULT_MAX_BATCH_TOKENS,
    attn_implementation: str | None = None,
) -> PRMComponent:
    """The VisualPRM a :class:`~openrlhf_visualprm.prm.config.PRMConfig` names, loaded on ``device``
    with its model options, scoring with its scoring options."""
    from openrlhf_visualprm.prm.scorer import VisualPRM

    extra = {"attn_implementation": attn_implementation} if attn_implementation else {}
    prm = VisualPRM.from_pretrained(
        checkpoint_of(cfg),
        device=device,
        dtype=cfg.load_dtype(device),
        max_tiles=cfg.max_tiles,
        system_message=cfg.system_message,
        **extra,
    )
    return PRMComponent(prm, max_batch_tokens=max_batch_tokens, **cfg.scoring_options())


def load_judge_component(cfg: Any, device: str, image_roots: Any = None) -> JudgeComponent:
    """MR. Judge as a :class:`~openrlhf_visualprm.judge.config.JudgeConfig` describes it."""
    from openrlhf_visualprm.judge.judge import MRJudge

    judge = MRJudge.from_pretrained(
        checkpoint_of(cfg),
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


def checkpoint_of(cfg: Any) -> str:
    """The checkpoint a PRM / judge config loads: its resolved ``path``, else its ``model``."""
    return cfg.path or cfg.model


# Fields a host sets apart from the loaded model: ``model`` is the name as typed (the resolved
# checkpoint is compared instead); PRM scoring options travel with each request; dense / v0 are
# applied by the host to the step scores.
_HOST_SIDE = {"model", "path", "method", "aggregation", "max_steps", "splitter", "temperature", "dense", "v0"}


def loaded_config_diff(loaded: Any, asked: Any) -> list[str]:
    """Every field of two component configs (PRMConfig / JudgeConfig) that changes a score and
    differs, checkpoint included, as ``"field <loaded> (asked <asked>)"``; empty when they agree.
    A field added to a config type later is compared too, unless it is declared host-side above."""
    from dataclasses import fields

    if type(loaded) is not type(asked):
        return [f"kind {type(loaded).__name__} (asked {type(asked).__name__})"]
    diff = []
    a, b = _checkpoint_id(loaded), _checkpoint_id(asked)
    if a != b:
        diff.append(f"checkpoint {a!r} (asked {b!r})")
    for f in fields(loaded):
        if f.name in _HOST_SIDE:
            continue
        x, y = getattr(loaded, f.name), getattr(asked, f.name)
        if x != y:
            diff.append(f"{f.name} {x!r} (asked {y!r})")
    return diff


def _checkpoint_id(cfg: Any) -> str:
    """The checkpoint folder a config loads, resolved through the one resolver when it can be."""
    import os

    from openrlhf_visualprm.registry import resolve_model

    name = checkpoint_of(cfg)
    try:
        path = resolve_model(name).path or name
    except (OSError, ValueError):
        path = name
    return os.path.realpath(path) if os.path.isdir(path) else path
