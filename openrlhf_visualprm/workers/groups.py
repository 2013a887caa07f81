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

``prepare_group`` turns one into a ``ScoreGroup`` or raises ``BadRequestError`` naming the field;
``prepare_groups`` does a whole request under its image limits (:class:`ImageLimits`): each
distinct image is decoded once, the decoded pixels of a group and of the request are bounded,
and PRM images travel to the workers at the size tiling reads (``images.shrink_for_tiling``),
not as full-size RGB.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field, replace
from typing import Any

from PIL import Image

from openrlhf_visualprm.errors import ConfigError, InputError
from openrlhf_visualprm.images import (
    DEFAULT_MAX_TILES,
    ImageError,
    ImageRoots,
    image_digest,
    load_image,
    shrink_for_tiling,
)
from openrlhf_visualprm.prm.config import PRMConfig
from openrlhf_visualprm.workers.errors import BadRequestError, RequestTooLargeError

DEFAULT_MAX_IMAGES_PER_GROUP = 8
DEFAULT_MAX_GROUP_PIXELS = 64_000_000  # = the per-image limit: a group may hold one maximal image
DEFAULT_MAX_REQUEST_PIXELS = 128_000_000


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


@dataclass(frozen=True)
class ImageLimits:
    """Bounds on what one request may make the service decode and ship (413 past them).

    Pixels are counted per image reference (naming one picture four times costs four times), the
    decoding is not: a distinct image is decoded and hashed once per request.
    """

    max_images_per_group: int = DEFAULT_MAX_IMAGES_PER_GROUP
    max_group_pixels: int = DEFAULT_MAX_GROUP_PIXELS
    max_request_pixels: int = DEFAULT_MAX_REQUEST_PIXELS
    max_tiles: int = DEFAULT_MAX_TILES  # PRM tiling: images are shrunk to what it reads


class RequestImages:
    """Decode-once memo and pixel accounting for the images of one request."""

    def __init__(self, roots: ImageRoots, limits: ImageLimits, kind: str) -> None:
        self.roots, self.limits, self.kind = roots, limits, kind
        self._seen: dict[Any, tuple[Image.Image, str, int]] = {}
        self.request_pixels = 0
        self.decoded = 0

    def _key(self, ref: Any) -> Any:
        if isinstance(ref, (bytes, bytearray)):
            return ("bytes", hashlib.sha256(ref).hexdigest())
        if isinstance(ref, str) and not ref.startswith("data:"):
            return ("path", str(self.roots.resolve(ref)))  # the same file under two spellings
        if isinstance(ref, str):
            return ("data", hashlib.sha256(ref.encode()).hexdigest())
        return ("object", id(ref))

    def load(self, ref: Any) -> tuple[Image.Image, str, int]:
        """(image as shipped, content hash of the original, decoded pixels of the original)."""
        key = self._key(ref)
        if key not in self._seen:
            image = load_image(ref, self.roots)
            self.decoded += 1
            digest, pixels = image_digest(image), image.width * image.height
            if self.kind == "prm":
                image = shrink_for_tiling(image, self.limits.max_tiles)
            self._seen[key] = (image, digest, pixels)
        return self._seen[key]

    def charge(self, pixels: int, where: str) -> None:
        self.request_pixels += pixels
        if self.request_pixels > self.limits.max_request_pixels:
            raise RequestTooLargeError(
                f"{where} brings the request to {self.request_pixels} decoded pixels, over the limit of "
                f"{self.limits.max_request_pixels} per request (--max-request-pixels): send fewer or "
                "smaller images per request"
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
    images_of: RequestImages | None = None,
) -> ScoreGroup:
    """Validate one caller dict, load its images under ``roots`` and hash them.

    ``images_of`` carries the request's decode-once memo and limits (default: a fresh one with
    the default :class:`ImageLimits`)."""
    if isinstance(raw, ScoreGroup):
        return raw
    images_of = images_of or RequestImages(roots, ImageLimits(), kind)
    if not isinstance(raw, dict):
        raise BadRequestError(f"{where} must be an object, got {type(raw).__name__}")
    refs = raw.get("images", raw.get("image"))
    if refs is None:
        raise BadRequestError(f"{where} has no image: give 'images' (a list) or 'image'")
    if not isinstance(refs, list):
        refs = [refs]
    if not refs:
        raise BadRequestError(f"{where}.images is empty: a group needs at least one image")
    if len(refs) > images_of.limits.max_images_per_group:
        raise RequestTooLargeError(
            f"{where}.images has {len(refs)} images, over the limit of "
            f"{images_of.limits.max_images_per_group} per group (--max-images-per-group)"
        )
    question = raw.get("question")
    if not isinstance(question, str) or not question.strip():
        raise BadRequestError(f"{where}.question must be a non-empty string")
    if kind == "prm":
        from openrlhf_visualprm.prm.template import format_question

        try:
            format_question(question, len(refs))
        except InputError as exc:
            raise BadRequestError(f"{where}.question: {exc}", exc.part, exc.reason) from None
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
    images, hashes, group_pixels = [], [], 0
    for i, ref in enumerate(refs):
        if isinstance(ref, (bytes, bytearray)) and len(ref) > limit:
            raise RequestTooLargeError(f"{where}.images[{i}] is {len(ref)} bytes, over the limit of {limit}")
        try:
            image, digest, pixels = images_of.load(ref)
        except ImageError as exc:
            raise BadRequestError(f"{where}.images[{i}]: {exc}") from exc
        group_pixels += pixels
        if group_pixels > images_of.limits.max_group_pixels:
            raise RequestTooLargeError(
                f"{where}.images[{i}] brings the group to {group_pixels} decoded pixels, over the limit of "
                f"{images_of.limits.max_group_pixels} per group (--max-group-pixels)"
            )
        images_of.charge(pixels, f"{where}.images[{i}]")
        images.append(image)
        hashes.append(digest)
    return ScoreGroup(
        images=images,
        image_hashes=tuple(hashes),
        question=question,
        responses=responses,
        steps=steps,
        config=validate_config(raw.get("config"), kind, where),
        reference=reference,
    )


def prepare_groups(
    raws: list[Any],
    roots: ImageRoots,
    kind: str = "prm",
    max_image_bytes: int | None = None,
    limits: ImageLimits | None = None,
) -> list[ScoreGroup]:
    """``prepare_group`` over one request: one decode-once memo and pixel budget for all groups."""
    if not isinstance(raws, list):
        raise BadRequestError(f"groups must be a list, got {type(raws).__name__}")
    images_of = RequestImages(roots, limits or ImageLimits(), kind)
    return [
        prepare_group(g, roots, kind, f"groups[{i}]", max_image_bytes, images_of) for i, g in enumerate(raws)
    ]
