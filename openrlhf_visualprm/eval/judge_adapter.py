"""Make a judge backend answer one pair in a *given* order, for VL-RewardBench and best-of-N.

The judge's group schedules shuffle candidate order on purpose (against position shortcuts).
Measuring position bias needs the opposite: one call, candidates shown exactly as asked. So
this adapter builds the request itself with the judge package's template (same prompt, same
candidate sanitising), runs the backend, and parses with the judge's parser. Parse failures
return ``None`` (counted by the evaluators, never turned into a pick).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

PairJudge = Callable[[list, str, str, str], "int | None"]


class BackendPairJudge:
    """A :data:`PairJudge` over a judge backend (``generate(requests) -> list[str]``).

    ``fallback="none"``: a parse failure returns ``None``. ``fallback="reask"``: the judge's own
    output is closed with ``</think><answer>`` and the backend's constrained ``choose_label`` picks
    the label (the judge package's re-ask); such picks are counted in ``stats["reasked"]``.
    """

    def __init__(self, backend: Any, fallback: str = "none", max_candidate_chars: int | None = -1) -> None:
        from openrlhf_visualprm.judge.template import DEFAULT_MAX_CANDIDATE_CHARS, DEFAULT_TEMPLATE, LABELS

        if max_candidate_chars == -1:  # the judge's own default cap (None = no cap)
            max_candidate_chars = DEFAULT_MAX_CANDIDATE_CHARS

        if fallback not in ("none", "reask"):
            raise ValueError(f"fallback must be 'none' or 'reask', got {fallback!r}")
        self.backend = backend
        self.fallback = fallback
        self.max_candidate_chars = max_candidate_chars
        self.template = getattr(backend, "template", DEFAULT_TEMPLATE)
        self.labels = tuple(LABELS[:2])
        self.stats = {"calls": 0, "parse_failures": 0, "reasked": 0, "failure_reasons": {}}

    def __call__(self, images: list, question: str, first: str, second: str) -> int | None:
        from openrlhf_visualprm.judge.parse import parse_verdict
        from openrlhf_visualprm.judge.template import JudgeRequest, render_user_text

        text = render_user_text(
            question,
            [first, second],
            self.labels,
            template=self.template,
            max_candidate_chars=self.max_candidate_chars,
            special_tokens=getattr(self.backend, "special_tokens", ()),
        )
        request = JudgeRequest(
            images=list(images), system=self.template.system, user_text=text, labels=self.labels
        )
        output = self.backend.generate([request])[0]
        self.stats["calls"] += 1
        verdict = parse_verdict(output, self.labels)
        if verdict.ok:
            return self.labels.index(verdict.choice)
        self.stats["parse_failures"] += 1
        key = str(verdict.reason).split(":", 1)[0]
        self.stats["failure_reasons"][key] = self.stats["failure_reasons"].get(key, 0) + 1
        if self.fallback == "reask":
            label = self.backend.choose_label([request], [output])[0]
            if label in self.labels:
                self.stats["reasked"] += 1
                return self.labels.index(label)
        return None


def pair_judge_from_backend(backend: Any, fallback: str = "none") -> BackendPairJudge:
    return BackendPairJudge(backend, fallback)


def load_pair_judge(
    path: str,
    backend: str = "hf",
    device: str = "cpu",
    max_new_tokens: int = 1024,
    fallback: str = "none",
    **kwargs: Any,
) -> tuple[BackendPairJudge, str]:
    """Load a judge (local folder, cached hub id or the ``mr-judge`` alias) as a pair judge.

    Loading goes through ``MRJudge.from_pretrained`` so aliases, offline resolution and backend
    options match the reward side; the calls then bypass its shuffling schedules (see above).
    """
    from openrlhf_visualprm.judge import MRJudge

    mr = MRJudge.from_pretrained(
        path, backend=backend, device=device, max_new_tokens=max_new_tokens, **kwargs
    )
    pair = BackendPairJudge(mr.backend, fallback, max_candidate_chars=mr.max_candidate_chars)
    return pair, str(getattr(mr.backend, "model_id", path))
