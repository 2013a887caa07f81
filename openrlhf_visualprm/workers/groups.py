"""A scoring request for one prompt group, validated and with its images decoded and hashed.

One group = the image(s) and question of one prompt plus the n responses sampled for it. The
whole group always goes to one worker, so VisualPRM encodes the image + question prefix once and
scores every response on its cache (the shared-prefix path).

Callers hand the pool plain dicts::

    {"images": [path | bytes | "data:..." | PIL.Image, ...],   # or "image": one reference
     "question": "...",
     "responses": ["...", ...]        # or "steps": [["step 1", "step 2"], ...] (no re-splitting)
     "config": {"method": "shared", "aggregation": "mean", "max_steps": None,   # optional:
                "splitter": "\\n\\n", "temperature": 0.1},                        # prm.config.SCORING_FIELDS
     "reference": "..."}              # optional, judge only

``prepare_group`` turns one into a ``ScoreGroup`` or raises ``BadRequestError`` naming the field.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field, replace
from typing import Any

from PIL import Image

from openrlhf_visualprm.errors import ConfigError
from openrlhf_visualprm.images import ImageError, ImageRoots, image_digest, load_image
from openrlhf_visualprm.prm.config import SCORING_FIELDS, PRMConfig
from openrlhf_visualprm.workers.errors import BadRequestError, RequestTooLargeError

PRM_CONFIG_KEYS = set(SCORING_FIELDS)
DEFAULT_PRM_CONFIG = PRMConfig().scoring_options()


@dataclass
class ScoreGroup:
    """One validated group; ``images`` are decoded RGB pictures, ``image_hashes`` their digests."""

    images: list[Image.Image]
    image_hashes: tuple[str, ...]
    question: str
    responses: list[str] | None = None
    steps: list[list[str]] | None = None
    config: dict[str, Any] = field(default_factory=dict)
    reference: str | None = None

    @property
    def n_responses(self) -> int:
        return len(self.responses if self.responses is not None else self.steps or [])

    def unit_texts(self) -> list[str]:
        """The text of each response as the cache sees it (explicit steps joined unambiguously)."""
        if self.responses is not None:
            return list(self.responses)
        return [json.dumps(s, ensure_ascii=False) for s in self.steps or []]

    def subset(self, indices: list[int]) -> ScoreGroup:
        """The same prefix with only the responses at ``indices`` (keeps the shared-prefix path)."""
        if self.responses is not None:
            return replace(self, responses=[self.responses[i] for i in indices])
        return replace(self, steps=[(self.steps or [])[i] for i in indices])

    def config_key(self) -> str:
        return json.dumps(self.config, sort_keys=True, default=str)

    def estimate_tokens(self, image_tokens_per_image: int) -> int:
        """Rough LLM token count of scoring this group on the shared-prefix path (for batching)."""
        texts = self.unit_texts()
        return (
            len(self.images) * image_tokens_per_image
            + len(self.question) // 3
            + sum(len(t) // 3 + 4 for t in texts)
        )


def _string_list(value: Any, what: str) -> list[str]:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise BadRequestError(f"{what} must be a list of strings, got {type(value).__name__}")
    return value


def validate_config(config: Any, kind: str, where: str) -> dict[str, Any]:
    """Every PRM scoring option filled and validated by the one PRM config type, so a typo or an
    option this route cannot honour is refused (400) instead of silently changing the reward."""
    if config is None:
        config = {}
    if not isinstance(config, dict):
        raise BadRequestError(f"{where}.config must be an object, got {type(config).__name__}")
    if kind != "prm":
        return dict(config)
    try:
        return PRMConfig().with_request(config, f"{where}.config").scoring_options()
    except ConfigError as exc:
        raise BadRequestError(str(exc)) from None


def prepare_group(
    raw: Any,
    roots: ImageRoots,
    kind: str = "prm",
    where: str = "groups[0]",
    max_image_bytes: int | None = None,
) -> ScoreGroup:
    """Validate one caller dict, load its images under ``roots`` and hash them."""
    if isinstance(raw, ScoreGroup):
        return raw
    if not isinstance(raw, dict):
        raise BadRequestError(f"{where} must be an object, got {type(raw).__name__}")
    refs = raw.get("images", raw.get("image"))
    if refs is None:
        raise BadRequestError(f"{where} has no image: give 'images' (a list) or 'image'")
    if not isinstance(refs, list):
        refs = [refs]
    if not refs:
        raise BadRequestError(f"{where}.images is empty: a group needs at least one image")
    question = raw.get("question")
    if not isinstance(question, str) or not question.strip():
        raise BadRequestError(f"{where}.question must be a non-empty string")
    responses, steps = raw.get("responses"), raw.get("steps")
    if (responses is None) == (steps is None):
        raise BadRequestError(
            f"{where} needs exactly one of 'responses' (list of strings) or 'steps' (list of lists)"
        )
    if responses is not None:
        responses = _string_list(responses, f"{where}.responses")
        if not responses:
            raise BadRequestError(f"{where}.responses is empty")
    else:
        if not isinstance(steps, list) or not steps:
            raise BadRequestError(f"{where}.steps must be a non-empty list of step lists")
        steps = [_string_list(s, f"{where}.steps[{i}]") for i, s in enumerate(steps)]
    if kind == "judge" and steps is not None:
        raise BadRequestError(f"{where}: the judge scores whole responses; send 'responses', not 'steps'")
    reference = raw.get("reference")
    if reference is not None and not isinstance(reference, str):
        raise BadRequestError(f"{where}.reference must be a string or null")
    limit = max_image_bytes if max_image_bytes is not None else roots.max_bytes
    images = []
    for i, ref in enumerate(refs):
        if isinstance(ref, (bytes, bytearray)) and len(ref) > limit:
            raise RequestTooLargeError(f"{where}.images[{i}] is {len(ref)} bytes, over the limit of {limit}")
        try:
            images.append(load_image(ref, roots))
        except ImageError as exc:
            raise BadRequestError(f"{where}.images[{i}]: {exc}") from exc
    return ScoreGroup(
        images=images,
        image_hashes=tuple(image_digest(im) for im in images),
        question=question,
        responses=responses,
        steps=steps,
        config=validate_config(raw.get("config"), kind, where),
        reference=reference,
    )
