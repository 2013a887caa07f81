"""One prompt group as every reward component sees it, and its preparation from host payloads.

A host (reward actor, pool worker, ``reward_fns`` file, CLI) hands over plain dicts::

    {"prompt": "...", "label": dict | JSON string | answer string, "images": [...] | None,
     "responses": ["...", ...]}

``prepare_groups`` decodes the label and loads the images once per group. A bad *sample* does
not raise: the group records which inputs broke (``broken``: need -> reason) and the runtime
gives the documented neutral reward to exactly the components that need them (the outcome
check needs no image, so an unreadable image leaves it scoring). Any other exception propagates.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from openrlhf_visualprm.errors import PART_QUESTION, PART_REFERENCE, PART_TRUTH, PARTS, InputError
from openrlhf_visualprm.labels import DEFAULT_ANSWER_KEY, Label, decode_label, question_text, require_images

# What a component may need from a sample (errors.PARTS); a broken need neutralises the
# components needing it.
NEEDS = PARTS


@dataclass
class RewardGroup:
    """The image(s) and question the policy saw, its label, and the n responses sampled for it."""

    question: str
    responses: list[str]
    images: list[Any] = field(default_factory=list)  # loaded PIL images (or refs a component loads)
    label: Label = field(default_factory=Label)
    reference: str | None = None
    broken: dict[str, str] = field(default_factory=dict)  # need -> "reason: message"
    truth: str | None = None  # the ground truth under the outcome's answer key

    @property
    def n(self) -> int:
        return len(self.responses)


def _broken(exc: InputError) -> str:
    return f"{exc.reason}: {exc}"


def prepare_group(
    raw: dict[str, Any], roots: Any = None, answer_key: str = DEFAULT_ANSWER_KEY, load_images: bool = True
) -> RewardGroup:
    """One host payload -> a :class:`RewardGroup`; bad samples (:class:`InputError` only) are
    recorded, not raised. Any other error (a bug, a config problem) propagates."""
    from openrlhf_visualprm.images import ImageRoots, load_image

    if not isinstance(roots, ImageRoots):  # folders image paths must lie under
        roots = ImageRoots.of(roots or None)
    responses = [str(r) for r in raw["responses"]]
    try:
        label = decode_label(raw.get("label"))
    except InputError as exc:
        return RewardGroup("", responses, broken={need: _broken(exc) for need in NEEDS})
    broken: dict[str, str] = {}
    images: list[Any] = []
    if load_images:
        try:
            images = [load_image(ref, roots) for ref in require_images(label, raw.get("images"))]
        except InputError as exc:
            broken[exc.part] = _broken(exc)
            images = []
    question = question_text(label, raw.get("prompt", "") or "")
    if not question:
        broken[PART_QUESTION] = "no_question: empty (no label['question'] and no text in the prompt)"
    truth = label.truth(answer_key)
    if truth is None:
        broken[PART_TRUTH] = f"no_truth: label has no ground truth under {answer_key!r}"
    if label.reference is None:
        broken[PART_REFERENCE] = (
            'no_reference: label has no "reference" response, which the judge schedule "reference" compares against'
        )
    return RewardGroup(question, responses, images, label, label.reference, broken, truth)


def prepare_groups(
    raws: Sequence[dict[str, Any]],
    roots: Any = None,
    answer_key: str = DEFAULT_ANSWER_KEY,
    load_images: bool = True,
) -> list[RewardGroup]:
    return [prepare_group(raw, roots, answer_key, load_images) for raw in raws]
