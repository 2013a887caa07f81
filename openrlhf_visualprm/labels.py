"""The sample as every route reads it: the label schema, its one decoder, the question and the
response. The reward actor, ``reward_fns/``, the HTTP service and the data tools all call this
module, so one sample gets one reward whichever route brings it (torch-free, bottom layer).

The label schema (``--data.label_key``'s column; OpenRLHF passes it through untouched)::

    {"answer": "12",                   # ground truth for the outcome reward (key: --reward.outcome.answer_key)
     "images": ["geo/0001.png"],       # or "image": one reference. Paths lie under the image roots;
                                       # data: URIs and bare base64 work; http(s) URLs are refused
     "question": "Find the area ...",  # the raw question (else taken from the prompt's last user turn)
     "reference": "...",               # optional reference response (judge schedule "reference")
     "choices": ["circle", "square"],  # multiple choice: option (A), (B), ... texts; the answer is
                                       # one of them or its letter, and both verify
     "config": {...}}                  # optional PRM scoring options for this sample (every route;
                                       # a judge takes none: refused, a bad sample)

Decoding rules, the same everywhere:

- a dict is the label; ``None`` or an empty string is an empty label;
- a string whose first non-blank character is ``{`` must be a JSON object, else it is an
  :class:`~openrlhf_visualprm.errors.InputError` (``'{bad json'`` is a broken label, never an
  answer: a typo in a JSON column must not silently become a ground truth);
- any other string, and a number, is the answer alone (``'12'`` -> ``{"answer": "12"}``);
- anything else (a list, a bool) is an InputError.

A sample without an image: the image-reading components (VisualPRM, the judge) get an
:class:`InputError` (part ``image``, reason ``no_image``) and so the neutral reward, counted in
``reward/failed_group``; the outcome check still scores it. VisualPRM is an image+text reward
model: scoring a response without the picture it reasons about is not its reward.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from openrlhf_visualprm.errors import (
    PART_IMAGE,
    PART_LABEL,
    PART_RESPONSE,
    InputError,
)

DEFAULT_ANSWER_KEY = "answer"


@dataclass(frozen=True)
class Label:
    """A decoded label. ``raw`` keeps every key (the answer key is configurable)."""

    raw: Mapping[str, Any] = field(default_factory=dict)
    images: tuple = ()
    question: str | None = None
    reference: str | None = None
    config: Mapping[str, Any] | None = None
    choices: tuple[str, ...] | None = None

    def truth(self, key: str = DEFAULT_ANSWER_KEY) -> str | None:
        """The ground truth under ``key`` as text; None when absent or blank."""
        value = self.raw.get(key)
        if value is None or isinstance(value, (dict, list, bool)):
            return None
        text = str(value).strip()
        return text or None


def _optional_text(data: Mapping, key: str, where: str) -> str | None:
    value = data.get(key)
    if value is None:
        return None
    if not isinstance(value, str):
        raise InputError(
            f"{where}.{key} must be a string, got {type(value).__name__}", PART_LABEL, "bad_label"
        )
    return value.strip() or None


def parse_choices(value: Any, where: str = "label") -> tuple[str, ...] | None:
    """A multiple-choice item's options (``choices``: texts of option (A), (B), ...), the one parser
    for labels and evaluator records. None or an empty list: not multiple choice."""
    if value is None or (isinstance(value, (list, tuple)) and not value):
        return None
    if not isinstance(value, (list, tuple)) or not all(
        isinstance(c, (str, int, float)) and not isinstance(c, bool) for c in value
    ):
        raise InputError(
            f"{where}.choices must be a list of option texts (strings or numbers), got {value!r:.80}",
            PART_LABEL,
            "bad_label",
        )
    if len(value) > 26:
        raise InputError(
            f"{where}.choices has {len(value)} options; options are lettered A-Z (at most 26)",
            PART_LABEL,
            "bad_label",
        )
    return tuple(str(c).strip() for c in value)


def decode_label(value: Any, where: str = "label") -> Label:
    """The one label decoder (rules in the module docstring); raises :class:`InputError`."""
    if isinstance(value, Label):
        return value
    if value is None:
        return Label()
    if isinstance(value, bool):
        raise InputError(f"{where} must be a dict, a JSON object string or an answer, got a bool", PART_LABEL)
    if isinstance(value, (int, float)):
        return Label(raw={DEFAULT_ANSWER_KEY: str(value)})
    if isinstance(value, str):
        text = value.strip()
        if not text:
            return Label()
        if not text.startswith("{"):
            return Label(raw={DEFAULT_ANSWER_KEY: text})
        try:
            value = json.loads(text)
        except json.JSONDecodeError as exc:
            raise InputError(
                f"{where} starts with '{{' but is not valid JSON ({exc.msg} at char {exc.pos}): {text[:80]!r}. "
                "Fix the label column (a plain answer must not start with '{')",
                PART_LABEL,
                "bad_label_json",
            ) from None
        if not isinstance(value, dict):  # pragma: no cover - '{...' parses only to a dict
            raise InputError(f"{where} must be a JSON object", PART_LABEL, "bad_label")
    if not isinstance(value, Mapping):
        raise InputError(
            f"{where} must be a dict, a JSON object string or an answer string, got {type(value).__name__}",
            PART_LABEL,
            "bad_label",
        )
    refs = value.get("images", value.get("image"))
    if refs is None or refs == "":
        images: tuple = ()
    elif isinstance(refs, (list, tuple)):
        images = tuple(refs)
    else:
        images = (refs,)
    config = value.get("config")
    if config is not None and not isinstance(config, Mapping):
        raise InputError(
            f"{where}.config must be an object, got {type(config).__name__}", PART_LABEL, "bad_label"
        )
    return Label(
        raw=dict(value),
        images=images,
        question=_optional_text(value, "question", where),
        reference=_optional_text(value, "reference", where),
        config=dict(config) if config is not None else None,
        choices=parse_choices(value.get("choices"), where),
    )


def image_refs(label: Label, sample_images: Any = None) -> list:
    """The sample's images: its own (``--data.image_key``, what the policy saw) first, else the
    label's. May be empty; :func:`require_images` is the check image-reading components use."""
    if sample_images is not None and not (
        isinstance(sample_images, (list, tuple, str)) and not sample_images
    ):
        return list(sample_images) if isinstance(sample_images, (list, tuple)) else [sample_images]
    return list(label.images)


def require_images(label: Label, sample_images: Any = None) -> list:
    refs = image_refs(label, sample_images)
    if not refs:
        raise InputError(
            'sample has no image: set --data.image_key, or add "images": [path, ...] (or "image") to the label',
            PART_IMAGE,
            "no_image",
        )
    return refs


# ----------------------------------------------------------------------------- chat text
# Image placeholders as a processor expands them in OpenRLHF's query (the prompt string has one
# placeholder; the query, decoded from the processor's ids, has one token per visual token).
_EXPANDED_IMAGE = (
    re.compile(r"<img>(?:<IMG_CONTEXT>)+</img>"),  # InternVL: <IMG_CONTEXT> -> <img><IMG_CONTEXT>*N</img>
    re.compile(r"\n\n<start_of_image>(?:<image_soft_token>)+<end_of_image>\n\n"),  # Gemma 3
)
_EXPANDED_TO = ("<IMG_CONTEXT>", "<start_of_image>")
_TOKEN_RUN = re.compile(r"(<\|image_pad\|>|<\|video_pad\|>|<IMG_CONTEXT>|<image_soft_token>|<image>)(?:\1)+")

# Tokens a chat template leaves after the response; stripped before scoring.
TRAILING_SPECIALS = ("<|im_end|>", "<|endoftext|>", "</s>", "<|eot_id|>", "<|end|>", "<end_of_turn>", "<eos>")

_USER_TURNS = (
    re.compile(r"<\|im_start\|>user\n(?P<text>.*?)(?:<\|im_end\|>|$)", re.DOTALL),  # ChatML (Qwen, InternVL)
    re.compile(r"<\|start_header_id\|>user<\|end_header_id\|>\n\n(?P<text>.*?)(?:<\|eot_id\|>|$)", re.DOTALL),
    re.compile(r"<start_of_turn>user\n(?P<text>.*?)(?:<end_of_turn>|$)", re.DOTALL),  # Gemma
)
_MARKERS = re.compile(
    r"<img>(?:<IMG_CONTEXT>)*</img>|<\|[^|>]{1,40}\|>|<image>|<IMG_CONTEXT>|<start_of_image>|"
    r"<image_soft_token>|<end_of_image>"
)


def normalize_placeholders(text: str) -> str:
    """Collapse every processor-expanded image into the prompt's single placeholder form."""
    for pattern, to in zip(_EXPANDED_IMAGE, _EXPANDED_TO):
        text = pattern.sub(to, text)
    return _TOKEN_RUN.sub(r"\1", text)


def question_text(label: Label, prompt: str) -> str:
    """The raw question: ``label.question``, else the last user turn of the chat-templated prompt
    (ChatML, Llama 3, Gemma), else the prompt; template markers and image tokens removed."""
    if label.question:
        return label.question
    prompt = prompt or ""
    for pattern in _USER_TURNS:
        turns = pattern.findall(prompt)
        if turns:
            return _MARKERS.sub("", turns[-1]).strip()
    return _MARKERS.sub("", prompt).strip()


def strip_trailing_specials(response: str) -> str:
    changed = True
    while changed:
        changed = False
        response = response.rstrip()
        for tok in TRAILING_SPECIALS:
            if response.endswith(tok):
                response = response[: -len(tok)]
                changed = True
    return response.strip()


def extract_response(query: str, prompt: str, where: str = "query") -> str:
    """The response in OpenRLHF's ``query`` (the prompt ids + response ids decoded with special
    tokens kept). With a VLM processor the query's prompt part has every image placeholder
    expanded into many tokens, so both sides are compared with placeholders collapsed
    (:func:`normalize_placeholders`); the response itself is untouched."""
    if not isinstance(query, str) or not isinstance(prompt, str):
        raise InputError(f"{where}: query and prompt must be strings", PART_RESPONSE, "bad_query")
    if query.startswith(prompt):
        return strip_trailing_specials(query[len(prompt) :])
    norm_query, norm_prompt = normalize_placeholders(query), normalize_placeholders(prompt)
    if norm_query.startswith(norm_prompt):
        return strip_trailing_specials(norm_query[len(norm_prompt) :])
    if norm_prompt.strip() and norm_prompt.strip() in norm_query:  # e.g. a BOS token decoded in front
        start = norm_query.index(norm_prompt.strip()) + len(norm_prompt.strip())
        return strip_trailing_specials(norm_query[start:])
    raise InputError(
        f"{where}: the query does not contain its prompt (even with image placeholders collapsed), so the "
        f"response cannot be separated; prompt starts {prompt[:60]!r}, query starts {query[:60]!r}. Send "
        "query = prompt + response as OpenRLHF does",
        PART_RESPONSE,
        "query_without_prompt",
    )
