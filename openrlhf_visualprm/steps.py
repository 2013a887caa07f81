"""Split a response into reasoning steps, keeping each step's character span.

Spans let the RL side map a step back to the policy tokens that produced it (a dense reward is
placed on the token that ends the step). VisualPRM's own rule is ``response.split("\\n\\n")``
with optional merging into at most ``max_steps`` blocks of ``ceil(n / max_steps)`` chunks.

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


def merge_steps(steps: list[Step], response: str, max_steps: int | None) -> list[Step]:
    """Merge consecutive steps in blocks of ``ceil(n / max_steps)`` (VisualPRM's rule).

    A merged step's text is the response slice from the first block member's start to the last
    member's end, so separators inside a block are kept verbatim.
    """
    if max_steps is None or len(steps) <= max_steps:
        return steps
    if max_steps < 1:
        raise ValueError(f"max_steps must be >= 1 or None, got {max_steps}")
    block = math.ceil(len(steps) / max_steps)
    merged = []
    for i in range(0, len(steps), block):
        first, last = steps[i], steps[min(i + block, len(steps)) - 1]
        merged.append(Step(response[first.start : last.end], first.start, last.end))
    return merged


def split_steps(
    response: str,
    max_steps: int | None = None,
    splitter: str | re.Pattern[str] = DEFAULT_SEPARATOR,
) -> list[Step]:
    """Split ``response`` into steps with spans; see the module docstring for empty pieces.

    ``splitter`` is a literal separator (default ``"\\n\\n"``) or a compiled regex whose matches
    separate steps (e.g. ``re.compile(r"\\n(?=Step \\d+)")``).
    """
    if not isinstance(response, str):
        raise TypeError(f"response must be a str, got {type(response).__name__}")
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
