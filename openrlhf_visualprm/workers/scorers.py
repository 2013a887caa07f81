"""The small "scorer" protocol that reward workers run, and its adapters.

A worker never talks to a model class directly: it holds a ``GroupScorer``, so the same worker
(batching, OOM splitting, logging) runs VisualPRM, MR. Judge, or whatever ``WorkerConfig.scorer_wrapper`` puts
around them (the tests' fault injectors and scripted judge live in ``tests/support/``). ``score_groups`` scores a whole batch through the reward runtime's
components (:mod:`openrlhf_visualprm.rewards`): the PRM batches suffixes of several groups, the
judge every call of a round; ``score_group`` is the one-group form the worker falls back to (OOM
splitting). Results are plain dicts so they cross process boundaries and JSON without conversion.
"""

from __future__ import annotations

import importlib
import json
from dataclasses import asdict, is_dataclass
from typing import Any, Protocol

from openrlhf_visualprm.errors import ConfigError
from openrlhf_visualprm.workers.config import WorkerConfig
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

    def __init__(self, prm: Any, max_batch_tokens: int = 32768) -> None:
        self.prm = prm
        self.max_batch_tokens = max_batch_tokens
        self.model_id = str(prm.model_id)
        self.call_log: list[dict[str, Any]] = []

    @classmethod
    def load(cls, config: WorkerConfig, device: str, dtype: Any) -> PRMScorer:
        from openrlhf_visualprm.prm.scorer import VisualPRM

        kwargs: dict[str, Any] = {
            "device": device,
            "dtype": dtype,
            "max_tiles": config.max_tiles,
            "system_message": config.system_message,
        }
        if config.attn_implementation:
            kwargs["attn_implementation"] = config.attn_implementation
        return cls(VisualPRM.from_pretrained(config.model, **kwargs), config.max_batch_tokens)

    def score_group(self, group: ScoreGroup) -> list[dict[str, Any]]:
        return self.score_groups([group])[0]

    def score_groups(self, groups: list[ScoreGroup]) -> list[list[dict[str, Any]]]:
        """Groups with the same options in one runtime call; explicit step lists one by one."""
        from openrlhf_visualprm.rewards.components import PRMComponent

        for g in groups:
            self.call_log.append(
                {"question": g.question[:80], "n_responses": g.n_responses, "method": g.config.get("method")}
            )
        del self.call_log[:-256]
        out: list[list[dict[str, Any]] | None] = [None] * len(groups)
        by_config: dict[str, list[int]] = {}
        for i, g in enumerate(groups):
            if g.steps is not None:
                cfg = g.config
                results = self.prm.score(
                    g.images, g.question, steps=g.steps, **_prm_options(cfg).score_kwargs()
                )
                out[i] = [_as_dict(r) for r in results]
            else:
                by_config.setdefault(g.config_key(), []).append(i)
        for indices in by_config.values():
            cfg = groups[indices[0]].config
            component = PRMComponent(
                self.prm, **_prm_options(cfg).scoring_options(), max_batch_tokens=self.max_batch_tokens
            )
            scored = component.score_groups([_reward_group(groups[i]) for i in indices])
            for i, group_scores in zip(indices, scored):
                out[i] = [{**r["detail"], "score": r["score"]} for r in group_scores]
        return [o for o in out if o is not None]


def _prm_options(config: dict[str, Any]):
    """A request's validated scoring options as the one PRM config type (every option honoured)."""
    from openrlhf_visualprm.prm.config import PRMConfig

    return PRMConfig().with_request(config)


def _reward_group(group: ScoreGroup):
    from openrlhf_visualprm.rewards.groups import RewardGroup

    return RewardGroup(
        group.question, list(group.responses or []), list(group.images), reference=group.reference
    )


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
    def _results(scored: list[dict[str, Any]], n: int) -> list[dict[str, Any]]:
        rewards = [float(r["score"]) for r in scored]
        if len(rewards) != n:
            raise RuntimeError(f"judge returned {len(rewards)} rewards for {n} responses")
        best = next((i for i, r in enumerate(scored) if (r.get("detail") or {}).get("best")), None)
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
        from openrlhf_visualprm.rewards.components import JudgeComponent

        for g in groups:
            self.call_log.append(
                {"question": g.question[:80], "n_responses": g.n_responses, "method": "judge"}
            )
        del self.call_log[:-256]
        scored = JudgeComponent(self.judge).score_groups([_reward_group(g) for g in groups])
        return [self._results(s, g.n_responses) for s, g in zip(scored, groups)]


def _import_wrapper(spec: str) -> Any:
    module_name, _, attr = spec.partition(":")
    try:
        return getattr(importlib.import_module(module_name), attr)
    except (ImportError, AttributeError) as exc:
        raise ConfigError(
            f"WorkerConfig.scorer_wrapper {spec!r} cannot be imported in the worker ({exc}): give "
            "'module:function' with the module on the workers' PYTHONPATH (Ray runtime_env env_vars)"
        ) from exc


def build_scorer(config: WorkerConfig, device: str, dtype: Any) -> GroupScorer:
    """Load the model named by ``config``; pass it through ``config.scorer_wrapper`` when set."""
    scorer: GroupScorer
    if config.kind == "prm":
        scorer = PRMScorer.load(config, device, dtype)
    else:
        scorer = JudgeScorer.load(config, device, dtype)
    if config.scorer_wrapper:
        scorer = _import_wrapper(config.scorer_wrapper)(scorer, **config.scorer_wrapper_options)
    return scorer
