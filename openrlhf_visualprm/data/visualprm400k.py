"""VisualPRM400K in, stepwise (TRL-style) and InternVL conversation formats out.

Inputs, field names as released:

- **v1** (``<source>_prm.jsonl``): ``{"id", "image": path | [paths], "conversations": [{"from":
  "system"|"human"|"gpt", "value"}...]}``. Human turns are steps (the first carries the
  ``### Question:`` / ``### Solution Process:`` headers), each followed by a gpt turn ``+``/``-``.
  The public pipeline (``item2conv_prm``) writes the first turn as
  ``### Question:\n<image>\n{question}\n\n### Solution Process:\n{step}``: the image tag sits
  *inside* the question. The reader strips image tags there (and before the header, an older
  layout), so ``question`` is plain text; the writer puts them back once, where the pipeline does.
- **v1.1-Raw**: ``{"image", "question", "answer", "response", "steps_with_score": [{"step",
  "score", "num_mc_correct", "num_mc_total"}], "num_mc_sequences"}``. The Monte-Carlo value of a
  step is ``num_mc_correct / num_mc_total``; its label is ``+`` iff that value is above the
  threshold (default 0, the paper's choice). ``num_mc_total == 0`` means the step was never
  estimated (the pipeline stops after a failing prefix): such a step is **never** labelled
  ``-``. With ``unestimated="drop"`` the response is cut before its first unestimated step
  (a prefix keeps valid labels, because a step's value only depends on its prefix); with
  ``"mask"`` the step is kept with label ``None`` (stepwise output only: the conversation
  format cannot hold a label-less step, so it is cut there as with ``drop``).

Outputs:

- **stepwise**: ``{"id", "images", "prompt", "completions": [step...], "labels": [bool|None...]}``
  (TRL's stepwise-supervision layout plus ``images``), optional ``"soft_labels"`` (MC values).
- **internvl**: ``{"id", "image", "conversations"}`` in the v1 layout (trainable with InternVL's
  code, and readable back by :func:`read_v1`).
"""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass, field

QUESTION_HEADER = "### Question:\n"
SOLUTION_HEADER = "\n\n### Solution Process:\n"
UNESTIMATED_CHOICES = ("drop", "mask")


@dataclass
class StepRecord:
    """One response with its steps and step labels (``None`` = not estimated)."""

    id: str
    images: list
    question: str
    steps: list[str]
    labels: list[bool | None]
    soft_labels: list[float | None] | None = None
    system: str | None = None
    meta: dict = field(default_factory=dict)


def _strip_image_tags(text: str) -> str:
    """Remove the leading image placeholders InternVL puts before the question."""
    out = text.lstrip()
    while True:
        for tag in ("<image>\n", "<image>"):
            if out.startswith(tag):
                out = out[len(tag) :]
                break
        else:
            break
    lines = out.split("\n")
    while lines and lines[0].startswith("Image-") and lines[0].rstrip().endswith("<image>"):
        lines.pop(0)  # multi-image rows: "Image-1: <image>" lines
    return "\n".join(lines)


def _images_of(record: dict) -> list:
    value = record.get("image", record.get("images"))
    if value is None:
        return []
    return list(value) if isinstance(value, (list, tuple)) else [value]


def read_v1(record: dict, index: int = 0) -> StepRecord:
    """Parse a v1 conversation record; raises ``KeyError``/``ValueError`` naming what is wrong."""
    if "conversations" not in record or not isinstance(record["conversations"], list):
        raise KeyError(f"wrong schema: a v1 record needs 'conversations' (fields present: {sorted(record)})")
    system, turns = None, []
    for turn in record["conversations"]:
        if not isinstance(turn, dict) or "from" not in turn or "value" not in turn:
            raise ValueError(f"wrong schema: conversation turn {turn!r} lacks 'from'/'value'")
        if turn["from"] == "system":
            system = turn["value"]
        else:
            turns.append(turn)
    if not turns or len(turns) % 2:
        raise ValueError(f"wrong schema: expected alternating human/gpt turns, got {len(turns)} turns")
    steps, labels = [], []
    for human, gpt in zip(turns[0::2], turns[1::2], strict=True):
        if human["from"] != "human" or gpt["from"] != "gpt":
            raise ValueError(f"wrong schema: expected human then gpt, got {human['from']}/{gpt['from']}")
        mark = str(gpt["value"]).strip()
        if mark not in ("+", "-"):
            raise ValueError(f"wrong schema: gpt turn must be '+' or '-', got {mark!r}")
        steps.append(str(human["value"]))
        labels.append(mark == "+")
    first = _strip_image_tags(steps[0])
    if not first.startswith(QUESTION_HEADER) or SOLUTION_HEADER not in first:
        raise ValueError(
            "wrong schema: first human turn lacks '### Question:' / '### Solution Process:' headers"
        )
    question, step0 = first[len(QUESTION_HEADER) :].split(SOLUTION_HEADER, 1)
    question = _strip_image_tags(question)
    steps[0] = step0
    return StepRecord(str(record.get("id", index)), _images_of(record), question, steps, labels, None, system)


def read_v11_raw(
    record: dict, index: int = 0, threshold: float = 0.0, unestimated: str = "drop"
) -> StepRecord:
    """Parse a v1.1-Raw record and label its steps from the Monte-Carlo counts."""
    if unestimated not in UNESTIMATED_CHOICES:
        raise ValueError(f"unestimated must be one of {UNESTIMATED_CHOICES}, got {unestimated!r}")
    missing = [k for k in ("question", "steps_with_score") if k not in record]
    if missing:
        raise KeyError(f"wrong schema: v1.1-Raw record lacks {missing} (fields present: {sorted(record)})")
    steps, labels, soft = [], [], []
    for j, s in enumerate(record["steps_with_score"]):
        if not isinstance(s, dict) or "step" not in s:
            raise ValueError(f"wrong schema: steps_with_score[{j}] has no 'step'")
        total = int(s.get("num_mc_total") or 0)
        if total < 0 or int(s.get("num_mc_correct") or 0) > total:
            raise ValueError(f"wrong schema: steps_with_score[{j}] has num_mc_correct > num_mc_total or < 0")
        if total == 0:
            if unestimated == "drop":
                break
            mc = None
        else:
            mc = int(s.get("num_mc_correct") or 0) / total
        steps.append(str(s["step"]))
        soft.append(mc)
        labels.append(None if mc is None else mc > threshold)
    rid = str(record.get("id", index))
    meta = {k: record[k] for k in ("answer", "num_mc_sequences") if k in record}
    return StepRecord(
        rid, _images_of(record), _strip_image_tags(str(record["question"])), steps, labels, soft, None, meta
    )


def detect_version(record: dict) -> str:
    if "conversations" in record:
        return "v1"
    if "steps_with_score" in record:
        return "v1.1-raw"
    raise KeyError(
        f"wrong schema: neither 'conversations' (v1) nor 'steps_with_score' (v1.1-Raw) in fields {sorted(record)}"
    )


def to_stepwise(rec: StepRecord, soft: bool = False) -> dict:
    out = {
        "id": rec.id,
        "images": rec.images,
        "prompt": rec.question,
        "completions": rec.steps,
        "labels": rec.labels,
    }
    if soft:
        out["soft_labels"] = (
            rec.soft_labels
            if rec.soft_labels is not None
            else [None if lab is None else float(lab) for lab in rec.labels]
        )
    return out


def image_prefix(n_images: int) -> str:
    if n_images <= 1:
        return "<image>\n" if n_images == 1 else ""
    return "".join(f"Image-{i + 1}: <image>\n" for i in range(n_images))


def to_internvl(rec: StepRecord) -> dict | None:
    """The v1 conversation layout (``item2conv_prm``'s); cut at the first unlabelled step, ``None``
    if nothing is left. One ``<image>`` tag per image, at the start of the question."""
    n = next((i for i, lab in enumerate(rec.labels) if lab is None), len(rec.labels))
    if n == 0:
        return None
    conv = []
    if rec.system:
        conv.append({"from": "system", "value": rec.system})
    for i in range(n):
        value = rec.steps[i]
        if i == 0:  # the pipeline's layout: the image tag(s) open the question, inside the header
            question = _strip_image_tags(rec.question)
            value = f"{QUESTION_HEADER}{image_prefix(len(rec.images))}{question}{SOLUTION_HEADER}{value}"
        conv.append({"from": "human", "value": value})
        conv.append({"from": "gpt", "value": "+" if rec.labels[i] else "-"})
    image = rec.images[0] if len(rec.images) == 1 else rec.images
    return {"id": rec.id, "image": image, "conversations": conv}


def statistics_of(records: list[StepRecord], dropped: int = 0) -> dict:
    """Steps per response and label balance, the two numbers the paper reports for its data."""
    counts = [len(r.steps) for r in records]
    labels = [lab for r in records for lab in r.labels]
    pos, neg = sum(lab is True for lab in labels), sum(lab is False for lab in labels)
    unl = sum(lab is None for lab in labels)
    labelled = pos + neg
    return {
        "responses": len(records),
        "responses_dropped": dropped,
        "steps": len(labels),
        "steps_per_response_mean": statistics.fmean(counts) if counts else math.nan,
        "steps_per_response_median": statistics.median(counts) if counts else math.nan,
        "steps_per_response_max": max(counts) if counts else 0,
        "positive": pos,
        "negative": neg,
        "unestimated": unl,
        "positive_fraction": pos / labelled if labelled else math.nan,
        "responses_all_positive": sum(all(lab is True for lab in r.labels) for r in records),
    }


def format_statistics(stats: dict) -> str:
    return (
        f"{stats['responses']} responses ({stats['responses_dropped']} dropped), {stats['steps']} steps; "
        f"steps/response mean {stats['steps_per_response_mean']:.2f}, median {stats['steps_per_response_median']}, "
        f"max {stats['steps_per_response_max']}; labels + {stats['positive']} / - {stats['negative']} / "
        f"unestimated {stats['unestimated']} (+ fraction {stats['positive_fraction']:.3f})"
    )
