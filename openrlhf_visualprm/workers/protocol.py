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
   Samples sharing images, question and config are scored as one group, by the reward runtime
   every route runs. A bad *sample* (bad label, no image, bad image reference, a query without
   its prompt) gets the neutral reward 0 and ``extra_logs["reward/failed_group"] = 1``, every
   sample the same log keys (:func:`~openrlhf_visualprm.rewards.combine.sample_logs`); a
   malformed request is a 400.

2. The extended endpoint, with images and per-step scores::

       {"groups": [{"images": ["rel/path.png" | "data:image/png;base64,..." | {"path": ...} |
                               {"base64": ...}], "question": ..., "responses" | "steps": ...,
                    "config": {...}}], "timeout_s": 60}
       -> {"results": [[{"steps", "spans", "step_scores", "score", "truncated", "note"}, ...]]}
       (a judge pool: ``{"score", "best", group statistics}`` per response)
"""

from __future__ import annotations

import base64
import binascii
import json
import math
from typing import Any

from openrlhf_visualprm.errors import PART_IMAGE, InputError
from openrlhf_visualprm.labels import decode_label, extract_response
from openrlhf_visualprm.workers.errors import BadRequestError, RequestTooLargeError


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


def _check_openrlhf(payload: Any) -> tuple[list[str], list[str], list[Any]]:
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
    return queries, prompts, labels


def openrlhf_samples(payload: Any, max_image_bytes: int) -> list[dict[str, Any] | InputError]:
    """One host payload (``{"prompt", "label", "images", "responses": [response]}``) per sample of
    OpenRLHF's request, or the :class:`InputError` that makes it a bad sample (a query without its
    prompt, a label image in a form the service refuses); a malformed request raises 400."""
    out: list[dict[str, Any] | InputError] = []
    for i, (query, prompt, raw_label) in enumerate(zip(*_check_openrlhf(payload))):
        try:
            label = decode_label(raw_label, f"labels[{i}]")
            refs = [
                decode_image_ref(r, f"labels[{i}].images[{j}]", max_image_bytes)
                for j, r in enumerate(label.images)
            ]
            response = extract_response(query, prompt, f"query[{i}]")
        except InputError as exc:  # an oversized image too: a bad sample, not a bad request
            out.append(exc)
            continue
        out.append({"prompt": prompt, "label": label, "images": refs or None, "responses": [response]})
    return out


def score_openrlhf(
    samples: list[dict[str, Any] | InputError],
    runtime: Any,
    roots: Any,
    kind: str | None = None,
    limits: Any = None,
) -> list[dict[str, Any]]:
    """The runtime's row for each sample: the one preparation (bad samples recorded), samples
    that share images, question, options and reference scored as one group (one shared prefix),
    then split back in request order."""
    from openrlhf_visualprm.rewards.groups import NEEDS, RewardGroup, prepare_groups

    ok = [i for i, s in enumerate(samples) if not isinstance(s, InputError)]
    prepared = dict(zip(ok, prepare_groups([samples[i] for i in ok], roots, kind=kind, limits=limits)))
    groups: list[RewardGroup] = []
    where: list[tuple[int, int]] = []
    index: dict[str, int] = {}
    for i, sample in enumerate(samples):
        if isinstance(sample, InputError):
            broken = {need: f"{sample.reason}: {sample}" for need in NEEDS}
            where.append((len(groups), 0))
            groups.append(RewardGroup("", [""], broken=broken))
            continue
        g = prepared[i]
        key = json.dumps(
            [g.image_hashes, g.question, g.options, g.reference, sorted(g.broken.items()), g.label.raw],
            sort_keys=True,
            default=str,
        )
        if key not in index:
            index[key] = len(groups)
            groups.append(g)
        else:
            groups[index[key]].responses.extend(g.responses)
        gi = index[key]
        where.append((gi, len(groups[gi].responses) - 1))
    rows = runtime.score_groups(groups)
    return [rows[gi][pos] for gi, pos in where]


def openrlhf_reply(rows: list[dict[str, Any]], names: list[str]) -> dict:
    """OpenRLHF's reply: per sample its reward (a bad sample: the neutral value its components
    gave) and the one log schema (:func:`~openrlhf_visualprm.rewards.combine.sample_logs`), the
    same keys for every sample, good or bad."""
    from openrlhf_visualprm.rewards.combine import sample_logs

    scores = [float(sum(r["components"][n] for n in names)) for r in rows]
    logs = [sample_logs(r, names) for r in rows]
    keys = list(logs[0]) if logs else []
    return {
        "rewards": scores,
        "scores": scores,
        "extra_logs": {k: [entry[k] for entry in logs] for k in keys},
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
    if timeout is not None:
        try:  # 10**400 is valid JSON and a Python int too large for a float
            seconds = (
                float(timeout)
                if isinstance(timeout, (int, float)) and not isinstance(timeout, bool)
                else None
            )
        except OverflowError:
            seconds = None
        if seconds is None or not math.isfinite(seconds) or seconds <= 0:
            shown = (
                repr(timeout)
                if len(repr(timeout)) < 40
                else f"{repr(timeout)[:20]}... ({len(repr(timeout))} chars)"
            )
            raise BadRequestError(f"'timeout_s' must be a positive, finite number of seconds, got {shown}")
        timeout = seconds
    return out, timeout
