"""Multimodal math benchmarks -> OpenRLHF prompt rows for RL with a verifiable answer.

Each released dataset names its fields differently; one small reader per dataset maps a record
to a :class:`MathItem` (id, question text, image references, ground truth, choices). The writer
turns items into rows OpenRLHF's ``PromptDataset`` reads with
``--data.input_key prompt --data.image_key images --data.label_key label``:

``prompt``      the question with one ``<image>`` tag per image (OpenRLHF turns tags into image
                slots when ``--data.apply_chat_template`` is on) and the answer-format suffix;
``images``      absolute image paths (OpenRLHF opens them relative to its working directory,
                so relative paths would break when the launcher runs elsewhere);
``label``       a JSON string (see :func:`encode_label`) with the ground truth, the image paths
                relative to the image root the reward side is configured with, the source and id;
``datasource``  the source name (OpenRLHF logs rewards per datasource).

Supported field layouts (names exactly as released): geometry3k (``hiyouga/geometry3k``:
``images, problem, answer`` and, in the current card, ``id, choices, ground_truth``; original
``lupantech`` ``data.json``: ``id, problem_text, choices, answer`` with ``<id>/img_diagram.png``), MathVista (``pid, question, image, decoded_image,
choices, answer, query, question_type, answer_type``), MathVerse (``sample_index,
problem_version, question, image, answer, query_cot``), MathVision (``id, question, options,
image, decoded_image, answer, level, subject``), WeMath (``ID, question, option, answer,
image_path, knowledge concept``), DynaMath (``id, question, image, decoded_image,
ground_truth, answer_type, subject, knowledge_level``).
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from openrlhf_visualprm.data.image_refs import ImageStore, relative_to_roots
from openrlhf_visualprm.data.records import ErrorLog, read_records
from openrlhf_visualprm.images import ImageError

DEFAULT_SUFFIX = (
    "Solve the problem step by step, separating the steps with a blank line, "
    "and put the final answer in \\boxed{}."
)
LETTERS = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
_IMAGE_TAG = re.compile(r"<image\d*>\s*")


@dataclass
class MathItem:
    id: str
    question: str
    images: list = field(default_factory=list)
    answer: str = ""
    choices: list[str] | None = None
    meta: dict = field(default_factory=dict)


def _need(record: dict, *keys: str) -> None:
    missing = [k for k in keys if k not in record or record[k] is None]
    if missing:
        raise KeyError(f"wrong schema: missing field(s) {missing} (fields present: {sorted(record)})")


def _clean_question(text: str) -> str:
    """Drop the dataset's own image tags (``<image>``, MathVision's ``<image1>``); we re-add ours."""
    return _IMAGE_TAG.sub("", str(text)).strip()


def _with_choices(question: str, choices: list[str] | None) -> str:
    if not choices:
        return question
    listed = "\n".join(f"({LETTERS[i]}) {c}" for i, c in enumerate(choices))
    return f"{question}\nChoices:\n{listed}"


def _str_answer(value: Any) -> str:
    if isinstance(value, list):
        return ", ".join(str(v) for v in value)
    return str(value).strip()


def read_geometry3k(record: dict, index: int) -> MathItem:
    if "problem_text" in record:  # original lupantech release: <id>/data.json + <id>/img_diagram.png
        _need(record, "problem_text", "answer")
        rid = str(record.get("id", index))
        choices = [str(c) for c in record.get("choices") or []] or None
        image = record.get("image") or f"{rid}/img_diagram.png"
        return MathItem(
            rid,
            _with_choices(_clean_question(record["problem_text"]), choices),
            [image],
            _str_answer(record["answer"]),
            choices,
        )
    _need(record, "problem", "answer")
    images = record.get("images") if record.get("images") is not None else record.get("image")
    # The current hiyouga card adds ``id``, ``choices`` (the four options) and ``ground_truth``
    # (the option letter). The prompt stays the card's ``problem`` text (what users train on);
    # the choices and the letter travel in the label, so an answer given as a letter can be checked.
    choices = [str(c) for c in record.get("choices") or []] or None
    meta = {}
    if record.get("ground_truth") is not None:
        truth = str(record["ground_truth"]).strip()
        if choices and len(truth) == 1 and truth.isalpha():
            option = LETTERS.index(truth.upper())
            if option >= len(choices):
                raise ValueError(
                    f"wrong schema: ground_truth {truth!r} names option {option + 1} but there are "
                    f"{len(choices)} choices"
                )
        meta["ground_truth"] = truth
    return MathItem(
        str(record.get("id", index)),
        _clean_question(record["problem"]),
        images,
        _str_answer(record["answer"]),
        choices,
        meta,
    )


def read_mathvista(record: dict, index: int) -> MathItem:
    _need(record, "question", "answer")
    choices = [str(c) for c in record.get("choices") or []] or None
    # `query` is the released full prompt (hint + question + choices); fall back to our own.
    question = record.get("query") or _with_choices(str(record["question"]), choices)
    image = record.get("decoded_image") or record.get("image")
    meta = {
        k: record[k]
        for k in ("question_type", "answer_type", "unit", "precision")
        if record.get(k) is not None
    }
    return MathItem(
        str(record.get("pid", index)),
        _clean_question(question),
        image,
        _str_answer(record["answer"]),
        choices,
        meta,
    )


def read_mathverse(record: dict, index: int) -> MathItem:
    _need(record, "answer", "image")
    question = record.get("query_cot") or record.get("question") or ""
    meta = {k: record[k] for k in ("problem_version", "question_type") if record.get(k) is not None}
    return MathItem(
        str(record.get("sample_index", index)),
        _clean_question(question),
        record["image"],
        _str_answer(record["answer"]),
        None,
        meta,
    )


def read_mathvision(record: dict, index: int) -> MathItem:
    _need(record, "question", "answer")
    choices = [str(c) for c in record.get("options") or []] or None
    image = record.get("decoded_image") or record.get("image")
    meta = {k: record[k] for k in ("level", "subject") if record.get(k) is not None}
    return MathItem(
        str(record.get("id", index)),
        _with_choices(_clean_question(record["question"]), choices),
        image,
        _str_answer(record["answer"]),
        choices,
        meta,
    )


def read_wemath(record: dict, index: int) -> MathItem:
    _need(record, "question", "answer", "image_path")
    question = _clean_question(record["question"])
    if record.get("option"):
        question = f"{question}\n{record['option']}"
    meta = {k: record[k] for k in ("knowledge concept", "key", "split") if record.get(k) is not None}
    return MathItem(
        str(record.get("ID", index)),
        question,
        record["image_path"],
        _str_answer(record["answer"]),
        None,
        meta,
    )


def read_dynamath(record: dict, index: int) -> MathItem:
    _need(record, "question", "ground_truth")
    image = record.get("decoded_image") or record.get("image")
    if not image:
        raise KeyError("wrong schema: missing field(s) ['image'] (DynaMath rows need image or decoded_image)")
    meta = {k: record[k] for k in ("answer_type", "subject", "knowledge_level") if record.get(k) is not None}
    return MathItem(
        str(record.get("id", index)),
        _clean_question(record["question"]),
        image,
        _str_answer(record["ground_truth"]),
        None,
        meta,
    )


READERS: dict[str, Callable[[dict, int], MathItem]] = {
    "geometry3k": read_geometry3k,
    "mathvista": read_mathvista,
    "mathverse": read_mathverse,
    "mathvision": read_mathvision,
    "wemath": read_wemath,
    "dynamath": read_dynamath,
}


def detect_dataset(record: dict) -> str:
    """Guess the dataset from its field names; raise with the fields seen when nothing fits."""
    keys = set(record)
    if {"ground_truth", "knowledge_level"} <= keys:
        return "dynamath"
    if "image_path" in keys and ("knowledge concept" in keys or "ID" in keys):
        return "wemath"
    if keys & {"problem_version", "query_cot", "sample_index"}:
        return "mathverse"
    if "pid" in keys or {"query", "question_type"} <= keys:
        return "mathvista"
    if "options" in keys and keys & {"level", "subject"}:
        return "mathvision"
    if "problem_text" in keys or ({"problem", "answer"} <= keys):
        return "geometry3k"
    raise KeyError(
        f"wrong schema: cannot tell which dataset has fields {sorted(keys)}; pass --dataset "
        f"(one of {sorted(READERS)})"
    )


def encode_label(answer: str, images: list[str], source: str, item_id: str, **extra: Any) -> str:
    """The label string OpenRLHF hands to the reward side: JSON, decoded by the one label decoder
    :func:`openrlhf_visualprm.labels.decode_label`."""
    payload = {"answer": answer, "images": images, "source": source, "id": item_id}
    payload.update({k: v for k, v in extra.items() if v is not None})
    return json.dumps(payload, ensure_ascii=False)


def to_prompt_row(item: MathItem, paths: list[Path], rel_paths: list[str], source: str, suffix: str) -> dict:
    tags = "<image>\n" * len(paths)
    prompt = f"{tags}{item.question}"
    if suffix:
        prompt = f"{prompt}\n\n{suffix}"
    label = encode_label(item.answer, rel_paths, source, item.id, choices=item.choices, **item.meta)
    return {
        "id": item.id,
        "prompt": prompt,
        "images": [str(p) for p in paths],
        "label": label,
        "datasource": source,
    }


def convert_math(
    path: str | Path,
    store: ImageStore,
    errors: ErrorLog,
    dataset: str = "auto",
    source: str | None = None,
    suffix: str = DEFAULT_SUFFIX,
    split: str | None = None,
    limit: int | None = None,
) -> list[dict]:
    """Read one released file and return OpenRLHF prompt rows; bad records go to ``errors``.

    Ids must be unique within a file: the first record with an id is kept, a later one is a bad
    record (reported, and with ``--on-error stop`` it stops) rather than a second row under the
    same id, which the reward side and the evaluators could not tell apart."""
    rows = []
    first_line: dict[str, int] = {}
    extra_roots = [store.out_dir] if store.out_dir is not None else []
    for row in read_records(path, errors, split=split):
        if limit is not None and len(rows) >= limit:
            break
        record = row.record
        try:
            name = detect_dataset(record) if dataset == "auto" else dataset
            if name not in READERS:
                raise KeyError(f"unknown dataset {name!r} (choose from {sorted(READERS)})")
            item = READERS[name](record, row.lineno - 1)
            if not str(item.answer).strip():
                raise KeyError("wrong schema: empty answer")
            if str(item.id) in first_line:
                raise KeyError(
                    f"duplicate id {str(item.id)!r} (first at line {first_line[str(item.id)]}); kept the first"
                )
            paths = store.resolve_all(item.images)
            if not paths:
                raise ImageError("record has no image")
        except (KeyError, ImageError, TypeError, ValueError) as exc:
            reason = exc.args[0] if isinstance(exc, KeyError) and exc.args else str(exc)
            if isinstance(exc, ImageError):
                reason = f"missing or refused image: {exc}"
            errors.add(path, row.lineno, reason)
            continue
        first_line[str(item.id)] = row.lineno
        rel = [relative_to_roots(p, store.roots, extra_roots) for p in paths]
        rows.append(to_prompt_row(item, paths, rel, source or name, suffix))
    return rows
