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

from openrlhf_visualprm.errors import PART_IMAGE, PART_LABEL, PART_QUESTION, PARTS, InputError
from openrlhf_visualprm.labels import Label, decode_label, question_text, require_images


@dataclass
class RewardGroup:
    """The image(s) and question the policy saw, its label, and the n responses sampled for it."""

    question: str
    responses: list[str]
    images: list[Any] = field(default_factory=list)  # loaded PIL images (or refs a component loads)
    label: Label = field(default_factory=Label)
    broken: dict[str, InputError] = field(default_factory=dict)  # part -> the bad-sample error

    @property
    def n(self) -> int:
        return len(self.responses)

    @property
    def reference(self) -> str | None:
        return self.label.reference


def prepare_group(raw: dict[str, Any], roots: Any = None) -> RewardGroup:
    """One host payload -> a :class:`RewardGroup`; bad samples are recorded, not raised.

    ``roots``: an ``ImageRoots`` or folders that image paths must lie under. Only
    :class:`~openrlhf_visualprm.errors.InputError` is recorded; anything else propagates.
    """
    from openrlhf_visualprm.images import ImageRoots, load_image

    if not isinstance(roots, ImageRoots):
        roots = ImageRoots.of(roots or None)
    responses = [str(r) for r in raw["responses"]]
    try:
        label = decode_label(raw.get("label"))
    except InputError as exc:  # nothing of the sample is readable: every part is broken
        return RewardGroup("", responses, broken={part: exc for part in PARTS})
    broken: dict[str, InputError] = {}
    images: list[Any] = []
    try:
        images = [load_image(ref, roots) for ref in require_images(label, raw.get("images"))]
    except InputError as exc:
        broken[exc.part if exc.part != PART_LABEL else PART_IMAGE] = exc
    question = question_text(label, raw.get("prompt", "") or "")
    if not question:
        broken[PART_QUESTION] = InputError(
            "sample has no question: no label['question'] and no text in the prompt",
            PART_QUESTION,
            "no_question",
        )
    return RewardGroup(question, responses, images, label, broken)


def prepare_groups(raws: Sequence[dict[str, Any]], roots: Any = None) -> list[RewardGroup]:
    return [prepare_group(raw, roots) for raw in raws]
