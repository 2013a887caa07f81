"""Readers for the evaluation sets: VisualProcessBench, VL-RewardBench, best-of-N records.

Each reader validates one released record and returns a small dataclass, raising ``KeyError``
(missing field) or ``ValueError`` (wrong type / inconsistent lengths) with a message saying what
is wrong, so evaluators can report the line and go on or stop.

- VisualProcessBench (one JSON per line, no id field): ``{"image": [paths], "question",
  "answer", "response": {"steps": [...], "process_correctness": [1|-1|0...]}, "policy_model",
  "data_source"}``; 0 marks a neutral step (excluded from F1).
- VL-RewardBench: ``{"id", "query", "response": [a, b], "image", "human_ranking": [r_a, r_b],
  "models", "judge", "rationale", "query_source", "meta", ...}``; rank 0 is preferred. The
  category (general / hallucination / reasoning) is taken from a ``category`` field when a
  copy has one, else from the id prefix (:data:`VLRB_CATEGORY_PREFIXES`).
- Best-of-N: ``{"id", "image" | "images", "question", "answer", "responses": [str...]}``; the
  generated demo set's ``candidates: [{"response"...}]`` is accepted too.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field

from openrlhf_visualprm.data.image_refs import as_ref_list

# id prefix (lower-case) -> VL-RewardBench category, from the sources the benchmark paper lists.
VLRB_CATEGORY_PREFIXES: dict[str, str] = {
    "wildvision": "general",
    "vlfeedback": "general",
    "povid": "hallucination",
    "hallucination_pair": "hallucination",
    "rlaif-v": "hallucination",
    "rlhf-v": "hallucination",
    "mathverse": "reasoning",
    "mmmu": "reasoning",
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


def vlrb_category(record: dict) -> str:
    if record.get("category"):
        return str(record["category"]).lower()
    rid = str(record.get("id", "")).lower()
    for prefix, cat in VLRB_CATEGORY_PREFIXES.items():
        if rid.startswith(prefix):
            return cat
    return "unknown"


def read_vlrewardbench(record: dict, lineno: int) -> RewardBenchPair:
    _need(record, "query", "response", "human_ranking", "image")
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
    images = as_ref_list(record["image"])
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
    )


@dataclass
class BonItem:
    id: str
    images: list
    question: str
    answer: str
    responses: list[str] = field(default_factory=list)
    steps: list[list[str]] | None = None  # exact steps when the record gives them


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
    )
