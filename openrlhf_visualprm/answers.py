"""Math answer checking: pull the final answer out of a response, compare it with the ground truth.

``extract_final_answer`` looks, in order, for the last ``\\boxed{...}`` (or ``\\fbox``), the last
"The answer is X" / "Final answer: X" phrase, and the last number in the text; only the last
``MAX_ANSWER_SCAN_CHARS`` characters are searched, in linear time.

``verify_answers`` uses ``math-verify`` (symbolic and numeric equivalence: ``\\frac{1}{2}`` ==
``0.5``, ``x=3`` == ``3``). Its timeout is ``signal.alarm``, which only works in a process's main
thread, and sympy can hang on adversarial input; so checks run in a pool of *processes*
(spawned, so no Ray or CUDA state is forked), each check bounded by math-verify's own alarm and
each batch by a wall-clock guard that replaces a stuck pool. A check that times out counts as
wrong, never as right.
"""

from __future__ import annotations

import atexit
import logging
import math
import multiprocessing
import os
import re
import threading
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout

logger = logging.getLogger("openrlhf_visualprm.answers")
MAX_LOGGED_INPUT_CHARS = 200
_MATH_VERIFY_LOGGERS = ("math_verify", "math_verify.parser", "math_verify.grader", "math_verify.metric")

_ANSWER_PHRASE = re.compile(
    r"(?:the\s+)?(?:final\s+)?answer\s*(?:is|:)\s*[:=]?\s*(?P<ans>[^\n]+)",
    re.IGNORECASE,
)
_NUMBER = re.compile(r"-?\d{1,3}(?:,\d{3})+(?:\.\d+)?|-?\d+(?:\.\d+)?(?:\s*/\s*\d+)?")


_BRACE_OR_BOX = re.compile(r"\\(?:boxed|fbox)\s*\{|[{}]")
# Only the end of a response is searched: the final answer is there, and the work stays bounded
# whatever a policy writes.
MAX_ANSWER_SCAN_CHARS = 32_768


def _boxed_contents(text: str) -> list[str]:
    """Contents of every closed ``\\boxed{...}``, ordered by where the box starts.

    One pass with a stack of open braces (linear in the text; repeated unclosed ``\\boxed{``
    used to make this quadratic): a closing brace closes the innermost open one, and a box is
    read when the brace it opened is closed. Unmatched closing braces are ignored.
    """
    stack: list[int] = []  # content start of a box's brace, or -1 for a plain brace
    found: list[tuple[int, str]] = []
    for match in _BRACE_OR_BOX.finditer(text):
        token = match.group()
        if token == "}":
            if stack:
                start = stack.pop()
                if start >= 0:
                    found.append((start, text[start : match.start()].strip()))
        else:
            stack.append(match.end() if token != "{" else -1)
    found.sort(key=lambda item: item[0])
    return [content for _, content in found]


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
    text = text[-MAX_ANSWER_SCAN_CHARS:]
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


def _shorten(text: str) -> str:
    if len(text) <= MAX_LOGGED_INPUT_CHARS:
        return text
    return f"{text[:MAX_LOGGED_INPUT_CHARS]}... [{len(text) - MAX_LOGGED_INPUT_CHARS} characters omitted]"


class _ShortRecords(logging.Filter):
    """math-verify puts whole inputs in its log lines (a 1 MB response on every timeout)."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if len(message) > MAX_LOGGED_INPUT_CHARS:
            record.msg, record.args = _shorten(message), None
        return True


def shorten_math_verify_logs() -> None:
    """Cut math-verify's log lines to a short head (filters do not pass to child loggers, so
    each of its module loggers gets one)."""
    for name in _MATH_VERIFY_LOGGERS:
        target = logging.getLogger(name)
        if not any(isinstance(f, _ShortRecords) for f in target.filters):
            target.addFilter(_ShortRecords())


def _check_chunk(pairs: list[tuple[str, str]], timeout_s: int) -> list[bool]:
    """Runs in a pool process (main thread: math-verify's signal.alarm works here)."""
    from math_verify import parse, verify

    shorten_math_verify_logs()
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
        self._exit_hook = False

    def get(self) -> ProcessPoolExecutor:
        with self._lock:
            if self._executor is None:
                workers = max(1, min(4, os.cpu_count() or 1))
                ctx = multiprocessing.get_context("spawn")
                self._executor = ProcessPoolExecutor(max_workers=workers, mp_context=ctx)
                if not self._exit_hook:  # registered with the first pool, not at import
                    atexit.register(self.kill)
                    self._exit_hook = True
            return self._executor

    def kill(self) -> None:
        with self._lock:
            executor, self._executor = self._executor, None
        if executor is not None:
            for process in list(getattr(executor, "_processes", {}).values()):
                process.kill()
            executor.shutdown(wait=False, cancel_futures=True)


_POOL = _Pool()


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
            unchecked = sum(len(b) for b, f in zip(batches, futures) if not f.done() or f is future)
            logger.warning(
                "math-verify did not finish a batch within its %.0fs guard (stuck in a check?); "
                "restarting its processes, %d unchecked answers counted as wrong (first: %r vs %r)",
                guard,
                unchecked,
                _shorten(str(predictions[batch[0]])),
                _shorten(str(ground_truths[batch[0]])),
            )
            break
        except Exception as exc:
            _POOL.kill()  # a pool process died; the items of this batch stay False
            logger.warning(
                "math-verify process failed (%s: %s); %d answers counted as wrong",
                type(exc).__name__,
                _shorten(str(exc)),
                len(batch),
            )
    return results
