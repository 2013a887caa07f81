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

Text is normalised before anything is read (:func:`normalize_text`): NFKC (fullwidth digits and
letters, circled numbers), every Unicode decimal digit to ASCII (Arabic-Indic, Devanagari, ...),
format characters removed (RTL/LTR marks, zero-width joiners and spaces, BOM, soft hyphen). What
NFKC would turn into a different number is rewritten first: superscripts and subscripts become
``^{...}`` / ``_{...}`` (``3²`` is 9, never 32) and vulgar fractions ``+(n/d)`` (``1½`` is 1.5, never
11/2). Two things are never accepted: a prediction with bidi overrides or isolates (its displayed
order is not its logical one) and one with combining marks the truth does not have (``1̸``, "not
1", used to verify as 1).

Multiple choice (a label with ``choices``, as ``convert-data math`` writes for MathVista): the
correct option's letter and its text both verify, and nothing else (:func:`choice_verdict`).
"""

from __future__ import annotations

import atexit
import logging
import math
import multiprocessing
import os
import re
import threading
import unicodedata
from collections.abc import Sequence
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


# ----------------------------------------------------------------------------- Unicode
# Overrides, embeddings and isolates reorder what a reader sees: such a prediction is never right.
_BIDI_CONTROLS = frozenset("\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")
_SUPERSCRIPTS = "⁰¹²³⁴⁵⁶⁷⁸⁹⁺⁻⁼⁽⁾ⁿⁱ"
_SUBSCRIPTS = "₀₁₂₃₄₅₆₇₈₉₊₋₌₍₎"
_SCRIPT_RUN = re.compile(f"[{_SUPERSCRIPTS}]+|[{_SUBSCRIPTS}]+")
_VULGAR = re.compile(r"(\d?)([\u00bc-\u00be\u2150-\u215e\u2189])")
_NON_ASCII_DIGIT = re.compile(r"[^\x00-\x7f]")
_ARABIC_SEPARATORS = str.maketrans({"\u066b": ".", "\u066c": ",", "\u2044": "/", "\u2212": "-"})


def _script_run(match: re.Match) -> str:
    run = match.group()
    mark = "^" if run[0] in _SUPERSCRIPTS else "_"
    return f"{mark}{{{unicodedata.normalize('NFKC', run)}}}"


def _vulgar(match: re.Match) -> str:
    from fractions import Fraction

    value = Fraction(unicodedata.numeric(match.group(2))).limit_denominator(10)
    return f"{match.group(1)}{'+' if match.group(1) else ''}({value.numerator}/{value.denominator})"


def _ascii_digit(match: re.Match) -> str:
    char = match.group()
    return str(unicodedata.decimal(char)) if unicodedata.category(char) == "Nd" else char


def normalize_text(text: str) -> str:
    """The text an answer is read from (rules in the module docstring). Bidi overrides and
    isolates are kept so :func:`verify_answers` can refuse them; every other format character goes."""
    if text.isascii():
        return text
    text = _SCRIPT_RUN.sub(_script_run, text)
    text = _VULGAR.sub(_vulgar, text)
    text = unicodedata.normalize("NFKC", text)
    text = "".join(c for c in text if c in _BIDI_CONTROLS or unicodedata.category(c) != "Cf")
    text = _NON_ASCII_DIGIT.sub(_ascii_digit, text)
    return text.translate(_ARABIC_SEPARATORS)


def _suspect(prediction: str, truth: str) -> bool:
    """A prediction whose look and content differ: bidi reordering, or combining marks (``1̸``)
    that the truth does not have."""
    if prediction.isascii():
        return False
    if any(c in _BIDI_CONTROLS for c in prediction):
        return True
    marks = {c for c in prediction if unicodedata.combining(c) or unicodedata.category(c) in ("Mn", "Me")}
    return bool(marks - set(truth))


def extract_final_answer(text: str) -> str | None:
    """The response's final answer as a string (normalised: :func:`normalize_text`), or None when
    there is nothing answer-like."""
    if not isinstance(text, str) or not text.strip():
        return None
    text = normalize_text(text[-MAX_ANSWER_SCAN_CHARS:])
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
    answer = normalize_text(answer).strip().strip("$").strip()
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


# ----------------------------------------------------------------------------- multiple choice
LETTERS = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
_WRAPPER = re.compile(r"\\(?:text|textbf|mathrm|mathbf|mbox)\s*\{([^{}]*)\}")
_PREFIX = r"(?:(?i:option|choice)\s*)?"
_LETTER_CLAIM = (
    re.compile(_PREFIX + r"\(([A-Z])\)(?:\s*(.*?))?\.?"),  # (B) / (B) square
    re.compile(_PREFIX + r"([A-Z])(?:[.:)](?:\s*(.*?))?)?\.?"),  # B / B. / B) square / B: square
)


def _letter_claim(prediction: str) -> tuple[str, str] | None:
    """``(letter, option text or "")`` when the prediction names an option by its letter."""
    text = _WRAPPER.sub(r"\1", prediction.strip().strip("$").strip()).strip().strip("*").strip()
    for pattern in _LETTER_CLAIM:
        match = pattern.fullmatch(text)
        if match:
            return match.group(1), (match.group(2) or "").strip()
    return None


def correct_option(truth: str, choices: Sequence[str] | None) -> tuple[frozenset[str], str] | None:
    """The letters and text of the right option: the choice equal to ``truth`` (MathVista stores
    the text), or the option ``truth`` names by letter (geometry3k's ``ground_truth``). None when
    there are no choices, ``truth`` is neither, or an option's text is itself a letter (then a
    bare letter would be ambiguous, and only text is compared)."""
    if not choices or len(choices) > len(LETTERS):
        return None
    texts = [normalize_answer(str(c)) for c in choices]
    if any(len(t) == 1 and t.upper() in LETTERS for t in texts):
        return None
    wanted = normalize_answer(truth)
    letters = frozenset(LETTERS[i] for i, t in enumerate(texts) if t == wanted)
    if letters:
        return letters, truth
    claim = _letter_claim(normalize_text(truth))
    if claim and not claim[1] and LETTERS.index(claim[0]) < len(choices):
        return frozenset(claim[0]), str(choices[LETTERS.index(claim[0])])
    return None


def choice_verdict(prediction: str, truth: str, choices: Sequence[str] | None) -> bool | str:
    """For a multiple-choice item: True / False when the prediction names an option by letter
    (the right letter, and its text if it gives one), else the option text to compare the
    prediction with. Without choices (or an unmapped truth): ``truth`` itself."""
    option = correct_option(truth, choices)
    if option is None:
        return truth
    letters, text = option
    claim = _letter_claim(prediction)
    if claim is None:
        return text
    letter, named = claim
    return letter in letters and (not named or normalize_answer(named) == normalize_answer(text))


def _first_pass(prediction: object, truth: str, choices: Sequence[str] | None) -> bool | str:
    """Everything decided without math-verify: a verdict, or the truth text still to check."""
    if prediction is None or not str(prediction).strip():
        return False
    pred, truth = normalize_text(str(prediction)), normalize_text(str(truth))
    if _suspect(pred, truth):
        return False
    target = choice_verdict(pred, truth, choices)
    if isinstance(target, bool):
        return target
    return True if normalize_answer(pred) == normalize_answer(target) else target


def _check_inputs(predictions: Sequence, ground_truths: Sequence, choices: Sequence | None) -> list:
    if len(predictions) != len(ground_truths):
        raise ValueError(f"{len(predictions)} predictions but {len(ground_truths)} ground truths")
    for i, truth in enumerate(ground_truths):
        if truth is None or not str(truth).strip():
            raise ValueError(f"ground truth #{i} is empty: every checked item needs a ground truth")
    if choices is None:
        return [None] * len(predictions)
    if len(choices) != len(predictions):
        raise ValueError(f"{len(predictions)} predictions but {len(choices)} choice lists")
    return list(choices)


def exact_answers(
    predictions: Sequence[str | None],
    ground_truths: Sequence[str],
    choices: Sequence[Sequence[str] | None] | None = None,
) -> list[bool]:
    """The ``exact`` checker: normalised string equality, with the same Unicode and
    multiple-choice rules as :func:`verify_answers`."""
    per_item = _check_inputs(predictions, ground_truths, choices)
    verdicts = [_first_pass(p, t, c) for p, t, c in zip(predictions, ground_truths, per_item)]
    return [v is True for v in verdicts]


def verify_answers(
    predictions: Sequence[str | None],
    ground_truths: Sequence[str],
    timeout_s: float = 5.0,
    choices: Sequence[Sequence[str] | None] | None = None,
) -> list[bool]:
    """``[prediction_i equals ground_truth_i]`` by math-verify; None or empty predictions are wrong.

    Predictions are answer strings (e.g. from :func:`extract_final_answer`). Identical answers
    (after trimming ``$``, spaces and ``\\text{}``) are accepted without a symbolic check.
    ``choices[i]``: item i's options (the label's ``choices``) or None; with them the option's
    letter and its text are both right, and nothing else (:func:`choice_verdict`).
    """
    per_item = _check_inputs(predictions, ground_truths, choices)
    if timeout_s <= 0:
        raise ValueError(f"timeout_s must be > 0, got {timeout_s}")
    results: list[bool] = [False] * len(predictions)
    todo: list[int] = []
    targets: dict[int, str] = {}
    for i, (pred, truth) in enumerate(zip(predictions, ground_truths)):
        verdict = _first_pass(pred, truth, per_item[i])
        if isinstance(verdict, bool):
            results[i] = verdict
        else:
            targets[i] = verdict
            todo.append(i)
    if not todo:
        return results
    alarm = max(1, math.ceil(timeout_s))
    pool = _POOL.get()
    chunk = max(1, math.ceil(len(todo) / (4 * (pool._max_workers or 1))))
    batches = [todo[k : k + chunk] for k in range(0, len(todo), chunk)]
    futures = [
        pool.submit(_check_chunk, [(normalize_text(str(predictions[i])), targets[i]) for i in batch], alarm)
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
