"""Reward worker actors: a PRM worker (VisualPRM) or a judge worker (MR. Judge).

A worker hosts the same :class:`~openrlhf_visualprm.rewards.runtime.RewardRuntime` the plugin's
reward actor hosts, its one component built by the one loader
(:mod:`openrlhf_visualprm.rewards.components`) from ``WorkerConfig.component``, and scores the
batches of prepared :class:`~openrlhf_visualprm.rewards.groups.RewardGroup` the pool sends; per
response it returns the runtime's result row. Each group is scored whole (one shared prefix). A CUDA out-of-memory error does not fail
the batch: the group is split into halves of its responses (each half still shares its prefix)
and retried, down to single responses; only a single response that does not fit fails, with a
message saying what to lower. Errors are returned per group, so one bad group never fails the
other callers' groups in the same batch.

The ``*Impl`` classes are plain Python (usable without Ray); :func:`worker_class` makes their Ray
actor classes on first use. Resources (``num_gpus``, ``num_cpus``) are set by the pool with
``.options(...)``.
"""

from __future__ import annotations

import functools
import gc
import importlib
import logging
import os
import socket
import time
from typing import Any

import ray
import torch

from openrlhf_visualprm.errors import ConfigError
from openrlhf_visualprm.log import ensure_package_handler
from openrlhf_visualprm.rewards.components import Component, load_judge_component, load_prm_component
from openrlhf_visualprm.rewards.groups import RewardGroup
from openrlhf_visualprm.rewards.runtime import RewardRuntime
from openrlhf_visualprm.workers.config import WorkerConfig

logger = logging.getLogger("openrlhf_visualprm.workers")


def resolve_device(config: WorkerConfig) -> str:
    """``auto`` picks CUDA only when this process was actually given a GPU."""
    if config.device == "auto":
        return "cuda" if config.num_gpus > 0 and torch.cuda.is_available() else "cpu"
    return config.device


def _import_wrapper(spec: str) -> Any:
    module_name, _, attr = spec.partition(":")
    try:
        return getattr(importlib.import_module(module_name), attr)
    except (ImportError, AttributeError) as exc:
        raise ConfigError(
            f"WorkerConfig.scorer_wrapper {spec!r} cannot be imported in the worker ({exc}): give "
            "'module:function' with the module on the workers' PYTHONPATH (Ray runtime_env env_vars)"
        ) from exc


def build_component(config: WorkerConfig, device: str) -> Component:
    """The worker's component, loaded by the one loader from its config (as the reward actor
    loads it), passed through ``config.scorer_wrapper`` when set."""
    if config.kind == "prm":
        component: Component = load_prm_component(
            config.component, device, config.max_batch_tokens, config.attn_implementation
        )
    else:
        component = load_judge_component(config.component, device)
    if config.scorer_wrapper:
        component = _import_wrapper(config.scorer_wrapper)(component, **config.scorer_wrapper_options)
    return component


def _free_device_memory() -> None:
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


class RewardWorkerImpl:
    """One model, scoring batches of groups; see the module docstring.

    ``component``: an already built component (tests, benchmarks); default: loaded from the config.
    """

    expected_kind: str | None = None

    def __init__(
        self, config: WorkerConfig, worker_index: int = 0, component: Component | None = None
    ) -> None:
        if self.expected_kind and config.kind != self.expected_kind:
            raise ValueError(
                f"{type(self).__name__} needs a {self.expected_kind} component config, got a {config.kind} one"
            )
        ensure_package_handler()
        self.config = config
        self.index = worker_index
        threads = config.torch_threads or max(1, int(config.num_cpus))
        torch.set_num_threads(threads)
        self.device = resolve_device(config)
        start = time.perf_counter()
        self.component = component if component is not None else build_component(config, self.device)
        self.runtime = RewardRuntime({config.kind: self.component})
        self.load_s = time.perf_counter() - start
        self.model_id = config.model
        self.counters = {"batches": 0, "groups": 0, "responses": 0, "oom_splits": 0, "errors": 0}
        self.busy_s = 0.0
        self.call_log: list[dict[str, Any]] = []  # the last groups the model scored (routing checks)
        logger.info(
            "worker %d: %s model %s loaded on %s in %.1fs, pid %d",
            worker_index,
            config.kind,
            self.model_id,
            self.device,
            self.load_s,
            os.getpid(),
        )

    # ------------------------------------------------------------------ queries
    def ping(self) -> bool:
        return True

    def info(self) -> dict[str, Any]:
        return {
            "index": self.index,
            "kind": self.config.kind,
            "model_id": self.model_id,
            "splittable": bool(getattr(self.component, "splittable", False)),
            "device": self.device,
            "pid": os.getpid(),
            "host": socket.gethostname(),
            "load_s": self.load_s,
        }

    def stats(self) -> dict[str, Any]:
        return {**self.counters, "busy_s": self.busy_s, "calls": list(self.call_log), "pid": os.getpid()}

    # ------------------------------------------------------------------ scoring
    def _run(self, groups: list[RewardGroup]) -> list[list[dict[str, Any]]]:
        rows = self.runtime.score_groups(groups)
        for g, r in zip(groups, rows):
            if r is None or len(r) != g.n:
                raise RuntimeError(
                    f"the runtime returned {0 if r is None else len(r)} results for {g.n} responses"
                )
        for g in groups:  # the groups the model scored (an attempt that ran out of memory is not)
            method = g.options.get("method", getattr(self.component, "method", self.config.kind))
            self.call_log.append({"question": g.question[:80], "n_responses": g.n, "method": method})
        del self.call_log[:-256]
        return rows  # type: ignore[return-value]

    def _score_splitting(self, group: RewardGroup) -> list[dict[str, Any]]:
        try:
            return self._run([group])[0]
        except torch.OutOfMemoryError as exc:
            _free_device_memory()
            n = group.n
            if n <= 1 or not getattr(self.component, "splittable", False):
                raise RuntimeError(
                    f"out of memory scoring {'one response' if n <= 1 else f'a group of {n} (not splittable)'} "
                    f"of question {group.question[:60]!r}: lower max_tiles or the response length, or give "
                    f"the worker more GPU memory ({exc})"
                ) from None
            self.counters["oom_splits"] += 1
            half = n // 2
            logger.warning(
                "worker %d: out of memory on a group of %d responses; retrying as %d + %d",
                self.index,
                n,
                half,
                n - half,
            )
            left = self._score_splitting(group.subset(list(range(half))))
            right = self._score_splitting(group.subset(list(range(half, n))))
            return left + right

    def _score_together(self, groups: list[RewardGroup]) -> list[dict[str, Any]] | None:
        """One runtime call for the whole batch (the PRM batches suffixes across groups, the judge
        its generations); ``None`` on any failure, so the caller goes group by group and an error
        stays with its own group."""
        if len(groups) < 2:
            return None
        try:
            rows = self._run(groups)
        except Exception as exc:
            _free_device_memory()
            logger.warning("worker %d: batched call failed (%s); scoring group by group", self.index, exc)
            return None
        return [{"results": r} for r in rows]

    def _score_one(self, group: RewardGroup) -> dict[str, Any]:
        try:
            results = self._score_splitting(group)
            if len(results) != group.n:
                raise RuntimeError(f"scored {len(results)} results for {group.n} responses")
            return {"results": results}
        except Exception as exc:  # returned per group so sibling groups still succeed
            self.counters["errors"] += 1
            logger.error("worker %d: group failed: %s: %s", self.index, type(exc).__name__, exc)
            return {"error": f"{type(exc).__name__}: {exc}"}

    def score_batch(self, groups: list[RewardGroup]) -> list[dict[str, Any]]:
        """Score each group; returns ``{"results": [row, ...]}`` or ``{"error": msg}`` per group, in order."""
        start = time.perf_counter()
        out = self._score_together(groups)
        if out is None:
            out = [self._score_one(g) for g in groups]
        elapsed = time.perf_counter() - start
        n_resp = sum(g.n for g in groups)
        self.busy_s += elapsed
        self.counters["batches"] += 1
        self.counters["groups"] += len(groups)
        self.counters["responses"] += n_resp
        logger.info(
            "worker %d: batch of %d groups / %d responses in %.2fs (%.1f responses/s)",
            self.index,
            len(groups),
            n_resp,
            elapsed,
            n_resp / max(elapsed, 1e-9),
        )
        return out


class PRMWorkerImpl(RewardWorkerImpl):
    expected_kind = "prm"


class JudgeWorkerImpl(RewardWorkerImpl):
    expected_kind = "judge"


@functools.cache
def worker_class(kind: str):
    """The Ray actor class for a worker kind, made on first use (nothing Ray-side at import)."""
    if kind not in ("prm", "judge"):
        raise ValueError(f"unknown worker kind {kind!r}: 'prm' or 'judge'")
    return ray.remote(PRMWorkerImpl if kind == "prm" else JudgeWorkerImpl)
