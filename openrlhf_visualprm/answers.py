"""Math answer checking: pull the final answer out of a response, compare it with the ground truth.

``extract_final_answer`` looks, in order, for the last ``\\boxed{...}`` (or ``\\fbox``), the last
"The answer is X" / "Final answer: X" phrase, and the last number in the text.

``verify_answers`` uses ``math-verify`` (symbolic and numeric equivalence: ``\\frac{1}{2}`` ==
``0.5``, ``x=3`` == ``3``). Its timeout is ``signal.alarm``, which only works in a process's main
thread, and sympy can hang on adversarial input; so checks run in a pool of *processes*
(spawned, so no Ray or CUDA state is forked), each check bounded by math-verify's own alarm and
each batch by a wall-clock guard that replaces a stuck pool. A check that times out counts as
wrong, never as right.
"""

from __future__ import annotations

import atexit
import math
import multiprocessing
import os
import re
import threading
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout

_BOXED = re.compile(r"\\(?:boxed|fbox)\s*\{")
_ANSWER_PHRASE = re.compile(
    r"(?:the\s+)?(?:final\s+)?answer\s*(?:is|:)\s*[:=]?\s*(?P<ans>[^\n]+)",
    re.IGNORECASE,
)
_NUMBER = re.compile(r"-?\d{1,3}(?:,\d{3})+(?:\.\d+)?|-?\d+(?:\.\d+)?(?:\s*/\s*\d+)?")


def _boxed_contents(text: str) -> list[str]:
    out = []
    for match in _BOXED.finditer(text):
        depth, i = 1, match.end()
        while i < len(text) and depth:
            depth += {"{": 1, "}": -1}.get(text[i], 0)
            i += 1
        if depth == 0:
            out.append(text[match.end() : i - 1].strip())
    return out


def _clean_phrase(answer: str) -> str:
    answer = answer.strip().strip("*").strip()
    boxed = _boxed_contents(answer)
    if boxed:
        return boxed[-1]
    answer = re.sub(r"\.\s*$", "", answer)  # a sentence's full stop, not a decimal point
    answer = answer.strip().strip("$").strip()
    return answer


def extract_final_answer(text: str) -> str | None:
    """The response's final answer as a string, or None when there is nothing answer-like."""
    if not isinstance(text, str) or not text.strip():
        return None
    boxed = [b for b in _boxed_contents(text) if b]
    if boxed:
        return boxed[-1]
    phrases = [m.group("ans") for m in _ANSWER_PHRASE.finditer(text)]
    for phrase in reversed(phrases):
        cleaned = _clean_phrase(phrase)
        if cleaned:
            return cleaned
    numbers = _NUMBER.findall(text)
    if numbers:
        return re.sub(r"\s+", "", numbers[-1])
    return None


def normalize_answer(answer: str) -> str:
    """Trim ``$``, spaces, ``\\text{}`` and a final full stop; lower-case (for exact matching)."""
    answer = answer.strip().strip("$").strip()
    answer = re.sub(r"\\text\{([^}]*)\}", r"\1", answer)
    answer = re.sub(r"\s+", "", answer).rstrip(".")
    return answer.lower()


def _as_math(answer: str) -> str:
    """math-verify finds LaTeX best inside ``$...$``; bare ``2\\sqrt{3}`` would parse as ``2``."""
    return answer if ("$" in answer or "\\boxed" in answer) else f"${answer}$"


def _check_chunk(pairs: list[tuple[str, str]], timeout_s: int) -> list[bool]:
    """Runs in a pool process (main thread: math-verify's signal.alarm works here)."""
    from math_verify import parse, verify

    results = []
    for prediction, truth in pairs:
        try:
            gold = parse(_as_math(truth), parsing_timeout=timeout_s)
            pred = parse(_as_math(prediction), parsing_timeout=timeout_s)
            results.append(bool(gold and pred and verify(gold, pred, timeout_seconds=timeout_s)))
        except Exception:  # math-verify raises TimeoutError and sympy errors on odd input
            results.append(False)
    return results


class _Pool:
    """A lazily started process pool, rebuilt when a batch overruns its wall-clock guard."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._executor: ProcessPoolExecutor | None = None

    def get(self) -> ProcessPoolExecutor:
        with self._lock:
            if self._executor is None:
                workers = max(1, min(4, os.cpu_count() or 1))
                ctx = multiprocessing.get_context("spawn")
                self._executor = ProcessPoolExecutor(max_workers=workers, mp_context=ctx)
            return self._executor

    def kill(self) -> None:
        with self._lock:
            executor, self._executor = self._executor, None
        if executor is not None:
            for process in list(getattr(executor, "_processes", {}).values()):
                process.kill()
            executor.shutdown(wait=False, cancel_futures=True)


_POOL = _Pool()
atexit.register(_POOL.kill)


def _guard_seconds(alarm: int, chunk: int) -> float:
    """Wall-clock bound of one batch: pool start-up and sympy import, then per item 2 parses + 1 verify."""
    return 30.0 + 3 * alarm * chunk


def verify_answers(predictions: list[str], ground_truths: list[str], timeout_s: float = 5.0) -> list[bool]:
    """``[prediction_i equals ground_truth_i]`` by math-verify; None or empty predictions are wrong.

    Predictions are answer strings (e.g. from :func:`extract_final_answer`). Identical answers
    (after trimming ``$``, spaces and ``\\text{}``) are accepted without a symbolic check.
    """
    if len(predictions) != len(ground_truths):
        raise ValueError(f"{len(predictions)} predictions but {len(ground_truths)} ground truths")
    if timeout_s <= 0:
        raise ValueError(f"timeout_s must be > 0, got {timeout_s}")
    results: list[bool] = [False] * len(predictions)
    todo: list[int] = []
    for i, (pred, truth) in enumerate(zip(predictions, ground_truths)):
        if truth is None or not str(truth).strip():
            raise ValueError(f"ground truth #{i} is empty: every checked item needs a ground truth")
        if pred is None or not str(pred).strip():
            continue
        if normalize_answer(str(pred)) == normalize_answer(str(truth)):
            results[i] = True
        else:
            todo.append(i)
    if not todo:
        return results
    alarm = max(1, math.ceil(timeout_s))
    pool = _POOL.get()
    chunk = max(1, math.ceil(len(todo) / (4 * (pool._max_workers or 1))))
    batches = [todo[k : k + chunk] for k in range(0, len(todo), chunk)]
    futures = [
        pool.submit(_check_chunk, [(str(predictions[i]), str(ground_truths[i])) for i in batch], alarm)
        for batch in batches
    ]
    guard = _guard_seconds(alarm, chunk)
    for batch, future in zip(batches, futures):
        try:
            for i, ok in zip(batch, future.result(timeout=guard)):
                results[i] = ok
        except FutureTimeout:
            _POOL.kill()  # a check ignored its alarm (stuck in C code): start a fresh pool
            break
        except Exception:
            _POOL.kill()  # a pool process died; the items of this batch stay False
    return results
