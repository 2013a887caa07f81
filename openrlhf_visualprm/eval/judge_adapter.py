"""A judge answering one pair in a *given* order, for VL-RewardBench and best-of-N.

The judge's group schedules shuffle candidate order on purpose (against position shortcuts).
Measuring position bias needs the opposite: one call, candidates shown exactly as asked. That
call is :meth:`MRJudge.compare` (same prompt, sanitising, parser and re-ask as the reward side);
this module only adapts it to the evaluators' ``PairJudge`` signature and counts outcomes.
Parse failures return ``None`` (counted by the evaluators, never turned into a pick).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from openrlhf_visualprm.judge.config import DEFAULT_MAX_NEW_TOKENS

PairJudge = Callable[[list, str, str, str], "int | None"]


class MRJudgePair:
    """A :data:`PairJudge` over an :class:`~openrlhf_visualprm.judge.MRJudge`.

    ``judge.reask`` decides what a parse failure does: without it the pair returns ``None``; with
    it the judge's constrained second call picks the label (counted in ``stats["reasked"]``).
    """

    def __init__(self, judge: Any) -> None:
        self.judge = judge
        self.stats: dict[str, Any] = {"calls": 0, "parse_failures": 0, "reasked": 0, "failure_reasons": {}}

    def __call__(self, images: list, question: str, first: str, second: str) -> int | None:
        call = self.judge.compare(images, question, [first, second])
        self.stats["calls"] += 1
        if call.reasked or call.failure is not None:  # the first parse failed
            self.stats["parse_failures"] += 1
            key = str(call.failure or "answered on re-ask").split(":", 1)[0]
            self.stats["failure_reasons"][key] = self.stats["failure_reasons"].get(key, 0) + 1
            self.stats["reasked"] += call.reasked and call.winner is not None
        return call.winner


def load_pair_judge(
    path: str,
    backend: str = "hf",
    device: str = "cpu",
    max_new_tokens: int = DEFAULT_MAX_NEW_TOKENS,
    fallback: str = "none",
    **kwargs: Any,
) -> tuple[MRJudgePair, str]:
    """Load a judge (local folder, cached hub id or the ``mr-judge`` alias) as a pair judge.

    ``fallback``: ``none`` (a parse failure is unjudged) or ``reask`` (the judge's re-ask).
    """
    from openrlhf_visualprm.judge import MRJudge

    if fallback not in ("none", "reask"):
        raise ValueError(f"fallback must be 'none' or 'reask', got {fallback!r}")
    mr = MRJudge.from_pretrained(
        path,
        backend=backend,
        device=device,
        max_new_tokens=max_new_tokens,
        reask=fallback == "reask",
        **kwargs,
    )
    return MRJudgePair(mr), str(getattr(mr.backend, "model_id", path))
