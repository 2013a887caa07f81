"""Test-only scorer wrappers, applied in a reward worker through ``WorkerConfig.scorer_wrapper``.

- :func:`inject_faults`: the real ``torch.OutOfMemoryError`` above a response count (per group), and a delay
  per call, so the worker's OOM splitting and the pool's queue run exactly as on a GPU.
- :func:`scripted_judge`: swaps the judge's generating backend for a scripted, content-aware one
  (:func:`pick_by_content`), so a misrouted or reordered group changes the rewards. The tiny random
  judge never produces a parseable verdict: every response would get 0.5 and a routing check on
  constant rewards could not fail.

The workers import this module by name: the Ray job's ``PYTHONPATH`` must hold ``tests/support/``
(the session Ray fixture in ``tests/conftest.py`` sets it).
"""

from __future__ import annotations

import hashlib
import re
import threading
import time
from typing import Any

CANDIDATE = re.compile(r"\[Candidate ([A-Z])\]\n(.*?)\n\[End of Candidate \1\]", re.DOTALL)


class FaultInjectingScorer:
    """Wraps a worker's component; raises OOM above ``oom_above_responses``, sleeps ``delay_s`` per call."""

    def __init__(self, inner: Any, oom_above_responses: int | None = None, delay_s: float = 0.0) -> None:
        self.inner = inner
        self.oom_above_responses = oom_above_responses
        self.delay_s = delay_s
        self.name, self.needs, self.neutral = inner.name, inner.needs, inner.neutral
        self.splittable = inner.splittable
        self.injected_ooms = 0
        self._lock = threading.Lock()

    def score_groups(self, groups: list) -> list:
        import torch

        if self.delay_s:
            time.sleep(self.delay_s)
        limit = self.oom_above_responses
        biggest = max((g.n for g in groups), default=0)
        if limit is not None and biggest > limit:
            with self._lock:
                self.injected_ooms += 1
            # the exception a CUDA allocation failure raises, so the worker's handler runs as on a GPU
            raise torch.OutOfMemoryError(
                f"CUDA out of memory (injected): {biggest} responses > limit {limit}"
            )
        return self.inner.score_groups(groups)


def inject_faults(component: Any, oom_above_responses: int | None = None, delay_s: float = 0.0) -> Any:
    return FaultInjectingScorer(component, oom_above_responses=oom_above_responses, delay_s=delay_s)


def pick_by_content(images: list, prompt_text: str) -> str:
    """The verdict of the scripted judge: the candidate whose text, hashed with the image the
    judge was shown, is smallest. Deterministic, and different for other images or texts."""
    found = CANDIDATE.findall(prompt_text)
    if not found:
        return "<think>no candidates found</think>"
    seed = b"".join(image.tobytes() for image in images)

    def key(candidate: tuple[str, str]) -> str:
        return hashlib.md5(seed + candidate[1].strip().encode()).hexdigest()

    return f"<think>scripted</think>\n<answer>{min(found, key=key)[0]}</answer>"


def scripted_backend() -> Any:
    from openrlhf_visualprm.judge import ScriptedBackend

    return ScriptedBackend(lambda request: pick_by_content(request.images, request.user_text))


def scripted_judge(component: Any) -> Any:
    """The worker's judge component, its backend replaced by :func:`scripted_backend` (options kept)."""
    component.judge.backend = scripted_backend()
    return component
