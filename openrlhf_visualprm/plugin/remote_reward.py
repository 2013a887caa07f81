"""The logic behind ``reward_fns/*.py``: OpenRLHF's ``reward_func`` protocol on plugin rewards.

With ``--reward.remote_url reward_fns/visualprm.py`` (stock OpenRLHF launcher, no plugin hooks)
OpenRLHF calls ``reward_func(queries, prompts, labels)`` inside each vLLM engine actor, **one
sample per call, without images or sibling responses**. So the image comes from the label (see
:mod:`openrlhf_visualprm.plugin.labels`), the response is the query minus its prompt, and:

- ``visualprm``: the PRM scores the single response. Where it runs, by environment variable:
  ``OPENRLHF_VISUALPRM_POOL`` = name of a running ``RewardPool`` (issue-5 workers; recommended:
  models stay on dedicated GPUs), else ``OPENRLHF_VISUALPRM_PRM_MODEL`` = alias or path loaded
  in this process (``OPENRLHF_VISUALPRM_DEVICE``, default cuda if present). Aggregation:
  ``OPENRLHF_VISUALPRM_PRM_AGGREGATION`` (mean).
- ``mr_judge``: with one response per call the judge can only compare it with the label's
  ``"reference"`` answer (schedule ``reference``, both orders). ``OPENRLHF_VISUALPRM_JUDGE_MODEL``
  names the judge (``mr-judge`` default), ``OPENRLHF_VISUALPRM_JUDGE_BACKEND`` (hf),
  ``OPENRLHF_VISUALPRM_JUDGE_MAX_NEW_TOKENS`` (1024).
- ``outcome``: math answer check against the label's ``"answer"``.
Image paths must lie under ``OPENRLHF_VISUALPRM_IMAGE_ROOTS`` (``os.pathsep``-separated).

Return value, as OpenRLHF expects: ``{"rewards": tensor(B), "scores": tensor(B),
"extra_logs": {name: tensor(B)}}``. A sample whose input is unusable (no image, image outside
the roots, no ground truth, no reference) gets the neutral reward
``OPENRLHF_VISUALPRM_NEUTRAL_REWARD`` (0.0), is logged at ERROR level with the reason, and is
counted in ``extra_logs["reward_fn/failed"]``; OpenRLHF would otherwise swallow the exception
and the sample would have no reward at all. A missing model or pool raises.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable
from typing import Any

import torch

from openrlhf_visualprm.plugin.labels import ground_truth, image_refs, parse_label, question_text

logger = logging.getLogger("openrlhf_visualprm.reward_fn")
_LOCK = threading.Lock()
_CACHE: dict[str, Any] = {}


class SampleError(ValueError):
    """This sample cannot be scored (bad label, image, missing ground truth); others can."""


def _env(name: str, default: str | None = None) -> str | None:
    value = os.environ.get(name)
    return value if value not in (None, "") else default


def _roots():
    from openrlhf_visualprm.images import ImageRoots

    roots = [r for r in (_env("OPENRLHF_VISUALPRM_IMAGE_ROOTS", "") or "").split(os.pathsep) if r]
    return ImageRoots.of(roots or None)


def _device() -> str:
    return _env("OPENRLHF_VISUALPRM_DEVICE") or ("cuda" if torch.cuda.is_available() else "cpu")


def _cached(key: str, build: Callable[[], Any]) -> Any:
    with _LOCK:
        if key not in _CACHE:
            _CACHE[key] = build()
        return _CACHE[key]


def _response(query: str, prompt: str) -> str:
    from openrlhf_visualprm.workers.errors import BadRequestError
    from openrlhf_visualprm.workers.protocol import extract_response

    try:
        return extract_response(query, prompt, "query")
    except BadRequestError as exc:
        raise SampleError(str(exc)) from None


def _images(label: dict) -> list:
    from openrlhf_visualprm.images import ImageError, load_image

    refs = image_refs(label)
    if not refs:
        raise SampleError('label has no image: add "images": [path, ...] (or "image") to the label column')
    try:
        return [load_image(ref, _roots()) for ref in refs]
    except ImageError as exc:
        raise SampleError(str(exc)) from None


# ----------------------------------------------------------------------------- components
def score_prm(query: str, prompt: str, label: Any) -> tuple[float, dict[str, float]]:
    label = parse_label(label)
    response, images = _response(query, prompt), _images(label)
    question = question_text(label, prompt)
    aggregation = _env("OPENRLHF_VISUALPRM_PRM_AGGREGATION", "mean")
    pool_name = _env("OPENRLHF_VISUALPRM_POOL")
    if pool_name:
        from openrlhf_visualprm.workers.pool import RewardPool

        pool = _cached(f"pool:{pool_name}", lambda: RewardPool.get(pool_name))
        group = {
            "images": images,
            "question": question,
            "responses": [response],
            "config": {"aggregation": aggregation},
        }
        result = pool.score_groups([group])[0][0]
    else:
        model = _env("OPENRLHF_VISUALPRM_PRM_MODEL")
        if not model:
            raise RuntimeError(
                "reward_fns/visualprm.py needs OPENRLHF_VISUALPRM_POOL (a running reward pool) or "
                "OPENRLHF_VISUALPRM_PRM_MODEL (alias or checkpoint to load in the vLLM actor)"
            )
        from openrlhf_visualprm.prm.scorer import VisualPRM

        device = _device()
        dtype = "bfloat16" if device.startswith("cuda") else "float32"
        prm = _cached(f"prm:{model}", lambda: VisualPRM.from_pretrained(model, device=device, dtype=dtype))
        with _LOCK:
            result = prm.score(images, question, responses=[response], aggregation=aggregation)[0].to_dict()
    steps = result.get("step_scores") or []
    logs = {
        "prm_num_steps": float(len(steps)),
        "prm_min_step": float(min(steps)) if steps else float(result["score"]),
        "prm_truncated": float(bool(result.get("truncated"))),
    }
    return float(result["score"]), logs


def score_judge(query: str, prompt: str, label: Any) -> tuple[float, dict[str, float]]:
    label = parse_label(label)
    reference = label.get("reference")
    if not isinstance(reference, str) or not reference.strip():
        raise SampleError(
            'reward_fns/mr_judge.py sees one response per call, so it judges it against the label\'s "reference" '
            "answer, and this label has none"
        )
    response, images = _response(query, prompt), _images(label)
    from openrlhf_visualprm.judge.judge import MRJudge

    model = _env("OPENRLHF_VISUALPRM_JUDGE_MODEL", "mr-judge")
    backend = _env("OPENRLHF_VISUALPRM_JUDGE_BACKEND", "hf")
    max_new = int(_env("OPENRLHF_VISUALPRM_JUDGE_MAX_NEW_TOKENS", "1024"))
    judge = _cached(
        f"judge:{model}:{backend}:{max_new}",
        lambda: MRJudge.from_pretrained(
            model, backend=backend, device=_device(), max_new_tokens=max_new, schedule="reference"
        ),
    )
    with _LOCK:
        result = judge.judge_group(images, question_text(label, prompt), [response], reference=reference)
    logs = {"judge_parse_failure_rate": float(result.stats.get("parse_failure_rate") or 0.0)}
    return float(result.rewards[0]), logs


def score_outcome(query: str, prompt: str, label: Any) -> tuple[float, dict[str, float]]:
    from openrlhf_visualprm.answers import extract_final_answer, verify_answers

    label = parse_label(label)
    truth = ground_truth(label, _env("OPENRLHF_VISUALPRM_ANSWER_KEY", "answer"))
    if truth is None:
        raise SampleError('label has no ground truth: add "answer" to the label column')
    answer = extract_final_answer(_response(query, prompt))
    correct = verify_answers(
        [answer], [truth], timeout_s=float(_env("OPENRLHF_VISUALPRM_ANSWER_TIMEOUT", "5"))
    )[0]
    return (1.0 if correct else 0.0), {"outcome_no_answer": float(answer is None)}


# ----------------------------------------------------------------------------- the protocol
def make_reward_func(score: Callable[[str, str, Any], tuple[float, dict[str, float]]]):
    """Wrap a one-sample scorer into OpenRLHF's batched ``reward_func`` contract."""

    def reward_func(queries: list[str], prompts: list[str], labels: list[Any], **kwargs) -> dict:
        if not (len(queries) == len(prompts) == len(labels)):
            raise ValueError(
                f"{len(queries)} queries, {len(prompts)} prompts, {len(labels)} labels: must match"
            )
        neutral = float(_env("OPENRLHF_VISUALPRM_NEUTRAL_REWARD", "0.0"))
        rewards, per_sample = [], []
        for i, (query, prompt, label) in enumerate(zip(queries, prompts, labels)):
            try:
                reward, logs = score(query, prompt, label)
                logs = {**logs, "reward_fn/failed": 0.0}
            except (SampleError, ValueError) as exc:
                logger.error("sample %d gets the neutral reward %s: %s", i, neutral, exc)
                reward, logs = neutral, {"reward_fn/failed": 1.0}
            rewards.append(reward)
            per_sample.append(logs)
        keys = sorted(set().union(*per_sample)) if per_sample else []
        extra = {}
        for key in keys:  # a key missing for a failed sample takes the mean of the others
            present = [d[key] for d in per_sample if key in d]
            mean = sum(present) / len(present)
            extra[key] = torch.tensor([d.get(key, mean) for d in per_sample], dtype=torch.float32)
        tensor = torch.tensor(rewards, dtype=torch.float32)
        return {"rewards": tensor, "scores": tensor.clone(), "extra_logs": extra}

    return reward_func
