"""The host behind ``reward_fns/*.py``: OpenRLHF's ``reward_func`` protocol on the reward runtime.

It runs inside OpenRLHF's vLLM engine actors (a Ray process) and scores in that process or
through a reward pool, so it lives with the other hosts of the runtime (the pool, the HTTP
service); it imports nothing from OpenRLHF.

With ``--reward.remote_url reward_fns/visualprm.py`` (stock OpenRLHF launcher, no plugin hooks)
OpenRLHF calls ``reward_func(queries, prompts, labels)`` inside each vLLM engine actor, **one
sample per call, without images or sibling responses**. So the image comes from the label (the
schema is in :mod:`openrlhf_visualprm.labels`), the response is separated from the query by
:func:`openrlhf_visualprm.labels.extract_response` (which handles a VLM processor's expanded
image tokens), and the sample is scored by the same reward runtime the plugin's reward actor
uses (:mod:`openrlhf_visualprm.rewards`), so it gets the same reward:

- ``visualprm``: the PRM scores the single response. Where it runs, by environment variable:
  ``OPENRLHF_VISUALPRM_POOL`` = name of a running ``RewardPool`` (recommended: models stay on
  dedicated GPUs), else ``OPENRLHF_VISUALPRM_PRM_MODEL`` = alias or path loaded in this process
  (``OPENRLHF_VISUALPRM_DEVICE``, default cuda if present). Scoring options:
  ``OPENRLHF_VISUALPRM_PRM_{AGGREGATION,METHOD,MAX_STEPS,SPLITTER,TEMPERATURE,MAX_TILES,DTYPE}``,
  parsed into :class:`~openrlhf_visualprm.prm.config.PRMConfig` (its defaults when unset).
- ``mr_judge``: with one response per call the judge can only compare it with the label's
  ``"reference"`` answer (schedule ``reference``). ``OPENRLHF_VISUALPRM_JUDGE_MODEL`` names the
  judge (``mr-judge`` default), ``OPENRLHF_VISUALPRM_JUDGE_BACKEND``,
  ``OPENRLHF_VISUALPRM_JUDGE_MAX_NEW_TOKENS`` (:class:`~openrlhf_visualprm.judge.config.JudgeConfig`).
- ``outcome``: math answer check against the label's ``"answer"``
  (``OPENRLHF_VISUALPRM_ANSWER_KEY``, ``_ANSWER_TIMEOUT``, ``_OUTCOME_CHECKER``).
Image paths must lie under ``OPENRLHF_VISUALPRM_IMAGE_ROOTS`` (absolute folders, ``os.pathsep``
separated: this code runs in Ray workers, whose working directory is not yours).

Return value, as OpenRLHF expects: ``{"rewards": tensor(B), "scores": tensor(B),
"extra_logs": {name: tensor(B)}}``. Failure policy, as on every route: a bad sample
(:class:`~openrlhf_visualprm.errors.InputError`: no image, image outside the roots, malformed
label, no ground truth, no reference, a query without its prompt) gets the neutral reward 0, is
logged at ERROR level with the reason and counted in ``extra_logs["reward/failed_group"]``; every
sample, good or bad, returns the same log keys (the one schema,
:func:`~openrlhf_visualprm.rewards.combine.sample_logs`), which OpenRLHF's batch bookkeeping needs. Samples
arrive one at a time, so no step-level guard sees them; each process instead keeps the last
``OPENRLHF_VISUALPRM_FAILURE_WINDOW`` samples per component (64) and raises
:class:`~openrlhf_visualprm.errors.RewardFailureError` when more than
``OPENRLHF_VISUALPRM_MAX_FAILED_FRACTION`` (0.5, the launcher's default) of them were bad: a run
whose samples are all bad stops instead of training on zeros. Any
other error (missing model or pool, bad setting, model failure) is logged at ERROR level and
raised: OpenRLHF then has no reward for the sample and its experience maker stops the run.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable
from typing import Any

from openrlhf_visualprm import envs
from openrlhf_visualprm.errors import ConfigError, InputError
from openrlhf_visualprm.labels import extract_response

logger = logging.getLogger("openrlhf_visualprm.reward_fn")
_LOCK = threading.Lock()
_CACHE: dict[str, Any] = {}


def _cached(key: str, build: Callable[[], Any]) -> Any:
    with _LOCK:
        if key not in _CACHE:
            _CACHE[key] = build()
        return _CACHE[key]


def _roots():
    from openrlhf_visualprm.images import ImageRoots

    roots = [r for r in (envs.get("OPENRLHF_VISUALPRM_IMAGE_ROOTS") or "").split(os.pathsep) if r]
    relative = [r for r in roots if not os.path.isabs(os.path.expanduser(r))]
    if relative:
        raise ConfigError(
            f"OPENRLHF_VISUALPRM_IMAGE_ROOTS has relative folders {relative}: reward_fns run in Ray workers, whose "
            "working directory is not yours; give absolute paths"
        )
    return ImageRoots.of(roots or None)


def _device() -> str:
    from openrlhf_visualprm.torch_names import resolve_device

    return resolve_device(envs.get("OPENRLHF_VISUALPRM_DEVICE") or "auto")


def env_configs() -> dict[str, type]:
    """Component -> config type whose fields the ``OPENRLHF_VISUALPRM_<COMPONENT>_*`` variables set."""
    from openrlhf_visualprm.judge.config import JudgeConfig
    from openrlhf_visualprm.outcome.config import OutcomeConfig
    from openrlhf_visualprm.prm.config import PRMConfig

    return {"prm": PRMConfig, "judge": JudgeConfig, "outcome": OutcomeConfig}


def env_vars() -> dict[str, envs.EnvVar]:
    """Every variable this route reads: the fixed ones and those generated from the config fields."""
    generated = [v for name, cls in env_configs().items() for v in envs.config_vars(name, cls)]
    return {**envs.VARS, **{v.name: v for v in generated}}


def _config_from_env(component: str, **fixed):
    return envs.config_from_env(component, env_configs()[component], **fixed)


def prm_config_from_env():
    """The PRM settings of ``reward_fns/visualprm.py``, parsed into the one PRM config type."""
    model = envs.get("OPENRLHF_VISUALPRM_PRM_MODEL")
    return _config_from_env("prm", **({"model": model} if model else {}))


def judge_config_from_env():
    # the alias: OPENRLHF_VISUALPRM_JUDGE_MODEL overrides it in the resolver; one sample at a time
    # reaches this route, so it is judged against the label's reference
    return _config_from_env("judge", model="mr-judge", schedule="reference")


def outcome_config_from_env():
    return _config_from_env("outcome")


# ----------------------------------------------------------------------------- components
def _prm_component():
    from openrlhf_visualprm.rewards.components import load_prm_component

    cfg = prm_config_from_env()
    pool_name = envs.get("OPENRLHF_VISUALPRM_POOL")
    if pool_name:
        from openrlhf_visualprm.workers.component import PoolComponent
        from openrlhf_visualprm.workers.pool import RewardPool

        pool = RewardPool.get(pool_name)
        kind = pool.config.worker.kind
        if kind != "prm":
            raise ConfigError(f"OPENRLHF_VISUALPRM_POOL={pool_name!r} runs {kind} workers, not a PRM")
        if not envs.get("OPENRLHF_VISUALPRM_PRM_MODEL"):  # no checkpoint asked: the pool's is the one
            from dataclasses import replace

            loaded = pool.config.worker.component
            cfg = replace(cfg, model=loaded.model, path=loaded.path)
        return PoolComponent.for_config(pool, cfg, f"OPENRLHF_VISUALPRM_POOL={pool_name!r}")
    if not envs.get("OPENRLHF_VISUALPRM_PRM_MODEL"):
        raise ConfigError(
            "reward_fns/visualprm.py needs OPENRLHF_VISUALPRM_POOL (a running reward pool) or "
            "OPENRLHF_VISUALPRM_PRM_MODEL (alias or checkpoint to load in the vLLM actor)"
        )
    return load_prm_component(cfg, _device())


def _judge_component():
    from openrlhf_visualprm.rewards.components import load_judge_component

    return load_judge_component(judge_config_from_env(), _device())


def _outcome_component():
    from openrlhf_visualprm.rewards.components import outcome_component

    return outcome_component(outcome_config_from_env())


_BUILDERS = {"prm": _prm_component, "judge": _judge_component, "outcome": _outcome_component}


def _runtime(name: str):
    from openrlhf_visualprm.rewards.runtime import RewardRuntime

    settings = envs.snapshot(list(env_vars()))  # a changed setting: rebuild
    return _cached(f"runtime:{name}:{settings}", lambda: RewardRuntime({name: _BUILDERS[name]()}))


def _failure_window(name: str):
    from openrlhf_visualprm.rewards.guard import (
        DEFAULT_FAILURE_WINDOW,
        DEFAULT_MAX_FAILED_FRACTION,
        FailureWindow,
    )

    size = envs.number("OPENRLHF_VISUALPRM_FAILURE_WINDOW", integer=True)
    fraction = envs.number("OPENRLHF_VISUALPRM_MAX_FAILED_FRACTION")
    size = DEFAULT_FAILURE_WINDOW if size is None else size
    fraction = DEFAULT_MAX_FAILED_FRACTION if fraction is None else fraction
    names = ("OPENRLHF_VISUALPRM_FAILURE_WINDOW", "OPENRLHF_VISUALPRM_MAX_FAILED_FRACTION")
    return _cached(f"failures:{name}:{size}:{fraction}", lambda: FailureWindow(size, fraction, names))


def score_samples(name: str, queries: list[str], prompts: list[str], labels: list[Any]) -> list[dict]:
    """The runtime's row for each sample (component ``name``): the one preparation, bad samples
    recorded (their ``error`` is the reason), the same runtime every route runs."""
    from openrlhf_visualprm.rewards.groups import NEEDS, RewardGroup, prepare_group

    runtime = _runtime(name)
    answer_key = getattr(runtime.components[name], "answer_key", "answer")
    groups = []
    for i, (query, prompt, label) in enumerate(zip(queries, prompts, labels)):
        try:
            response = extract_response(query, prompt, f"query[{i}]")
        except InputError as exc:
            groups.append(RewardGroup("", [""], broken={need: f"{exc.reason}: {exc}" for need in NEEDS}))
            continue
        raw = {"prompt": prompt, "label": label, "images": None, "responses": [response]}
        groups.append(
            prepare_group(raw, _roots(), answer_key, load_images=name != "outcome", where=f"labels[{i}]")
        )
    with _LOCK:
        return [rows[0] for rows in runtime.score_groups(groups)]


# ----------------------------------------------------------------------------- the protocol
def make_reward_func(name: str):
    """OpenRLHF's batched ``reward_func`` contract on component ``name`` (prm, judge, outcome).

    Args:
        name: the component the function scores with.

    Returns:
        ``reward_func(queries, prompts, labels, **kwargs) -> {"rewards", "scores", "extra_logs"}``:
        one float32 tensor entry per sample. A bad sample (an InputError) gets 0 and
        ``reward/failed_group = 1``; any other error is logged at ERROR level and raised.

    Raises:
        ConfigError: an unknown component name.
    """
    if name not in _BUILDERS:
        raise ConfigError(f"unknown reward component {name!r}; one of {sorted(_BUILDERS)}")

    def reward_func(queries: list[str], prompts: list[str], labels: list[Any], **kwargs) -> dict:
        from openrlhf_visualprm.rewards.combine import sample_logs

        if not (len(queries) == len(prompts) == len(labels)):
            raise ValueError(
                f"{len(queries)} queries, {len(prompts)} prompts, {len(labels)} labels: must match"
            )
        try:
            rows = score_samples(name, queries, prompts, labels)
            window = _failure_window(name)
            for i, row in enumerate(rows):
                if row["error"]:
                    logger.error(
                        "reward_fns %s: sample %d gets the neutral reward %s: %s",
                        name,
                        i,
                        row["components"][name],
                        row["error"],
                    )
                with _LOCK:
                    window.record(row["error"], f"scored by reward_fns {name} in this process")
        except Exception:  # not a bad sample: OpenRLHF would log it at INFO only, so say it loudly
            logger.exception("reward_fns %s: scoring failed; this stops the run", name)
            raise
        import torch  # here: importing a reward_fns file (and --help) stays torch-free

        logs = [sample_logs(row, [name]) for row in rows]  # the same keys for every sample
        extra = {
            key: torch.tensor([entry[key] for entry in logs], dtype=torch.float32)
            for key in (logs[0] if logs else {})
        }
        tensor = torch.tensor([row["components"][name] for row in rows], dtype=torch.float32)
        return {"rewards": tensor, "scores": tensor.clone(), "extra_logs": extra}

    return reward_func
