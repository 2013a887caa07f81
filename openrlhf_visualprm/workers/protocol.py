"""Turning HTTP payloads into scoring groups, and results into OpenRLHF's reply format.

Two request shapes are understood (both JSON):

1. OpenRLHF's remote reward protocol (what ``--reward.remote_url http://...`` POSTs)::

       {"query": [prompt + response, ...], "prompts": [prompt, ...], "labels": [label, ...]}
       -> {"rewards": [float, ...], "scores": [float, ...], "extra_logs": {name: [value, ...]}}

   OpenRLHF sends no image, so each label must carry it: a JSON object (or a JSON string of one)
   with ``"images"`` (list) or ``"image"``, and optionally ``"question"`` (defaults to the
   prompt text) and ``"config"`` (PRM scoring options). The response is the query with the
   prompt removed from its front. Samples sharing images and question are scored as one group.

2. The extended endpoint, with images and per-step scores::

       {"groups": [{"images": ["rel/path.png" | "data:image/png;base64,..." | {"path": ...} |
                               {"base64": ...}], "question": ..., "responses" | "steps": ...,
                    "config": {...}}], "timeout_s": 60}
       -> {"results": [[{"steps", "spans", "step_scores", "score", "truncated", "note"}, ...]]}
"""

from __future__ import annotations

import base64
import binascii
import json
import math
from typing import Any

from openrlhf_visualprm.labels import decode_label, question_text
from openrlhf_visualprm.workers.errors import BadRequestError, RequestTooLargeError

# Tokens a chat template leaves after the response; stripped before scoring.
TRAILING_SPECIALS = ("<|im_end|>", "<|endoftext|>", "</s>", "<|eot_id|>", "<|end|>")


def extract_response(query: str, prompt: str, where: str) -> str:
    """The response part of ``query`` (OpenRLHF decodes prompt + response with special tokens kept)."""
    if query.startswith(prompt):
        response = query[len(prompt) :]
    elif prompt and prompt in query:
        response = query[query.index(prompt) + len(prompt) :]
    else:
        raise BadRequestError(
            f"{where}: query does not contain its prompt, so the response cannot be separated; "
            "send query = prompt + response as OpenRLHF does"
        )
    changed = True
    while changed:
        changed = False
        response = response.rstrip()
        for tok in TRAILING_SPECIALS:
            if response.endswith(tok):
                response = response[: -len(tok)]
                changed = True
    return response.strip()


def decode_image_ref(ref: Any, where: str, max_image_bytes: int) -> str | bytes:
    """A path string stays a path (confined to roots later); base64 forms become bytes, size-checked."""
    if isinstance(ref, dict):
        if "path" in ref and isinstance(ref["path"], str):
            return ref["path"]
        if "base64" in ref and isinstance(ref["base64"], str):
            data = ref["base64"]
        else:
            raise BadRequestError(
                f"{where} must be a path string, a data: URI, {{'path': ...}} or {{'base64': ...}}"
            )
    elif isinstance(ref, str):
        if not ref.startswith("data:"):
            return ref
        if "," not in ref:
            raise BadRequestError(f"{where} is a data: URI without a comma-separated payload")
        data = ref.split(",", 1)[1]
    else:
        raise BadRequestError(f"{where} must be a string or an object, got {type(ref).__name__}")
    if len(data) * 3 // 4 > max_image_bytes:
        raise RequestTooLargeError(
            f"{where} is about {len(data) * 3 // 4} bytes once decoded, over the image limit of {max_image_bytes}"
        )
    try:
        return base64.b64decode(data, validate=True)
    except (binascii.Error, ValueError):
        raise BadRequestError(f"{where} is not valid base64") from None


def _image_refs(container: dict, where: str, max_image_bytes: int) -> list[str | bytes]:
    refs = container.get("images", container.get("image"))
    if refs is None:
        raise BadRequestError(f"{where} has no image: add 'images' (a list) or 'image'")
    if not isinstance(refs, list):
        refs = [refs]
    return [decode_image_ref(r, f"{where}.images[{i}]", max_image_bytes) for i, r in enumerate(refs)]


def parse_label(label: Any, where: str) -> dict:
    if isinstance(label, str):
        try:
            label = json.loads(label)
        except json.JSONDecodeError:
            label = None
    if not isinstance(label, dict):
        raise BadRequestError(
            f"{where} must be a JSON object (or a JSON string of one) carrying the image, e.g. "
            '{"images": ["path/under/root.png"], "question": "..."}'
        )
    return label


def openrlhf_groups(payload: Any, max_image_bytes: int) -> tuple[list[dict], list[tuple[int, int]]]:
    """Groups to score and, per sample, (group index, position in group)."""
    if not isinstance(payload, dict):
        raise BadRequestError(f"request body must be a JSON object, got {type(payload).__name__}")
    queries, prompts, labels = payload.get("query"), payload.get("prompts"), payload.get("labels")
    if not isinstance(queries, list) or not all(isinstance(q, str) for q in queries):
        raise BadRequestError("'query' must be a list of strings (prompt + response, as OpenRLHF sends)")
    if (
        not isinstance(prompts, list)
        or len(prompts) != len(queries)
        or not all(isinstance(p, str) for p in prompts)
    ):
        raise BadRequestError(f"'prompts' must be a list of {len(queries)} strings, one per query")
    if not isinstance(labels, list) or len(labels) != len(queries):
        raise BadRequestError(
            f"'labels' must be a list of {len(queries)} labels carrying the images, one per query"
        )
    groups: list[dict] = []
    index: dict[str, int] = {}
    where_of: list[tuple[int, int]] = []
    for i, (query, prompt, raw_label) in enumerate(zip(queries, prompts, labels)):
        label = parse_label(raw_label, f"labels[{i}]")
        images = _image_refs(label, f"labels[{i}]", max_image_bytes)
        question = label.get("question")
        if question is not None and not isinstance(question, str):
            raise BadRequestError(f"labels[{i}].question must be a string")
        if not question or not question.strip():
            # the prompt's last user turn without chat markup and image tokens (the raw prompt
            # would hand its template and a VLM's image tokens to the model as text)
            question = question_text(decode_label({}), prompt)
        config = label.get("config")
        response = extract_response(query, prompt, f"query[{i}]")
        key = json.dumps(
            [
                [im if isinstance(im, str) else base64.b64encode(im).decode() for im in images],
                question,
                config,
            ],
            sort_keys=True,
        )
        if key not in index:
            index[key] = len(groups)
            groups.append({"images": images, "question": question, "responses": [], "config": config})
        gi = index[key]
        where_of.append((gi, len(groups[gi]["responses"])))
        groups[gi]["responses"].append(response)
    return groups, where_of


def openrlhf_reply(results: list[list[dict]], where_of: list[tuple[int, int]]) -> dict:
    picked = [results[gi][pos] for gi, pos in where_of]
    scores = [float(r["score"]) for r in picked]
    return {
        "rewards": scores,
        "scores": scores,
        "extra_logs": {
            "prm_num_steps": [len(r.get("step_scores", [])) for r in picked],
            "prm_min_step": [min(r["step_scores"]) if r.get("step_scores") else r["score"] for r in picked],
            "prm_truncated": [float(bool(r.get("truncated"))) for r in picked],
        },
    }


def extended_groups(payload: Any, max_image_bytes: int) -> tuple[list[dict], float | None]:
    if not isinstance(payload, dict):
        raise BadRequestError(f"request body must be a JSON object, got {type(payload).__name__}")
    groups = payload.get("groups")
    if not isinstance(groups, list) or not groups:
        raise BadRequestError(
            "'groups' must be a non-empty list of {images, question, responses|steps, config}"
        )
    out = []
    for i, g in enumerate(groups):
        if not isinstance(g, dict):
            raise BadRequestError(f"groups[{i}] must be an object")
        out.append({**g, "images": _image_refs(g, f"groups[{i}]", max_image_bytes)})
    timeout = payload.get("timeout_s")
    if timeout is not None and (
        not isinstance(timeout, (int, float))
        or isinstance(timeout, bool)
        or not math.isfinite(timeout)
        or timeout <= 0
    ):
        raise BadRequestError(f"'timeout_s' must be a positive, finite number of seconds, got {timeout!r}")
    return out, timeout
