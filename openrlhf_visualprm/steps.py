"""Split a response into reasoning steps, keeping each step's character span.

Spans let the RL side map a step back to the policy tokens that produced it (a credit return is
placed on the token that ends the step). VisualPRM's own rule is ``response.split("\\n\\n")``
with optional merging into at most ``max_steps`` blocks of ``ceil(n / max_steps)`` chunks; here the
last chunk (the final answer) always stays its own step, the others merge into ``max_steps - 1``.

Splitters (``--reward.prm.splitter``; one spec string, :func:`split_steps` takes it as is):
- a literal separator (default ``"\\n\\n"``); typed on a command line, only ``\\n`` and ``\\t``
  are escapes (:func:`unescape_separator`), everything else is taken literally;
- ``re:PATTERN``: a regular expression whose matches separate steps, taken literally;
- ``preset:NAME`` (:data:`PRESETS`): ``paragraphs`` (blank lines), ``lines`` (every newline),
  ``steps`` (blank lines, and a newline before a "Step k" / "k." / "k)" list item, so numbered
  lists written with single newlines split per item), ``think`` (R1-style ``<think>`` traces: the
  reasoning split into paragraphs and merged into at most ``max_steps - 1`` blocks, default
  ``max_steps`` :data:`DEFAULT_THINK_STEPS`; the answer after ``</think>`` always its own last step).

Empty pieces, documented behaviour:
- Chunks that are empty or whitespace-only (e.g. from ``"\\n\\n\\n\\n"``) are **dropped**: the
  reference keeps them and would ask the PRM to score an empty step, which only adds noise and
  lets a policy pad its step count. Dropping happens before ``max_steps`` merging.
- A response with no non-blank text yields **no steps**. The scorer reports such a response
  with ``note="empty response"`` and the configured neutral score; it is never silently zero.
- Explicit step lists (gold steps from a benchmark) are kept exactly as given, blank ones
  included, because their indices carry labels.
"""

from __future__ import annotations

import json
import math
import os
import re
from dataclasses import dataclass
from pathlib import Path

from openrlhf_visualprm.errors import ConfigError

DEFAULT_SEPARATOR = "\n\n"
REGEX_PREFIX = "re:"  # splitter "re:PATTERN" splits on a regular expression
PRESET_PREFIX = "preset:"
PRESETS = ("paragraphs", "lines", "steps", "think")
DEFAULT_THINK_STEPS = 12  # preset:think without max_steps: an R1 trace has 100+ paragraphs
# a blank line, or a newline before a list item: "Step 3:", "**Step 3**", "3.", "3)"
_STEP_LIST = re.compile(
    r"\n[ \t]*\n\s*|\n(?=[ \t]*(?:[*#]+[ \t]*)?(?:step[ \t]*\d+\b|\d+[.)][ \t]))", re.IGNORECASE
)
_THINK_OPEN, _THINK_CLOSE = "<think>", "</think>"


@dataclass(frozen=True)
class Step:
    """One step: its text and the half-open character span ``[start, end)`` in the response."""

    text: str
    start: int
    end: int


def _chunks_by_separator(response: str, separator: str) -> list[Step]:
    steps, pos = [], 0
    for piece in response.split(separator):
        steps.append(Step(piece, pos, pos + len(piece)))
        pos += len(piece) + len(separator)
    return steps


def _chunks_by_regex(response: str, pattern: re.Pattern[str]) -> list[Step]:
    steps, pos = [], 0
    for match in pattern.finditer(response):
        if match.end() == match.start():
            continue  # a zero-width match would split nothing and loop forever in spirit
        steps.append(Step(response[pos : match.start()], pos, match.start()))
        pos = match.end()
    steps.append(Step(response[pos:], pos, len(response)))
    return steps


def _blocks(steps: list[Step], response: str, max_blocks: int) -> list[Step]:
    """Consecutive steps merged in blocks of ``ceil(n / max_blocks)`` (VisualPRM's rule); a
    merged step's text is the response slice it covers, separators inside kept verbatim."""
    if len(steps) <= max_blocks:
        return steps
    block = math.ceil(len(steps) / max_blocks)
    merged = []
    for i in range(0, len(steps), block):
        first, last = steps[i], steps[min(i + block, len(steps)) - 1]
        merged.append(Step(response[first.start : last.end], first.start, last.end))
    return merged


def merge_steps(steps: list[Step], response: str, max_steps: int | None) -> list[Step]:
    """At most ``max_steps`` steps: the last one (the final answer) kept alone, the others merged
    into ``max_steps - 1`` blocks of ``ceil((n - 1) / (max_steps - 1))``; ``max_steps`` 1: one step."""
    if max_steps is None or len(steps) <= max_steps:
        return steps
    if max_steps < 1:
        raise ValueError(f"max_steps must be >= 1 or None, got {max_steps}")
    if max_steps == 1:
        return _blocks(steps, response, 1)
    return [*_blocks(steps[:-1], response, max_steps - 1), steps[-1]]


def _split_think(response: str, max_steps: int | None) -> list[Step]:
    """``preset:think``: paragraphs of the reasoning in at most ``max_steps - 1`` blocks, then the
    answer after the last ``</think>`` as one step (no ``</think>``: all of it is reasoning)."""
    cap = max_steps if max_steps is not None else DEFAULT_THINK_STEPS
    if cap < 1:
        raise ValueError(f"max_steps must be >= 1 or None, got {max_steps}")
    close = response.rfind(_THINK_CLOSE)
    if close < 0:
        chunks = [c for c in _chunks_by_separator(response, DEFAULT_SEPARATOR) if c.text.strip()]
        return merge_steps(chunks, response, cap)
    opened = response.find(_THINK_OPEN, 0, close)
    begin = opened + len(_THINK_OPEN) if opened >= 0 else 0
    reasoning = [
        _trimmed(response, c.start + begin, c.end + begin)
        for c in _chunks_by_separator(response[begin:close], DEFAULT_SEPARATOR)
        if c.text.strip()
    ]
    tail = close + len(_THINK_CLOSE)
    answer_text = response[tail:]
    if not answer_text.strip():
        return _blocks(reasoning, response, cap)
    answer = _trimmed(response, tail, len(response))
    return [*_blocks(reasoning, response, max(cap - 1, 1)), answer]


def _trimmed(response: str, start: int, end: int) -> Step:
    """The step ``response[start:end]`` without its leading and trailing whitespace (the newlines
    around the think tags)."""
    piece = response[start:end]
    start += len(piece) - len(piece.lstrip())
    end -= len(piece) - len(piece.rstrip())
    return Step(response[start:end], start, end)


def unescape_separator(text: str) -> str:
    """A literal separator typed on a command line: ``\\n`` and ``\\t`` become newline and tab,
    nothing else changes (``re:`` and ``preset:`` specs are returned as they are)."""
    if text.startswith((REGEX_PREFIX, PRESET_PREFIX)):
        return text
    return re.sub(r"\\([nt])", lambda m: "\n" if m.group(1) == "n" else "\t", text)


def escape_separator(text: str) -> str:
    """The inverse of :func:`unescape_separator`, for showing a separator (``--help``, the README):
    newline and tab as ``\\n`` and ``\\t``, everything else as it is."""
    if text.startswith((REGEX_PREFIX, PRESET_PREFIX)):
        return text
    return text.replace("\n", "\\n").replace("\t", "\\t")


def check_splitter(spec: str) -> None:
    """Raise ``ConfigError`` naming the problem when ``spec`` is not a usable splitter."""
    if not isinstance(spec, str) or not spec:
        raise ConfigError(f"prm splitter must be a non-empty string, got {spec!r}")
    if spec.startswith(REGEX_PREFIX):
        try:
            re.compile(spec[len(REGEX_PREFIX) :])
        except re.error as exc:
            raise ConfigError(f"prm splitter {spec!r} is not a valid regular expression: {exc}") from None
    elif spec.startswith(PRESET_PREFIX) and spec[len(PRESET_PREFIX) :] not in PRESETS:
        raise ConfigError(
            f"prm splitter {spec!r}: unknown preset; choose one of "
            + ", ".join(PRESET_PREFIX + p for p in PRESETS)
        )


def split_steps(
    response: str,
    max_steps: int | None = None,
    splitter: str | re.Pattern[str] = DEFAULT_SEPARATOR,
) -> list[Step]:
    """Split ``response`` into steps with spans; see the module docstring for empty pieces.

    ``splitter``: a splitter spec (a literal separator, ``re:PATTERN``, ``preset:NAME``; see the
    module docstring) or a compiled regex whose matches separate steps.
    """
    if not isinstance(response, str):
        raise TypeError(f"response must be a str, got {type(response).__name__}")
    if isinstance(splitter, str) and splitter.startswith(PRESET_PREFIX):
        check_splitter(splitter)
        name = splitter[len(PRESET_PREFIX) :]
        if name == "think":
            return _split_think(response, max_steps)
        splitter = {"paragraphs": DEFAULT_SEPARATOR, "lines": "\n", "steps": _STEP_LIST}[name]
    elif isinstance(splitter, str) and splitter.startswith(REGEX_PREFIX):
        check_splitter(splitter)
        splitter = re.compile(splitter[len(REGEX_PREFIX) :])
    if isinstance(splitter, re.Pattern):
        chunks = _chunks_by_regex(response, splitter)
    else:
        if not splitter:
            raise ValueError("splitter must be a non-empty separator string or a compiled regex")
        chunks = _chunks_by_separator(response, splitter)
    chunks = [c for c in chunks if c.text.strip()]
    return merge_steps(chunks, response, max_steps)


def steps_from_list(steps: list[str], separator: str = DEFAULT_SEPARATOR) -> tuple[str, list[Step]]:
    """Join explicit steps into one response and return it with exact spans (no re-splitting)."""
    if not isinstance(steps, list) or not all(isinstance(s, str) for s in steps):
        raise TypeError("steps must be a list of strings")
    out, pos = [], 0
    for text in steps:
        out.append(Step(text, pos, pos + len(text)))
        pos += len(text) + len(separator)
    return separator.join(steps), out


def read_responses_file(path: str | os.PathLike) -> tuple[list[str] | None, list[list[str]] | None]:
    """``(responses, steps)`` from a JSONL file, exactly one of them set: the CLIs' one reader.

    Each line is a JSON string, ``{"response": str}`` (``"text"`` also accepted) or
    ``{"steps": [str, ...]}`` (explicit steps); one kind per file. ``ConfigError`` names the bad line.
    """
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"--responses file {str(p)!r} does not exist")
    responses: list[str] = []
    steps: list[list[str]] = []
    for lineno, line in enumerate(p.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            item = json.loads(line)
        except json.JSONDecodeError as exc:
            raise ConfigError(f"{p}:{lineno}: not valid JSON ({exc.msg})") from exc
        if isinstance(item, dict) and isinstance(item.get("steps"), list):
            steps.append([str(s) for s in item["steps"]])
            continue
        if isinstance(item, dict):
            item = item.get("response", item.get("text"))
        if not isinstance(item, str):
            raise ConfigError(
                f'{p}:{lineno}: expected a JSON string, {{"response": str}} or {{"steps": [str, ...]}}'
            )
        responses.append(item)
    if responses and steps:
        raise ConfigError(f"{p}: mixes whole responses and 'steps' lines; use one kind per file")
    if not responses and not steps:
        raise ConfigError(f"--responses file {str(p)!r} holds no responses")
    return (responses or None), (steps or None)
