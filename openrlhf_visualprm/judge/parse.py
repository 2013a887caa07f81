"""Read the judge's verdict strictly.

The contract (set by :mod:`.template`): reasoning, then ``<answer>X</answer>`` with X one of the
call's labels. Strict means:
- only text after the last ``</think>`` counts (reasoning may quote or deliberate freely);
  an unclosed ``<think>`` means the judge never finished reasoning: failure;
- there must be at least one ``<answer>...</answer>`` there, every one of them must hold a
  valid label (whitespace and a trailing period allowed, nothing else), and they must agree;
- anything else is a failure with a reason. A failure is never turned into a choice here;
  what it is worth is the caller's (neutral) fallback.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

_THINK_OPEN = re.compile(r"<think>", re.IGNORECASE)
_THINK_CLOSE = re.compile(r"</think>", re.IGNORECASE)
_ANSWER = re.compile(r"<answer>(.*?)</answer>", re.IGNORECASE | re.DOTALL)
_LABEL_BODY = re.compile(r"^\s*(?:candidate\s+)?([A-Za-z])\s*\.?\s*$", re.IGNORECASE)


@dataclass(frozen=True)
class ParsedVerdict:
    """``choice`` is a label or None; ``reason`` says why a parse failed (None when it did not)."""

    choice: str | None
    reason: str | None = None

    @property
    def ok(self) -> bool:
        return self.choice is not None


def parse_verdict(output: str, labels: Sequence[str]) -> ParsedVerdict:
    """Extract the chosen label from a judge output, or say why there is none."""
    if not isinstance(output, str):
        return ParsedVerdict(None, f"output is {type(output).__name__}, not text")
    closes = list(_THINK_CLOSE.finditer(output))
    if closes:
        tail = output[closes[-1].end() :]
    elif _THINK_OPEN.search(output):
        return ParsedVerdict(None, "reasoning not closed: <think> without </think>")
    else:
        tail = output
    bodies = _ANSWER.findall(tail)
    if not bodies:
        return ParsedVerdict(None, "no <answer>...</answer> after the reasoning")
    allowed = {label.upper(): label for label in labels}
    chosen = set()
    for body in bodies:
        match = _LABEL_BODY.match(body)
        if not match:
            return ParsedVerdict(None, f"answer {body.strip()[:40]!r} is not a single label")
        letter = match.group(1).upper()
        if letter not in allowed:
            return ParsedVerdict(None, f"answer {letter!r} is not one of the labels {list(labels)}")
        chosen.add(allowed[letter])
    if len(chosen) > 1:
        return ParsedVerdict(None, f"conflicting answers {sorted(chosen)}")
    return ParsedVerdict(chosen.pop())
