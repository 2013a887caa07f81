"""Score one prompt group with every configured reward component (no OpenRLHF here).

Runs inside the plugin's reward actor. A group is what OpenRLHF samples for one prompt: the
image(s) and question the policy saw, its label, and the ``n_samples_per_prompt`` responses.
The PRM sees them as one shared-prefix batch; the judge compares them with each other; the
outcome check compares each final answer with the label's ground truth.

Per response the result is a plain dict (cheap to ship through Ray)::

    {"components": {"prm": 0.71, "judge": 0.5, "outcome": 1.0},
     "prm": {"step_scores": [...], "spans": [[0, 41], ...], "truncated": False, "note": None},
     "judge": {group statistics} | None,
     "outcome": {"answer": "12", "has_truth": True} | None}

Neutral fallbacks, each visible in the logs:
- a group whose inputs are unusable (label that is not valid JSON, image missing or outside the
  image roots) gets 0 for every component of every response, so group-relative estimators give
  it zero advantage; the error is logged by the actor and ``reward/failed_group`` counts it;
- a response without a ground truth gets outcome 0 (``outcome/missing_truth`` counts them);
- the PRM's own neutral score for an empty response.
"""

from __future__ import annotations

import logging
import re
from typing import Any

from openrlhf_visualprm.answers import extract_final_answer, normalize_answer, verify_answers
from openrlhf_visualprm.plugin.labels import ground_truth, image_refs, parse_label, question_text
from openrlhf_visualprm.plugin.plan import RewardPlan

logger = logging.getLogger("openrlhf_visualprm.reward_actor")


def _splitter(text: str) -> str | re.Pattern[str]:
    return re.compile(text[3:]) if text.startswith("re:") else text


def _device(requested: str) -> str:
    if requested != "auto":
        return requested
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


class GroupRewardScorer:
    """Loads the plan's models once; :meth:`score_group` scores one group."""

    def __init__(self, plan: RewardPlan) -> None:
        from openrlhf_visualprm.images import ImageRoots

        self.plan = plan
        self.device = _device(plan.device)
        self.roots = ImageRoots.of(plan.image_roots or None)
        self.prm = self.judge = self.pool = None
        if plan.pool:
            from openrlhf_visualprm.workers.pool import RewardPool

            self.pool = RewardPool.get(plan.pool)
            if self.pool.config.worker.kind != "prm" or plan.prm is None:
                raise ValueError(
                    f"--reward.pool {plan.pool!r} runs {self.pool.config.worker.kind} workers; the plugin sends only "
                    "VisualPRM work to a pool, so it needs a 'prm' pool and a PRM in --reward.model_name_or_path"
                )
        if plan.prm is not None and self.pool is None:
            from openrlhf_visualprm.prm.scorer import VisualPRM

            dtype = plan.prm.load_dtype(self.device)
            self.prm = VisualPRM.from_pretrained(
                plan.prm.path, device=self.device, dtype=dtype, max_tiles=plan.prm.max_tiles
            )
        if plan.judge is not None:
            from openrlhf_visualprm.judge.judge import MRJudge

            j = plan.judge
            self.judge = MRJudge.from_pretrained(
                j.path,
                backend=j.backend,
                device=self.device,
                max_new_tokens=j.max_new_tokens,
                schedule=j.schedule,
                k=j.group_size,
                rounds=j.rounds,
                image_roots=self.roots,
            )

    # ------------------------------------------------------------------ components
    def _prm_results(self, images: list, question: str, responses: list[str]) -> list[dict]:
        cfg = self.plan.prm
        if self.pool is not None:
            group = {
                "images": images,
                "question": question,
                "responses": responses,
                "config": {"method": cfg.method, "aggregation": cfg.aggregation, "max_steps": cfg.max_steps},
            }
            return self.pool.score_groups([group])[0]
        results = self.prm.score(
            images,
            question,
            responses=responses,
            method=cfg.method,
            aggregation=cfg.aggregation,
            max_steps=cfg.max_steps,
            splitter=_splitter(cfg.splitter),
            temperature=cfg.temperature,
        )
        return [r.to_dict() for r in results]

    def _outcome(self, label: dict, responses: list[str]) -> tuple[list[float], list[dict]]:
        cfg = self.plan.outcome
        truth = ground_truth(label, cfg.answer_key)
        answers = [extract_final_answer(r) for r in responses]
        info = [{"answer": a, "has_truth": truth is not None} for a in answers]
        if truth is None:
            return [0.0] * len(responses), info
        if cfg.checker == "exact":
            ok = [a is not None and normalize_answer(a) == normalize_answer(truth) for a in answers]
        else:
            ok = verify_answers(answers, [truth] * len(answers), timeout_s=cfg.timeout_s)
        return [1.0 if x else 0.0 for x in ok], info

    # ------------------------------------------------------------------ public
    def score_group(self, group: dict[str, Any] | None) -> list[dict] | None:
        """``group``: ``{"prompt", "label", "images", "responses"}``; None (padding) gives None."""
        if group is None:
            return None
        from openrlhf_visualprm.images import load_image

        responses = [str(r) for r in group["responses"]]
        try:
            label = parse_label(group.get("label"))
            refs = image_refs(label, group.get("images"))
            images = [load_image(ref, self.roots) for ref in refs]
        except ValueError as exc:  # ImageError is a ValueError too
            logger.error("prompt group gets neutral (zero) rewards: %s", exc)
            neutral = {name: 0.0 for name in self.plan.components}
            return [
                {"components": dict(neutral), "prm": None, "judge": None, "outcome": None, "error": str(exc)}
                for _ in responses
            ]
        question = question_text(label, group.get("prompt", ""))
        out: list[dict] = [{"components": {}, "prm": None, "judge": None, "outcome": None} for _ in responses]
        if self.plan.prm is not None:
            for row, res in zip(out, self._prm_results(images, question, responses)):
                row["components"]["prm"] = float(res["score"])
                row["prm"] = {k: res.get(k) for k in ("step_scores", "spans", "truncated", "note")}
        if self.judge is not None:
            reference = label.get("reference") if isinstance(label.get("reference"), str) else None
            result = self.judge.judge_group(images, question, responses, reference=reference)
            stats = {k: v for k, v in result.stats.items() if isinstance(v, (int, float)) and v is not None}
            for row, reward in zip(out, result.rewards):
                row["components"]["judge"] = float(reward)
                row["judge"] = stats
        if self.plan.outcome is not None:
            rewards, info = self._outcome(label, responses)
            for row, reward, extra in zip(out, rewards, info):
                row["components"]["outcome"] = reward
                row["outcome"] = extra
        return out
