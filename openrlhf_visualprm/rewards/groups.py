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

from openrlhf_visualprm.errors import InputError

# What a component may need from a sample; a broken need neutralises the components needing it.
NEEDS = ("label", "image", "question")


@dataclass
class RewardGroup:
    """The image(s) and question the policy saw, its label, and the n responses sampled for it."""

    question: str
    responses: list[str]
    images: list[Any] = field(default_factory=list)  # loaded PIL images (or refs a component loads)
    label: dict = field(default_factory=dict)
    reference: str | None = None
    broken: dict[str, str] = field(default_factory=dict)  # need -> reason (InputError message)

    @property
    def n(self) -> int:
        return len(self.responses)


def _label_tools():
    # The one label module; imported here only so this package stays importable without it.
    from openrlhf_visualprm.plugin import labels

    return labels


def prepare_group(raw: dict[str, Any], roots: Any = None) -> RewardGroup:
    """One host payload -> a :class:`RewardGroup`; bad samples are recorded, not raised."""
    from openrlhf_visualprm.images import load_image

    lab = _label_tools()
    responses = [str(r) for r in raw["responses"]]
    broken: dict[str, str] = {}
    try:
        label = lab.parse_label(raw.get("label"))
    except ValueError as exc:
        reason = f"label: {exc}"
        return RewardGroup("", responses, broken={need: reason for need in NEEDS})
    images: list[Any] = []
    try:
        images = [load_image(ref, roots) for ref in lab.image_refs(label, raw.get("images"))]
    except (InputError, ValueError) as exc:  # ImageError is a ValueError: a bad sample
        broken["image"] = f"image: {exc}"
        images = []
    question = lab.question_text(label, raw.get("prompt", "") or "")
    if not question:
        broken["question"] = "question: empty (no label['question'] and no text in the prompt)"
    reference = label.get("reference") if isinstance(label.get("reference"), str) else None
    return RewardGroup(question, responses, images, label, reference, broken)


def prepare_groups(raws: Sequence[dict[str, Any]], roots: Any = None) -> list[RewardGroup]:
    return [prepare_group(raw, roots) for raw in raws]
