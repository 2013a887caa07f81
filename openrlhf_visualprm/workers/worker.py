"""Reward worker actors: a PRM worker (VisualPRM) or a judge worker (MR. Judge).

A worker owns one model on its device and scores batches of groups that the pool sends. Each
group is scored in one scorer call (one shared prefix). A CUDA out-of-memory error does not fail
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
import logging
import os
import socket
import time
from typing import Any

import ray
import torch

from openrlhf_visualprm.log import ensure_package_handler
from openrlhf_visualprm.torch_names import as_dtype
from openrlhf_visualprm.workers.config import WorkerConfig
from openrlhf_visualprm.workers.groups import ScoreGroup
from openrlhf_visualprm.workers.scorers import GroupScorer, build_scorer

logger = logging.getLogger("openrlhf_visualprm.workers")


def resolve_device_dtype(config: WorkerConfig) -> tuple[str, torch.dtype]:
    """``auto`` picks CUDA only when this process was actually given a GPU."""
    device = config.device
    if device == "auto":
        device = "cuda" if config.num_gpus > 0 and torch.cuda.is_available() else "cpu"
    if config.dtype == "auto":
        dtype = torch.bfloat16 if device.startswith("cuda") else torch.float32
    else:
        dtype = as_dtype(config.dtype)
    return device, dtype


def _free_device_memory() -> None:
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


class RewardWorkerImpl:
    """One model, scoring batches of groups; see the module docstring."""

    expected_kind: str | None = None

    def __init__(
        self, config: WorkerConfig, worker_index: int = 0, scorer: GroupScorer | None = None
    ) -> None:
        if self.expected_kind and config.kind != self.expected_kind:
            raise ValueError(
                f"{type(self).__name__} needs WorkerConfig.kind={self.expected_kind!r}, got {config.kind!r}"
            )
        ensure_package_handler()
        self.config = config
        self.index = worker_index
        threads = config.torch_threads or max(1, int(config.num_cpus))
        torch.set_num_threads(threads)
        self.device, self.dtype = resolve_device_dtype(config)
        start = time.perf_counter()
        self.scorer = scorer if scorer is not None else build_scorer(config, self.device, self.dtype)
        self.load_s = time.perf_counter() - start
        self.counters = {"batches": 0, "groups": 0, "responses": 0, "oom_splits": 0, "errors": 0}
        self.busy_s = 0.0
        logger.info(
            "worker %d: %s model %s loaded on %s (%s) in %.1fs, pid %d",
            worker_index,
            config.kind,
            self.scorer.model_id,
            self.device,
            self.dtype,
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
            "model_id": self.scorer.model_id,
            "splittable": self.scorer.splittable,
            "device": self.device,
            "dtype": str(self.dtype),
            "pid": os.getpid(),
            "host": socket.gethostname(),
            "load_s": self.load_s,
        }

    def stats(self) -> dict[str, Any]:
        calls = list(getattr(self.scorer, "call_log", []))
        return {**self.counters, "busy_s": self.busy_s, "calls": calls, "pid": os.getpid()}

    # ------------------------------------------------------------------ scoring
    def _score_splitting(self, group: ScoreGroup) -> list[dict[str, Any]]:
        try:
            return self.scorer.score_group(group)
        except torch.OutOfMemoryError as exc:
            _free_device_memory()
            n = group.n_responses
            if n <= 1 or not self.scorer.splittable:
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

    def _score_together(self, groups: list[ScoreGroup]) -> list[dict[str, Any]] | None:
        """One scorer call for the whole batch when the scorer offers it (the judge shares its
        generation batches); ``None`` on any failure, so the caller goes group by group and an
        error stays with its own group."""
        batched = getattr(self.scorer, "score_groups", None)
        if batched is None or len(groups) < 2:
            return None
        try:
            results = batched(groups)
        except Exception as exc:
            _free_device_memory()
            logger.warning("worker %d: batched call failed (%s); scoring group by group", self.index, exc)
            return None
        if [len(r) for r in results] != [g.n_responses for g in groups]:
            return None
        return [{"results": r} for r in results]

    def _score_one(self, group: ScoreGroup) -> dict[str, Any]:
        try:
            results = self._score_splitting(group)
            if len(results) != group.n_responses:
                raise RuntimeError(
                    f"scorer returned {len(results)} results for {group.n_responses} responses"
                )
            return {"results": results}
        except Exception as exc:  # returned per group so sibling groups still succeed
            self.counters["errors"] += 1
            logger.error("worker %d: group failed: %s: %s", self.index, type(exc).__name__, exc)
            return {"error": f"{type(exc).__name__}: {exc}"}

    def score_batch(self, groups: list[ScoreGroup]) -> list[dict[str, Any]]:
        """Score each group; returns ``{"results": [...]}`` or ``{"error": msg}`` per group, in order."""
        start = time.perf_counter()
        out = self._score_together(groups)
        if out is None:
            out = [self._score_one(g) for g in groups]
        elapsed = time.perf_counter() - start
        n_resp = sum(g.n_responses for g in groups)
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
