"""Turning HTTP payloads into scoring groups, and results into OpenRLHF's reply format.

Two request shapes are understood (both JSON):

1. OpenRLHF's remote reward protocol (what ``--reward.remote_url http://...`` POSTs)::

       {"query": [prompt + response, ...], "prompts": [prompt, ...], "labels": [label, ...]}
       -> {"rewards": [float, ...], "scores": [float, ...], "extra_logs": {name: [value, ...]}}

   OpenRLHF sends no image, so each label must carry it (the label schema and its decoder are
   :mod:`openrlhf_visualprm.labels`, the same on every route): ``"images"`` (list) or
   ``"image"``, optionally ``"question"`` (else the last user turn of the prompt) and
   ``"config"`` (PRM scoring options). The response is separated from the query by
   :func:`openrlhf_visualprm.labels.extract_response` (VLM-expanded image tokens handled).
   Samples sharing images, question and config are scored as one group. A bad *sample* (bad
   label, no image, bad image reference, a query without its prompt) gets the neutral reward 0
   and ``extra_logs["reward_fn/failed"] = 1``, as with ``reward_fns/``; a malformed request is a 400.

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

from openrlhf_visualprm.errors import PART_IMAGE, InputError
from openrlhf_visualprm.labels import decode_label, extract_response, question_text, require_images
from openrlhf_visualprm.workers.errors import BadRequestError, RequestTooLargeError

NEUTRAL_REWARD = 0.0  # a bad sample's reward, as in the reward actor and reward_fns


def decode_image_ref(ref: Any, where: str, max_image_bytes: int) -> str | bytes:
    """A path string stays a path (confined to roots later); base64 forms become bytes, size-checked."""
    if isinstance(ref, dict):
        if "path" in ref and isinstance(ref["path"], str):
            return ref["path"]
        if "base64" in ref and isinstance(ref["base64"], str):
            data = ref["base64"]
        else:
            raise BadRequestError(
                f"{where} must be a path string, a data: URI, {{'path': ...}} or {{'base64': ...}}",
                PART_IMAGE,
            )
    elif isinstance(ref, str):
        from openrlhf_visualprm.images import image_ref_kind

        kind = image_ref_kind(ref)
        if kind == "url":
            raise BadRequestError(
                f"{where} is a URL; the reward service never fetches from the network: send the image as a "
                "path under the image roots, a data: URI or base64",
                PART_IMAGE,
                "image_url",
            )
        if kind == "path":
            return ref
        if kind == "data_uri" and "," not in ref:
            raise BadRequestError(f"{where} is a data: URI without a comma-separated payload", PART_IMAGE)
        data = "".join((ref.split(",", 1)[1] if kind == "data_uri" else ref).split())
    else:
        raise BadRequestError(f"{where} must be a string or an object, got {type(ref).__name__}", PART_IMAGE)
    if len(data) * 3 // 4 > max_image_bytes:
        raise RequestTooLargeError(
            f"{where} is about {len(data) * 3 // 4} bytes once decoded, over the image limit of {max_image_bytes}"
        )
    try:
        return base64.b64decode(data, validate=True)
    except (binascii.Error, ValueError):
        raise BadRequestError(f"{where} is not valid base64", PART_IMAGE, "bad_image") from None


def _image_refs(container: dict, where: str, max_image_bytes: int) -> list[str | bytes]:
    refs = container.get("images", container.get("image"))
    if refs is None:
        raise BadRequestError(
            f"{where} has no image: add 'images' (a list) or 'image'", PART_IMAGE, "no_image"
        )
    if not isinstance(refs, list):
        refs = [refs]
    return [decode_image_ref(r, f"{where}.images[{i}]", max_image_bytes) for i, r in enumerate(refs)]


def openrlhf_groups(
    payload: Any, max_image_bytes: int
) -> tuple[list[dict], list[tuple[int, int] | None], dict[int, str]]:
    """Groups to score; per sample (group index, position in group), or None for a bad sample;
    and the bad samples' reasons by sample index."""
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
    where_of: list[tuple[int, int] | None] = []
    failed: dict[int, str] = {}
    for i, (query, prompt, raw_label) in enumerate(zip(queries, prompts, labels)):
        try:
            label = decode_label(raw_label, f"labels[{i}]")
            refs = require_images(label)
            images = [
                decode_image_ref(r, f"labels[{i}].images[{j}]", max_image_bytes) for j, r in enumerate(refs)
            ]
            question = question_text(label, prompt)
            config = label.config
            response = extract_response(query, prompt, f"query[{i}]")
        except InputError as exc:  # an oversized image too: a bad sample, not a bad request
            failed[i] = f"{exc.reason}: {exc}"
            where_of.append(None)
            continue
        key = json.dumps(
            [
                [im if isinstance(im, str) else base64.b64encode(im).decode() for im in images],
                question,
                config,
            ],
            sort_keys=True,
            default=str,
        )
        if key not in index:
            index[key] = len(groups)
            groups.append({"images": images, "question": question, "responses": [], "config": config})
        gi = index[key]
        where_of.append((gi, len(groups[gi]["responses"])))
        groups[gi]["responses"].append(response)
    return groups, where_of, failed


def openrlhf_reply(
    results: list[list[dict] | None],
    where_of: list[tuple[int, int] | None],
    failed: dict[int, str] | None = None,
) -> dict:
    """OpenRLHF's reply; a bad sample (``where_of`` None, or its group's result None) gets the
    neutral reward 0 and ``reward_fn/failed`` 1, its other logs the batch mean."""
    failed = dict(failed or {})
    picked: list[dict | None] = []
    for i, where in enumerate(where_of):
        if where is not None and results[where[0]] is not None:
            picked.append(results[where[0]][where[1]])
        else:
            failed.setdefault(i, "bad sample")
            picked.append(None)
    logs = {
        "prm_num_steps": [None if r is None else float(len(r.get("step_scores") or [])) for r in picked],
        "prm_min_step": [
            None if r is None else float(min(r["step_scores"]) if r.get("step_scores") else r["score"])
            for r in picked
        ],
        "prm_truncated": [None if r is None else float(bool(r.get("truncated"))) for r in picked],
    }
    extra = {}
    for key, values in logs.items():
        present = [v for v in values if v is not None]
        mean = sum(present) / len(present) if present else 0.0
        extra[key] = [mean if v is None else v for v in values]
    extra["reward_fn/failed"] = [float(i in failed) for i in range(len(picked))]
    scores = [NEUTRAL_REWARD if r is None else float(r["score"]) for r in picked]
    return {"rewards": scores, "scores": scores, "extra_logs": extra}


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
