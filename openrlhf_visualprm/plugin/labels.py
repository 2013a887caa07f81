"""The dataset label column as the reward side reads it.

OpenRLHF passes ``--data.label_key``'s value through untouched (a dict from JSON datasets, or a
string). The plugin's label format, shared with the reward service and ``reward_fns/``::

    {"answer": "12",                      # ground truth for the outcome reward (key configurable)
     "images": ["geo/0001.png"],          # or "image": one reference; paths lie under image roots
     "question": "Find the area ...",     # the raw question (else taken from the prompt)
     "reference": "..."}                  # optional reference response (judge schedule "reference")

A JSON string of that object works too. A plain non-JSON string is taken as the answer alone.
"""

from __future__ import annotations

import json
import re
from typing import Any

_CHATML_USER = re.compile(r"<\|im_start\|>user\n(?P<text>.*?)(?:<\|im_end\|>|$)", re.DOTALL)
_SPECIAL = re.compile(r"<\|[^|>]{1,40}\|>|<image>")


def parse_label(label: Any) -> dict:
    """The label as a dict (see the module docstring); ``{}`` for an empty label."""
    if isinstance(label, dict):
        return label
    if label is None:
        return {}
    if isinstance(label, str):
        text = label.strip()
        if not text:
            return {}
        if text.startswith("{"):
            try:
                value = json.loads(text)
            except json.JSONDecodeError as exc:
                raise ValueError(
                    f"label looks like JSON but does not parse ({exc.msg}): {text[:80]!r}"
                ) from None
            if isinstance(value, dict):
                return value
        return {"answer": text}
    if isinstance(label, (int, float)):
        return {"answer": str(label)}
    raise ValueError(f"label must be a dict, a JSON string or an answer string, got {type(label).__name__}")


def image_refs(label: dict, sample_images: Any = None) -> list:
    """Images for the reward: the sample's own (``--data.image_key``) first, else the label's."""
    refs = sample_images if sample_images not in (None, [], "") else label.get("images", label.get("image"))
    if refs is None:
        return []
    return list(refs) if isinstance(refs, (list, tuple)) else [refs]


def question_text(label: dict, prompt: str) -> str:
    """The raw question: ``label["question"]``, else the last user turn of a ChatML prompt, else
    the prompt with template markers (``<|...|>``, ``<image>``) removed."""
    question = label.get("question")
    if isinstance(question, str) and question.strip():
        return question.strip()
    turns = _CHATML_USER.findall(prompt or "")
    text = turns[-1] if turns else (prompt or "")
    return _SPECIAL.sub("", text).strip()


def ground_truth(label: dict, key: str = "answer") -> str | None:
    value = label.get(key)
    if value is None:
        return None
    text = str(value).strip()
    return text or None
