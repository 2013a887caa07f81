"""The small "scorer" protocol that reward workers run, and its adapters.

A worker never talks to a model class directly: it holds a ``GroupScorer``, so the same worker
(batching, OOM splitting, logging) runs VisualPRM, MR. Judge, or a fault-injecting wrapper that
tests and failure drills use. Scorers see one group per call; results are plain dicts so they
cross process boundaries and JSON without conversion.
"""

from __future__ import annotations

import json
import threading
import time
from dataclasses import asdict, is_dataclass
from typing import Any, Protocol

import torch

from openrlhf_visualprm.workers.config import FaultInjection, WorkerConfig
from openrlhf_visualprm.workers.groups import ScoreGroup


class GroupScorer(Protocol):
    """What a worker needs from a reward model.

    ``splittable``: a group may be scored as several sub-groups of its responses (true for the PRM,
    whose per-response scores do not depend on siblings; false for the judge, which compares them).
    """

    model_id: str
    splittable: bool

    def score_group(self, group: ScoreGroup) -> list[dict[str, Any]]: ...


def _as_dict(result: Any) -> dict[str, Any]:
    if hasattr(result, "to_dict"):
        return result.to_dict()
    if is_dataclass(result):
        return asdict(result)
    return dict(result)


class PRMScorer:
    """VisualPRM behind the protocol; keeps a short log of calls so routing can be checked."""

    splittable = True

    def __init__(self, prm: Any) -> None:
        self.prm = prm
        self.model_id = str(prm.model_id)
        self.call_log: list[dict[str, Any]] = []

    @classmethod
    def load(cls, config: WorkerConfig, device: str, dtype: Any) -> PRMScorer:
        from openrlhf_visualprm.prm.scorer import VisualPRM

        kwargs: dict[str, Any] = {"device": device, "dtype": dtype, "max_tiles": config.max_tiles}
        if config.attn_implementation:
            kwargs["attn_implementation"] = config.attn_implementation
        return cls(VisualPRM.from_pretrained(config.model, **kwargs))

    def score_group(self, group: ScoreGroup) -> list[dict[str, Any]]:
        cfg = group.config
        self.call_log.append(
            {"question": group.question[:80], "n_responses": group.n_responses, "method": cfg.get("method")}
        )
        del self.call_log[:-256]
        results = self.prm.score(
            group.images,
            group.question,
            responses=group.responses,
            steps=group.steps,
            method=cfg.get("method", "shared"),
            aggregation=cfg.get("aggregation", "mean"),
            max_steps=cfg.get("max_steps"),
        )
        return [_as_dict(r) for r in results]


class JudgeScorer:
    """MR. Judge behind the protocol: one reward per response, from comparing the whole group.

    The judge's options (schedule, rounds, aggregator, ...) change the rewards, so they are part
    of ``model_id`` and hence of every cache key. Several groups are judged in one call
    (``score_groups``), so their generations share backend batches.
    """

    splittable = False

    def __init__(self, judge: Any, model_id: str) -> None:
        self.judge = judge
        self.model_id = model_id
        self.call_log: list[dict[str, Any]] = []

    @classmethod
    def load(cls, config: WorkerConfig, device: str, dtype: Any) -> JudgeScorer:
        from openrlhf_visualprm.judge import MRJudge

        options = dict(config.judge_options)
        judge = MRJudge.from_pretrained(
            config.model, backend=config.judge_backend, device=device, dtype=dtype, **options
        )
        backend_id = getattr(judge.backend, "model_id", config.model)
        return cls(judge, f"{backend_id}|{json.dumps(options, sort_keys=True, default=str)}")

    @staticmethod
    def _results(verdict: Any, n: int) -> list[dict[str, Any]]:
        rewards = [float(r) for r in verdict.rewards]
        if len(rewards) != n:
            raise RuntimeError(f"judge returned {len(rewards)} rewards for {n} responses")
        best = getattr(verdict, "best", None)
        return [
            {
                "steps": [],
                "spans": [],
                "step_scores": [],
                "score": r,
                "truncated": False,
                "note": "best in group" if i == best else None,
            }
            for i, r in enumerate(rewards)
        ]

    def score_group(self, group: ScoreGroup) -> list[dict[str, Any]]:
        return self.score_groups([group])[0]

    def score_groups(self, groups: list[ScoreGroup]) -> list[list[dict[str, Any]]]:
        from openrlhf_visualprm.judge import JudgeGroup

        for g in groups:
            self.call_log.append(
                {"question": g.question[:80], "n_responses": g.n_responses, "method": "judge"}
            )
        del self.call_log[:-256]
        verdicts = self.judge.judge_groups(
            [JudgeGroup(g.images, g.question, list(g.responses or []), g.reference) for g in groups]
        )
        return [self._results(v, g.n_responses) for v, g in zip(verdicts, groups)]


class FaultInjectingScorer:
    """Wraps a real scorer and injects the faults in ``FaultInjection`` (tests, failure drills)."""

    def __init__(self, inner: GroupScorer, faults: FaultInjection) -> None:
        self.inner = inner
        self.faults = faults
        self.model_id = inner.model_id
        self.splittable = inner.splittable
        self.injected_ooms = 0
        self._lock = threading.Lock()

    @property
    def call_log(self) -> list[dict[str, Any]]:
        return getattr(self.inner, "call_log", [])

    def score_group(self, group: ScoreGroup) -> list[dict[str, Any]]:
        if self.faults.delay_s:
            time.sleep(self.faults.delay_s)
        limit = self.faults.oom_above_responses
        if limit is not None and group.n_responses > limit:
            with self._lock:
                self.injected_ooms += 1
            # The real exception type a CUDA allocation failure raises, so the worker's handler is
            # exercised exactly as on a GPU.
            raise torch.OutOfMemoryError(
                f"CUDA out of memory (injected): {group.n_responses} responses > limit {limit}"
            )
        return self.inner.score_group(group)


def build_scorer(config: WorkerConfig, device: str, dtype: Any) -> GroupScorer:
    """Load the model named by ``config`` and wrap it with fault injection when configured."""
    scorer: GroupScorer
    if config.kind == "prm":
        scorer = PRMScorer.load(config, device, dtype)
    else:
        scorer = JudgeScorer.load(config, device, dtype)
    if config.faults.oom_above_responses is not None or config.faults.delay_s:
        scorer = FaultInjectingScorer(scorer, config.faults)
    return scorer
