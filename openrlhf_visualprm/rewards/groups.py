"""One prompt group as every host and component sees it, and its one preparation.

Every host (reward actor, pool, HTTP service, ``reward_fns`` file, CLI) hands over plain dicts::

    {"prompt": "...",                      # the chat prompt (the question is taken from it), or
     "question": "...",                    # the question itself
     "label": dict | JSON string | answer, # optional: the label schema of :mod:`labels`
     "images": [ref, ...] | "image": ref,  # else the label's images
     "responses": ["...", ...]             # or "steps": [["step 1", "step 2"], ...] (PRM, no re-splitting)
     "config": {...},                      # optional: PRM scoring options of this request
     "reference": "..."}                   # optional: else the label's (judge schedule "reference")

:func:`prepare_groups` decodes the label and loads each distinct image once per call, under the
image limits when a host sets them (:class:`ImageLimits`: a pool or the HTTP service). A bad
*sample* (:class:`InputError`) is either recorded (``broken``: need -> reason; the runtime gives
the documented neutral reward to exactly the components that need the broken part) or, with
``strict=True``, raised naming the field (a route that must answer 4xx). A malformed payload
(not a dict, responses not a list of strings) always raises: that is the host's bug.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from openrlhf_visualprm.errors import (
    PART_LABEL,
    PART_QUESTION,
    PART_REFERENCE,
    PART_RESPONSE,
    PART_TRUTH,
    PARTS,
    ConfigError,
    InputError,
    RequestTooLargeError,
)
from openrlhf_visualprm.labels import DEFAULT_ANSWER_KEY, Label, decode_label, question_text, require_images

# What a component may need from a sample (errors.PARTS); a broken need neutralises the
# components needing it.
NEEDS = PARTS
DEFAULT_MAX_IMAGES_PER_GROUP = 8
DEFAULT_MAX_GROUP_PIXELS = 64_000_000  # = the per-image limit: a group may hold one maximal image
DEFAULT_MAX_REQUEST_PIXELS = 128_000_000


@dataclass
class RewardGroup:
    """The image(s) and question the policy saw, its label, and the n responses sampled for it.

    ``steps``: explicit step lists instead of responses (the PRM scores them without splitting);
    ``options``: this request's PRM scoring options ({}: the host's); ``image_hashes``: content
    digests of the images (cache keys).
    """

    question: str
    responses: list[str]
    images: list[Any] = field(default_factory=list)  # loaded PIL images
    label: Label = field(default_factory=Label)
    reference: str | None = None
    broken: dict[str, str] = field(default_factory=dict)  # need -> "reason: message"
    steps: list[list[str]] | None = None
    options: dict[str, Any] = field(default_factory=dict)
    image_hashes: tuple[str, ...] = ()

    @property
    def n(self) -> int:
        return len(self.steps) if self.steps is not None else len(self.responses)

    def unit_texts(self) -> list[str]:
        """Each response as one string (explicit steps joined unambiguously): cache keys."""
        if self.steps is not None:
            return [json.dumps(s, ensure_ascii=False) for s in self.steps]
        return list(self.responses)

    def subset(self, indices: list[int]) -> RewardGroup:
        """The same prefix with only the responses at ``indices`` (keeps the shared-prefix path)."""
        if self.steps is not None:
            return replace(self, steps=[self.steps[i] for i in indices])
        return replace(self, responses=[self.responses[i] for i in indices])


@dataclass(frozen=True)
class ImageLimits:
    """Bounds on what one call may make a host decode and ship (a 413 on the service).

    Pixels are counted per image reference (naming one picture four times costs four times), the
    decoding is not: a distinct image is decoded and hashed once per call. ``shrink_tiles``: PRM
    images are shrunk to what InternVL tiling with that many tiles reads (exact, smaller to ship).
    """

    max_images_per_group: int = DEFAULT_MAX_IMAGES_PER_GROUP
    max_group_pixels: int = DEFAULT_MAX_GROUP_PIXELS
    max_request_pixels: int = DEFAULT_MAX_REQUEST_PIXELS
    shrink_tiles: int | None = None


class _Images:
    """Decode-once memo and pixel accounting for the images of one call."""

    def __init__(self, roots: Any, limits: ImageLimits | None) -> None:
        self.roots, self.limits = roots, limits
        self._seen: dict[Any, tuple[Any, str, int]] = {}
        self.request_pixels = 0

    def _key(self, ref: Any) -> Any:
        from openrlhf_visualprm.images import image_ref_kind

        if isinstance(ref, (bytes, bytearray)):
            return ("bytes", hashlib.sha256(ref).hexdigest())
        if isinstance(ref, str) and image_ref_kind(ref) == "path":
            try:  # the same file under two spellings is one image
                return ("path", str(self.roots.resolve(ref)))
            except InputError:  # refused: loading it reports why
                return ("path", ref)
        if isinstance(ref, str):
            return ("text", hashlib.sha256(ref.encode("utf-8", "surrogatepass")).hexdigest())
        return ("object", id(ref))

    def load(self, ref: Any) -> tuple[Any, str, int]:
        """(image as shipped, content hash of the original, decoded pixels of the original)."""
        from openrlhf_visualprm.images import image_digest, load_image, shrink_for_tiling

        key = self._key(ref)
        if key not in self._seen:
            image = load_image(ref, self.roots)
            digest, pixels = image_digest(image), image.width * image.height
            if self.limits is not None and self.limits.shrink_tiles:
                image = shrink_for_tiling(image, self.limits.shrink_tiles)
            self._seen[key] = (image, digest, pixels)
        return self._seen[key]

    def group(self, refs: list, where: str) -> tuple[list[Any], tuple[str, ...]]:
        limits = self.limits
        if limits is not None and len(refs) > limits.max_images_per_group:
            raise RequestTooLargeError(
                f"{where}.images has {len(refs)} images, over the limit of {limits.max_images_per_group} per "
                "group (--max-images-per-group)"
            )
        images, hashes, group_pixels = [], [], 0
        for i, ref in enumerate(refs):
            at = f"{where}.images[{i}]"
            try:
                image, digest, pixels = self.load(ref)
            except InputError as exc:
                raise type(exc)(f"{at}: {exc}", exc.part, exc.reason) from None
            if limits is not None:
                group_pixels += pixels
                self.request_pixels += pixels
                if group_pixels > limits.max_group_pixels:
                    raise RequestTooLargeError(
                        f"{at} brings the group to {group_pixels} decoded pixels, over the limit of "
                        f"{limits.max_group_pixels} per group (--max-group-pixels)"
                    )
                if self.request_pixels > limits.max_request_pixels:
                    raise RequestTooLargeError(
                        f"{at} brings the request to {self.request_pixels} decoded pixels, over the limit of "
                        f"{limits.max_request_pixels} per request (--max-request-pixels): send fewer or "
                        "smaller images per request"
                    )
            images.append(image)
            hashes.append(digest)
        return images, tuple(hashes)


def _utf8(text: str, what: str, part: str) -> str:
    """A lone surrogate (valid JSON, ``"\\ud800"``) has no UTF-8 form: tokenizers fail on it."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise InputError(
            f"{what} is not valid Unicode text ({exc.reason} at {exc.start})", part, "bad_text"
        ) from None
    return text


def _texts(value: Any, what: str) -> list[str]:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise InputError(f"{what} must be a list of strings, got {type(value).__name__}", PART_RESPONSE)
    return value


def request_options(config: Any, kind: str | None, where: str) -> dict[str, Any]:
    """A request's ``config`` as validated PRM scoring options ({} when absent). A judge takes none:
    its options are fixed when it is loaded, so any key would be silently ignored (refused)."""
    if config is None or config == {}:
        return {}
    if not isinstance(config, dict):
        raise InputError(f"{where} must be an object, got {type(config).__name__}", PART_LABEL, "bad_config")
    if kind == "judge":
        raise InputError(
            f"{where} has keys {sorted(config)}, but a judge takes no per-request options: schedule, rounds and "
            "the rest are fixed when the judge is loaded (serve --kind judge --schedule ...); drop the config",
            PART_LABEL,
            "bad_config",
        )
    from openrlhf_visualprm.prm.config import PRMConfig

    try:
        return PRMConfig().with_request(config, where).scoring_options()
    except ConfigError as exc:
        raise InputError(str(exc), PART_LABEL, "bad_config") from None


def _shape(raw: Any, kind: str | None, where: str) -> tuple[list[str], list[list[str]] | None]:
    """The responses (or step lists) of one payload; a malformed payload raises."""
    if not isinstance(raw, dict):
        raise InputError(f"{where} must be an object, got {type(raw).__name__}", PART_RESPONSE)
    responses, steps = raw.get("responses"), raw.get("steps")
    if (responses is None) == (steps is None):
        raise InputError(
            f"{where} needs exactly one of 'responses' (list of strings) or 'steps' (list of lists)",
            PART_RESPONSE,
        )
    if steps is None:
        responses = _texts(responses, f"{where}.responses")
        if not responses:
            raise InputError(f"{where}.responses is empty", PART_RESPONSE)
        return responses, None
    if kind == "judge":
        raise InputError(
            f"{where}: the judge scores whole responses; send 'responses', not 'steps'", PART_RESPONSE
        )
    if not isinstance(steps, list) or not steps:
        raise InputError(f"{where}.steps must be a non-empty list of step lists", PART_RESPONSE)
    return [], [_texts(s, f"{where}.steps[{i}]") for i, s in enumerate(steps)]


def prepare_group(
    raw: dict[str, Any],
    roots: Any = None,
    answer_key: str = DEFAULT_ANSWER_KEY,
    load_images: bool = True,
    *,
    kind: str | None = None,
    strict: bool = False,
    where: str = "groups[0]",
    images_of: _Images | None = None,
) -> RewardGroup:
    """One host payload -> a :class:`RewardGroup`; see the module docstring.

    ``kind`` (``prm`` / ``judge`` / None: any) decides which request options are accepted and
    whether the question's image placeholders are checked (PRM)."""
    from openrlhf_visualprm.images import ImageRoots

    if not isinstance(roots, ImageRoots):  # folders image paths must lie under
        roots = ImageRoots.of(roots or None)
    images_of = images_of or _Images(roots, None)
    responses, steps = _shape(raw, kind, where)
    broken: dict[str, str] = {}

    def bad(exc: InputError) -> None:
        if strict:
            raise exc
        broken.setdefault(exc.part, f"{exc.reason}: {exc}")

    texts = [(f"{where}.responses[{i}]", r) for i, r in enumerate(responses)] + [
        (f"{where}.steps[{i}][{j}]", t) for i, s in enumerate(steps or []) for j, t in enumerate(s)
    ]
    for what, text in texts:
        try:
            _utf8(text, what, PART_RESPONSE)
        except InputError as exc:
            bad(exc)
            break
    try:
        label = decode_label(raw.get("label"), f"{where}.label")
    except InputError as exc:
        bad(exc)
        return RewardGroup(
            "", responses, steps=steps, broken={need: f"{exc.reason}: {exc}" for need in NEEDS}
        )
    images: list[Any] = []
    hashes: tuple[str, ...] = ()
    if load_images:
        try:
            images, hashes = images_of.group(
                require_images(label, raw.get("images", raw.get("image"))), where
            )
        except InputError as exc:
            bad(exc)
            images = []
    question = raw.get("question")
    if question is not None and (not isinstance(question, str) or not question.strip()):
        bad(InputError(f"{where}.question must be a non-empty string", PART_QUESTION, "no_question"))
        question = ""
    question = question or question_text(label, raw.get("prompt", "") or "")
    try:
        _utf8(question, f"{where}.question", PART_QUESTION)
    except InputError as exc:
        bad(exc)
        question = ""
    if not question:
        bad(
            InputError(
                f"{where}: empty question (no label['question'] and no text in the prompt)",
                PART_QUESTION,
                "no_question",
            )
        )
    elif kind == "prm" and images:
        from openrlhf_visualprm.prm.template import format_question

        try:
            format_question(question, len(images))
        except InputError as exc:  # placeholder count against the images (reason image_placeholders)
            bad(InputError(f"{where}.question: {exc}", PART_QUESTION, exc.reason))
    reference = raw.get("reference", label.reference)
    if reference is not None and not isinstance(reference, str):
        bad(InputError(f"{where}.reference must be a string or null", PART_REFERENCE, "no_reference"))
        reference = None
    options: dict[str, Any] = {}
    try:
        options = request_options(raw.get("config", label.config), kind, f"{where}.config")
    except InputError as exc:
        bad(exc)
    if label.truth(answer_key) is None:  # recorded only: a component that needs it is neutral
        broken[PART_TRUTH] = f"no_truth: label has no ground truth under {answer_key!r}"
    if not reference:
        broken[PART_REFERENCE] = (
            'no_reference: label has no "reference" response, which the judge schedule "reference" compares against'
        )
    return RewardGroup(question, responses, images, label, reference or None, broken, steps, options, hashes)


def prepare_groups(
    raws: Sequence[dict[str, Any]],
    roots: Any = None,
    answer_key: str = DEFAULT_ANSWER_KEY,
    load_images: bool = True,
    *,
    kind: str | None = None,
    strict: bool = False,
    limits: ImageLimits | None = None,
) -> list[RewardGroup]:
    """:func:`prepare_group` over one call: one decode-once memo and one pixel budget for all."""
    from openrlhf_visualprm.images import ImageRoots

    if not isinstance(raws, (list, tuple)):
        raise InputError(f"groups must be a list, got {type(raws).__name__}", PART_RESPONSE)
    if not isinstance(roots, ImageRoots):
        roots = ImageRoots.of(roots or None)
    images_of = _Images(roots, limits)
    return [
        prepare_group(
            raw,
            roots,
            answer_key,
            load_images,
            kind=kind,
            strict=strict,
            where=f"groups[{i}]",
            images_of=images_of,
        )
        for i, raw in enumerate(raws)
    ]
