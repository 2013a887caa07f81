"""Readers for the evaluation sets: VisualProcessBench, VL-RewardBench, best-of-N records.

Each reader validates one released record and returns a small dataclass, raising ``KeyError``
(missing field) or ``ValueError`` (wrong type / inconsistent lengths) with a message saying what
is wrong, so evaluators can report the line and go on or stop.

- VisualProcessBench (one JSON per line, no id field): ``{"image": [paths], "question",
  "answer", "response": {"steps": [...], "process_correctness": [1|-1|0...]}, "policy_model",
  "data_source"}``; 0 marks a neutral step (excluded from F1).
- VL-RewardBench: ``{"id", "query", "response": [a, b], "image_path" | "image", "human_ranking":
  [r_a, r_b], "models", "judge", "rationale", "query_source", "meta", ...}``; rank 0 is preferred.
  The GitHub ``data/data.jsonl`` names the image ``image_path`` (``images/<source>/<file>``); the
  Hugging Face copy embeds it as ``image``. The category follows the official evaluation
  (``cal.py``): the source dataset is the folder of ``image_path`` (:data:`VLRB_SOURCE_GROUPS`
  maps the six sources to general / hallucination / reasoning); without ``image_path`` it comes
  from the id, as the official script for the Hugging Face copy does (:func:`vlrb_source_from_id`).
- Best-of-N: ``{"id", "image" | "images", "question", "answer", "responses": [str...]}``; the
  generated demo set's ``candidates: [{"response"...}]`` is accepted too.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field

from openrlhf_visualprm.data.image_refs import as_ref_list
from openrlhf_visualprm.labels import parse_choices

# VL-RewardBench source dataset (the folder of ``image_path``) -> group, exactly as the official
# evaluation (vl-rewardbench/VL_RewardBench cal.py) maps them. Overall and macro accuracy are over
# these three groups only.
VLRB_SOURCE_GROUPS: dict[str, str] = {
    "vlfeedback": "general",
    "wildvision-battle": "general",
    "povid": "hallucination",
    "rlhf-v": "hallucination",
    "rlaif-v": "hallucination",
    "reasoning_tasks": "reasoning",
}
VLRB_CATEGORIES = ("general", "hallucination", "reasoning")


def line_id(record: dict, lineno: int) -> str:
    """A stable id for records without one: line number plus a content hash (detects edits)."""
    digest = hashlib.sha1(json.dumps(record, sort_keys=True, default=str).encode()).hexdigest()[:10]
    return f"L{lineno}-{digest}"


def _need(record: dict, *keys: str) -> None:
    missing = [k for k in keys if k not in record or record[k] is None]
    if missing:
        raise KeyError(f"wrong schema: missing field(s) {missing} (fields present: {sorted(record)})")


@dataclass
class ProcessBenchItem:
    id: str
    images: list
    question: str
    answer: str
    steps: list[str]
    labels: list[int]  # 1 correct, -1 incorrect, 0 neutral
    policy_model: str
    data_source: str


def read_processbench(record: dict, lineno: int) -> ProcessBenchItem:
    _need(record, "image", "question", "response")
    response = record["response"]
    if not isinstance(response, dict):
        raise ValueError(
            f"wrong schema: 'response' must be an object with steps, got {type(response).__name__}"
        )
    _need(response, "steps", "process_correctness")
    steps, labels = response["steps"], response["process_correctness"]
    if not isinstance(steps, list) or not all(isinstance(s, str) for s in steps):
        raise ValueError("wrong schema: response.steps must be a list of strings")
    if not isinstance(labels, list) or len(labels) != len(steps):
        raise ValueError(
            f"wrong schema: {len(steps)} steps but process_correctness has "
            f"{len(labels) if isinstance(labels, list) else type(labels).__name__} entries"
        )
    if any(lab not in (1, -1, 0) or isinstance(lab, bool) for lab in labels):
        raise ValueError(f"wrong schema: process_correctness values must be 1, -1 or 0, got {labels}")
    if not steps:
        raise ValueError("wrong schema: response has no steps")
    images = as_ref_list(record["image"])
    if not images:
        raise ValueError("wrong schema: empty image list")
    return ProcessBenchItem(
        id=str(record["id"]) if record.get("id") is not None else line_id(record, lineno),
        images=images,
        question=str(record["question"]),
        answer=str(record.get("answer", "")),
        steps=steps,
        labels=[int(lab) for lab in labels],
        policy_model=str(record.get("policy_model") or "unknown"),
        data_source=str(record.get("data_source") or "unknown"),
    )


@dataclass
class RewardBenchPair:
    id: str
    images: list
    query: str
    responses: tuple[str, str]
    preferred: int  # index of the human-preferred response
    category: str
    query_source: str | None = None
    source: str | None = None  # the source dataset (vlfeedback, povid, ...) when known


def vlrb_source_from_id(rid: str) -> str:
    """Source dataset of a row without ``image_path`` (the Hugging Face copy), from its id.

    The official script for that copy cuts the id at its first ``_`` or ``-``: ``RLAIF`` ->
    rlaif-v, ``RLHF`` -> rlhf-v, ``mathverse`` / ``mmmu`` -> reasoning_tasks, ``wildvision`` ->
    wildvision-battle, and everything else is vlfeedback (whose ids carry their own sources:
    ``LRVInstruction-...``, ``jailbreak-...``). POVID rows are ``hallucination_pair-...``: the
    official script means them to be povid (its "fix povid bug" branch), so we map that prefix.
    """
    cuts = [i for i in (rid.find("_"), rid.find("-")) if i >= 0]
    prefix = rid[: min(cuts)] if cuts else rid
    by_prefix = {
        "RLAIF": "rlaif-v",
        "RLHF": "rlhf-v",
        "mathverse": "reasoning_tasks",
        "mmmu": "reasoning_tasks",
        "wildvision": "wildvision-battle",
        "hallucination": "povid",
        "povid": "povid",
    }
    return by_prefix.get(prefix, by_prefix.get(prefix.lower(), "vlfeedback"))


def vlrb_source(record: dict) -> str:
    """Source dataset of a VL-RewardBench row: the folder of ``image_path``, else from the id."""
    path = record.get("image_path")
    if isinstance(path, str) and path.strip():
        parts = [p for p in path.replace("\\", "/").split("/") if p]
        folder = parts[-2] if len(parts) >= 2 else ""
        if folder not in VLRB_SOURCE_GROUPS:
            raise ValueError(
                f"wrong schema: image_path {path!r} is not under a VL-RewardBench source folder "
                f"({', '.join(VLRB_SOURCE_GROUPS)}); the official layout is images/<source>/<file>"
            )
        return folder
    return vlrb_source_from_id(str(record.get("id", "")))


def vlrb_category(record: dict) -> str:
    """general / hallucination / reasoning, as the official evaluation groups the row."""
    if record.get("category"):
        category = str(record["category"]).lower()
        if category not in VLRB_CATEGORIES:
            raise ValueError(
                f"wrong schema: category {record['category']!r} is not one of {', '.join(VLRB_CATEGORIES)}"
            )
        return category
    return VLRB_SOURCE_GROUPS[vlrb_source(record)]


def read_vlrewardbench(record: dict, lineno: int) -> RewardBenchPair:
    _need(record, "query", "response", "human_ranking")
    if record.get("image") is None and record.get("image_path") is None:
        raise KeyError(
            f"wrong schema: missing field 'image_path' (GitHub data.jsonl) or 'image' (Hugging Face copy) "
            f"(fields present: {sorted(record)})"
        )
    responses, ranking = record["response"], record["human_ranking"]
    if (
        not isinstance(responses, list)
        or len(responses) != 2
        or not all(isinstance(r, str) for r in responses)
    ):
        raise ValueError("wrong schema: 'response' must be a list of two strings")
    if not isinstance(ranking, list) or len(ranking) != 2 or sorted(ranking) != [0, 1]:
        raise ValueError(
            f"wrong schema: 'human_ranking' must rank the two responses 0 and 1, got {ranking!r}"
        )
    image = record.get("image") if record.get("image") is not None else record["image_path"]
    images = as_ref_list(image)
    if not images:
        raise ValueError("wrong schema: empty image")
    return RewardBenchPair(
        id=str(record["id"]) if record.get("id") is not None else line_id(record, lineno),
        images=images,
        query=str(record["query"]),
        responses=(responses[0], responses[1]),
        preferred=ranking.index(0),
        category=vlrb_category(record),
        query_source=record.get("query_source"),
        source=vlrb_source(record) if not record.get("category") else None,
    )


@dataclass
class BonItem:
    id: str
    images: list
    question: str
    answer: str
    responses: list[str] = field(default_factory=list)
    steps: list[list[str]] | None = None  # exact steps when the record gives them
    choices: tuple[str, ...] | None = None  # multiple choice: option texts (labels.parse_choices)


def read_bon(record: dict, lineno: int) -> BonItem:
    _need(record, "question", "answer")
    steps = None
    if isinstance(record.get("responses"), list):
        responses = record["responses"]
    elif isinstance(record.get("candidates"), list):
        cands = record["candidates"]
        if not all(isinstance(c, dict) and isinstance(c.get("response"), str) for c in cands):
            raise ValueError("wrong schema: every candidate needs a 'response' string")
        responses = [c["response"] for c in cands]
        if all(isinstance(c.get("steps"), list) for c in cands):
            steps = [list(c["steps"]) for c in cands]
    else:
        raise KeyError(f"wrong schema: need 'responses' (or 'candidates') (fields present: {sorted(record)})")
    if not responses or not all(isinstance(r, str) for r in responses):
        raise ValueError("wrong schema: 'responses' must be a non-empty list of strings")
    images = as_ref_list(record.get("images", record.get("image")))
    if not images:
        raise KeyError("wrong schema: missing field(s) ['image']")
    return BonItem(
        id=str(record["id"]) if record.get("id") is not None else line_id(record, lineno),
        images=images,
        question=str(record["question"]),
        answer=str(record["answer"]),
        responses=list(responses),
        steps=steps,
        choices=parse_choices(record.get("choices"), "record"),
    )
