"""The reward pool: N reward workers behind one named router actor that any process can find.

``RewardPool.start(config)`` reserves a placement group (one bundle per worker, ``PACK`` or
``SPREAD`` across nodes), starts the workers and a router actor registered under
``config.name`` in ``config.namespace``. Any process in the same Ray cluster (for example a
reward function running inside an OpenRLHF vLLM actor) calls ``RewardPool.get(name, namespace)``
and scores through the same workers without loading a model.

The router (an async actor) does the scheduling:
- a group goes whole to one worker (the one with the least queued work), so its responses share
  the image + question prefix;
- each worker has a queue; its dispatcher sends everything queued, up to
  ``WorkerConfig.max_batch_tokens``, as one batch (concurrent callers batch together);
- results are cached (per response for the PRM, per group for the judge) and handed back in the
  caller's order;
- a worker that dies is restarted in its placement-group bundle and the batch it held is
  resubmitted first (each request's future is completed once, so nothing is lost or doubled);
  past ``max_restarts`` within ``restart_window_s`` its queue moves to the other workers and the
  slot stays out for one window (``stats``/``/health`` say which and why), then is tried again;
- each request has a timeout (``RewardTimeoutError``) and the queue is bounded: a caller that
  finds it full waits, up to its timeout, then gets ``PoolBusyError``.
"""

from __future__ import annotations

import asyncio
import collections
import functools
import json
import logging
import time
from dataclasses import asdict, dataclass, field, replace
from typing import Any

import ray
from ray.util.placement_group import placement_group, remove_placement_group
from ray.util.scheduling_strategies import PlacementGroupSchedulingStrategy

from openrlhf_visualprm.images import ImageRoots, shrink_for_tiling
from openrlhf_visualprm.log import ensure_package_handler
from openrlhf_visualprm.rewards.groups import RewardGroup, prepare_groups
from openrlhf_visualprm.workers.cache import ResultCache, make_key
from openrlhf_visualprm.workers.config import DEFAULT_NAMESPACE, DEFAULT_POOL_NAME, PoolConfig
from openrlhf_visualprm.workers.errors import (
    BadRequestError,
    PoolBusyError,
    RewardTimeoutError,
    WorkerFailedError,
)
from openrlhf_visualprm.workers.metrics import LATENCY_BUCKETS, SIZE_BUCKETS, Histogram
from openrlhf_visualprm.workers.worker import worker_class

logger = logging.getLogger("openrlhf_visualprm.workers")


@dataclass
class _Item:
    group: RewardGroup
    tokens: int
    future: asyncio.Future
    cancelled: bool = False
    released: bool = False  # its place in the bounded queue has been given back


# Parts a pool's components never need unless their config says so (a truth for the outcome
# check, which no pool runs; a reference, which the judge's runtime in the worker checks).
_NOT_NEEDED_BY_POOLS = {"truth", "reference"}


def estimate_tokens(group: RewardGroup, image_tokens_per_image: int) -> int:
    """Rough LLM token count of scoring a group on the shared-prefix path (for batching)."""
    return (
        len(group.images) * image_tokens_per_image
        + len(group.question) // 3
        + sum(len(t) // 3 + 4 for t in group.unit_texts())
    )


@dataclass
class _Slot:
    index: int
    handle: Any = None
    queue: collections.deque = field(default_factory=collections.deque)
    in_flight: list = field(default_factory=list)
    alive: bool = True
    restarts: int = 0
    restart_times: collections.deque = field(default_factory=collections.deque)
    out_reason: str | None = None  # why the slot is out of service (None while alive)
    wake: asyncio.Event = field(default_factory=asyncio.Event)

    def load(self) -> int:
        return sum(i.tokens for i in self.queue) + sum(i.tokens for i in self.in_flight)


def _bundle(config: PoolConfig) -> dict[str, float]:
    w = config.worker
    bundle = {"CPU": float(w.num_cpus)}
    if w.num_gpus > 0:
        bundle["GPU"] = float(w.num_gpus)
    return {k: v for k, v in bundle.items() if v > 0} or {"CPU": 0.001}


class PoolRouter:
    """The async router actor; use it through ``RewardPool``."""

    def __init__(self, config: PoolConfig, pg: Any) -> None:
        ensure_package_handler()
        self.config = config
        self.pg = pg
        self.cache = ResultCache(config.cache_size)
        self.slots: list[_Slot] = []
        self.tasks: list[asyncio.Task] = []
        self.model_id = ""
        self.per_response_cache = True
        self.pending = 0
        self.space: asyncio.Condition | None = None
        self.counters = collections.Counter()
        self.latency = Histogram(LATENCY_BUCKETS)
        self.batch_groups = Histogram(SIZE_BUCKETS)
        self.batch_responses = Histogram(SIZE_BUCKETS)
        self.started_at = time.time()

    # ------------------------------------------------------------------ lifecycle
    def _spawn(self, index: int) -> Any:
        w = self.config.worker
        return (
            worker_class(w.kind)
            .options(
                num_cpus=w.num_cpus,
                num_gpus=w.num_gpus,
                max_restarts=0,
                scheduling_strategy=PlacementGroupSchedulingStrategy(
                    placement_group=self.pg, placement_group_bundle_index=index
                ),
            )
            .remote(w, index)
        )

    async def start(self) -> dict[str, Any]:
        self.space = asyncio.Condition()
        self.slots = [_Slot(index=i, handle=self._spawn(i)) for i in range(self.config.num_workers)]
        infos = await asyncio.gather(*[s.handle.info.remote() for s in self.slots])
        self.model_id = infos[0]["model_id"]
        self.per_response_cache = bool(infos[0]["splittable"])
        loop = asyncio.get_running_loop()
        self.tasks = [loop.create_task(self._dispatch(s)) for s in self.slots]
        logger.info(
            "pool %s: %d %s workers ready (model %s)",
            self.config.name,
            len(self.slots),
            self.config.worker.kind,
            self.model_id,
        )
        return {"model_id": self.model_id, "workers": infos}

    def get_config(self) -> PoolConfig:
        return self.config

    def worker_handles(self) -> list[Any]:
        return [s.handle for s in self.slots]

    async def shutdown(self) -> None:
        for t in self.tasks:
            t.cancel()
        for s in self.slots:
            for item in list(s.queue) + list(s.in_flight):
                self._finish(item, exc=WorkerFailedError("the reward pool was shut down"))
            try:
                ray.kill(s.handle)
            except Exception:  # already gone
                pass
        try:
            remove_placement_group(self.pg)
        except Exception:
            pass

    # ------------------------------------------------------------------ scheduling
    def _release(self, item: _Item) -> None:
        if not item.released:
            item.released = True
            self.pending -= 1

    def _finish(self, item: _Item, result: Any = None, exc: BaseException | None = None) -> None:
        self._release(item)
        if item.future.done():
            return
        if exc is not None:
            item.future.set_exception(exc)
        else:
            item.future.set_result(result)

    def _abandon(self, items: list[_Item]) -> int:
        """Cancel items nobody waits for and release their queue places; returns how many were
        still unfinished. Waiters for space are woken by a task (this may run while cancelled)."""
        unfinished = 0
        for item in items:
            if not item.released:
                unfinished += 1
            item.cancelled = True
            self._release(item)
            item.future.cancel()
        asyncio.get_running_loop().create_task(self._notify_space())
        return unfinished

    async def _notify_space(self) -> None:
        assert self.space is not None
        async with self.space:
            self.space.notify_all()

    def _route(self, item: _Item) -> None:
        alive = [s for s in self.slots if s.alive]
        if not alive:
            reasons = "; ".join(f"worker {s.index} {s.out_reason}" for s in self.slots if s.out_reason)
            self._finish(
                item,
                exc=WorkerFailedError(
                    f"no live reward worker right now ({reasons or 'all out'}); retry after the window"
                ),
            )
            return
        slot = min(alive, key=lambda s: (s.load(), s.index))
        slot.queue.append(item)
        slot.wake.set()

    def _take_batch(self, slot: _Slot) -> list[_Item]:
        budget = self.config.worker.max_batch_tokens
        batch: list[_Item] = []
        used = 0
        while slot.queue:
            item = slot.queue[0]
            if item.cancelled or item.future.done():
                self._release(slot.queue.popleft())  # its caller gave up: give its place back
                continue
            if batch and used + item.tokens > budget:
                break
            batch.append(slot.queue.popleft())
            used += item.tokens
        return batch

    async def _dispatch(self, slot: _Slot) -> None:
        while slot.alive:
            if not slot.queue:
                slot.wake.clear()
                await slot.wake.wait()
                continue
            batch = self._take_batch(slot)
            if not batch:
                await self._notify_space()
                continue
            slot.in_flight = batch
            self.counters["batches"] += 1
            self.batch_groups.observe(len(batch))
            self.batch_responses.observe(sum(i.group.n for i in batch))
            try:
                outs = await slot.handle.score_batch.remote([i.group for i in batch])
            except ray.exceptions.RayActorError as exc:
                slot.in_flight = []
                live = [i for i in batch if not i.cancelled and not i.future.done()]
                self.counters["worker_deaths"] += 1
                self.counters["resubmitted_groups"] += len(live)
                logger.warning(
                    "pool %s: worker %d died with %d groups in flight (%s); resubmitting them",
                    self.config.name,
                    slot.index,
                    len(live),
                    type(exc).__name__,
                )
                slot.queue.extendleft(reversed(live))
                await self._restart(slot)
                continue
            except Exception as exc:  # a bug or transport failure: fail these groups, keep serving
                slot.in_flight = []
                for item in batch:
                    self._finish(item, exc=WorkerFailedError(f"worker {slot.index} failed: {exc}"))
                await self._notify_space()
                continue
            slot.in_flight = []
            for item, out in zip(batch, outs):
                self._finish(item, result=out)
            await self._notify_space()

    def _restart_budget_left(self, slot: _Slot) -> bool:
        horizon = time.monotonic() - self.config.restart_window_s
        while slot.restart_times and slot.restart_times[0] < horizon:
            slot.restart_times.popleft()
        return len(slot.restart_times) < self.config.max_restarts

    async def _take_out(self, slot: _Slot) -> None:
        """Out of budget: move the slot's work elsewhere, wait one window, then try it again."""
        window = self.config.restart_window_s
        slot.alive = False
        slot.out_reason = (
            f"died {len(slot.restart_times) + 1} times within {window:.0f}s (budget: "
            f"{self.config.max_restarts} restarts per {window:.0f}s); out until "
            f"{time.strftime('%H:%M:%S', time.localtime(time.time() + window))}"
        )
        self.counters["workers_taken_out"] += 1
        moved = [i for i in slot.queue if not i.cancelled and not i.future.done()]
        slot.queue.clear()
        logger.error(
            "pool %s: worker %d %s; moving %d groups to the other workers",
            self.config.name,
            slot.index,
            slot.out_reason,
            len(moved),
        )
        for item in moved:
            self._route(item)
        await asyncio.sleep(window)
        slot.restart_times.clear()
        slot.alive = True
        slot.out_reason = None
        logger.info(
            "pool %s: worker %d: restart window over, starting it again", self.config.name, slot.index
        )

    async def _restart(self, slot: _Slot) -> None:
        while True:
            if not self._restart_budget_left(slot):
                await self._take_out(slot)
            slot.restart_times.append(time.monotonic())
            slot.restarts += 1
            self.counters["restarts"] += 1
            try:
                ray.kill(slot.handle)
            except Exception:
                pass
            slot.handle = self._spawn(slot.index)
            try:
                await slot.handle.ping.remote()
                logger.info(
                    "pool %s: worker %d restarted (restart %d)", self.config.name, slot.index, slot.restarts
                )
                return
            except ray.exceptions.RayActorError as exc:
                logger.error("pool %s: restarting worker %d failed: %s", self.config.name, slot.index, exc)

    # ------------------------------------------------------------------ public
    def _cache_key(self, group: RewardGroup, text: str) -> tuple:
        options = json.dumps([group.options, group.reference], sort_keys=True, default=str)
        unit = "steps" if group.steps is not None else "text"
        return make_key(self.model_id, group.image_hashes, group.question, text, options, unit)

    async def _reserve(self, n: int, deadline: float) -> None:
        assert self.space is not None
        limit = self.config.max_pending_groups
        async with self.space:
            try:
                await asyncio.wait_for(
                    self.space.wait_for(lambda: self.pending == 0 or self.pending + n <= limit),
                    timeout=max(0.0, deadline - time.monotonic()),
                )
            except (asyncio.TimeoutError, TimeoutError):
                self.counters["busy_rejections"] += 1
                raise PoolBusyError(
                    f"reward pool {self.config.name!r} queue stayed full ({self.pending} of {limit} groups "
                    "pending) for the whole request timeout: slow down, retry later, or add workers"
                ) from None
            self.pending += n

    async def score_groups(
        self, groups: list[RewardGroup], timeout_s: float | None = None
    ) -> list[list[dict]]:
        """Score prepared groups; one list of runtime result rows per group, in the given order."""
        if self.space is None:
            raise WorkerFailedError("the reward pool was not started (call RewardPool.start)")
        start = time.monotonic()
        timeout = float(timeout_s or self.config.request_timeout_s)
        deadline = start + timeout
        self.counters["requests"] += 1
        self.counters["groups"] += len(groups)
        loop = asyncio.get_running_loop()
        tokens_per_image = self.config.worker.image_tokens_per_image
        results: list[list[Any]] = []
        waits: list[tuple[int, list[int], _Item]] = []
        keys_of: list[list[tuple]] = []
        for gi, group in enumerate(groups):
            if not isinstance(group, RewardGroup) or group.broken.keys() - _NOT_NEEDED_BY_POOLS:
                raise BadRequestError(
                    f"groups[{gi}] is a {type(group).__name__} or a broken group; prepare it with RewardPool.prepare"
                )
            texts = group.unit_texts()
            self.counters["responses"] += len(texts)
            keys = (
                [self._cache_key(group, t) for t in texts]
                if self.per_response_cache
                else [self._cache_key(group, json.dumps(texts))]
            )
            keys_of.append(keys)
            cached = [self.cache.get(k) for k in keys]
            if self.per_response_cache:
                results.append(cached)
                missing = [i for i, c in enumerate(cached) if c is None]
            else:
                results.append(cached[0] if cached[0] is not None else [None] * len(texts))
                missing = list(range(len(texts))) if cached[0] is None else []
            if missing:
                sub = group if len(missing) == len(texts) else group.subset(missing)
                waits.append(
                    (gi, missing, _Item(sub, estimate_tokens(sub, tokens_per_image), loop.create_future()))
                )
        if waits:
            await self._reserve(len(waits), deadline)
            for _, _, item in waits:
                self._route(item)
            try:
                outs = await asyncio.wait_for(
                    asyncio.gather(*[item.future for _, _, item in waits]),
                    timeout=max(0.0, deadline - time.monotonic()),
                )
            except asyncio.CancelledError:
                # The caller went away (an HTTP client hung up, ray.cancel): give the queue
                # places of its groups back at once, or they stay taken until a worker drains them.
                self._abandon([item for _, _, item in waits])
                self.counters["cancelled"] += 1
                raise
            except (asyncio.TimeoutError, TimeoutError):
                unfinished = self._abandon([item for _, _, item in waits])
                await self._notify_space()
                self.counters["timeouts"] += 1
                raise RewardTimeoutError(
                    f"reward request timed out after {timeout:.1f}s with {unfinished} of {len(waits)} groups "
                    f"unfinished ({self.pending} groups queued in pool {self.config.name!r}): raise timeout_s "
                    "or add workers"
                ) from None
            for (gi, missing, _), out in zip(waits, outs):
                if "error" in out:
                    self.counters["failed_groups"] += 1
                    raise WorkerFailedError(f"groups[{gi}]: {out['error']}")
                for pos, res in zip(missing, out["results"]):
                    results[gi][pos] = res
                if self.per_response_cache:
                    for pos in missing:
                        self.cache.put(keys_of[gi][pos], results[gi][pos])
                else:
                    self.cache.put(keys_of[gi][0], results[gi])
        self.latency.observe(time.monotonic() - start)
        return results

    async def stats(self, include_workers: bool = True) -> dict[str, Any]:
        out: dict[str, Any] = {
            "name": self.config.name,
            "namespace": self.config.namespace,
            "model_id": self.model_id,
            "kind": self.config.worker.kind,
            "uptime_s": time.time() - self.started_at,
            "pending_groups": self.pending,
            "counters": dict(self.counters),
            "cache": self.cache.stats(),
            "latency": self.latency.to_dict(),
            "batch_groups": self.batch_groups.to_dict(),
            "batch_responses": self.batch_responses.to_dict(),
            "workers": [],
        }
        for s in self.slots:
            entry: dict[str, Any] = {
                "index": s.index,
                "alive": s.alive,
                "restarts": s.restarts,
                "restarts_in_window": len(s.restart_times),
                "out_reason": s.out_reason,
                "queued": len(s.queue),
                "in_flight": len(s.in_flight),
            }
            if include_workers and s.alive:
                try:
                    entry.update(await asyncio.wait_for(s.handle.stats.remote(), timeout=5.0))
                except Exception as exc:  # a dead or busy worker must not break the stats call
                    entry["stats_error"] = f"{type(exc).__name__}: {exc}"
            out["workers"].append(entry)
        return out


def flat_results(rows: list[list[dict]], kind: str) -> list[list[dict]]:
    """Runtime rows -> the pool's public results: the component's detail with its score (PRM:
    steps, spans, step_scores, truncated, note; judge: the group statistics and ``best``)."""
    return [[{**(r.get(kind) or {}), "score": float(r["components"][kind])} for r in group] for group in rows]


@functools.cache
def _router_class():
    """``PoolRouter`` as a Ray actor class, made on first use (nothing Ray-side at import)."""
    return ray.remote(PoolRouter)


class RewardPool:
    """A handle to a running pool: cheap, picklable, usable from any process in the cluster.

    Start one with :meth:`start` (or find a running one with :meth:`get`), then call
    :meth:`score_requests` / :meth:`ascore_requests`. A group goes whole to one worker, batches are
    bounded by tokens, results are cached, OOM splits a group, dead workers restart within a
    per-window budget, and hung-up callers give their queue places back.

    Args:
        actor: the router actor (from :meth:`start` / :meth:`get`).
        config: the pool's configuration.
    """

    def __init__(self, actor: Any, config: PoolConfig) -> None:
        self.actor = actor
        self.config = config
        self.roots = ImageRoots.of(config.image_roots or None, max_bytes=config.max_image_bytes)

    @classmethod
    def start(cls, config: PoolConfig, ready_timeout_s: float = 600.0) -> RewardPool:
        """Reserve resources, start the workers (loading their models) and register the router."""
        if not ray.is_initialized():
            raise RuntimeError(
                "Ray is not initialised: call ray.init(...) (or ray.init(address='auto')) first"
            )
        try:
            ray.get_actor(config.name, namespace=config.namespace)
        except ValueError:
            pass
        else:
            raise ValueError(
                f"a reward pool named {config.name!r} already runs in namespace {config.namespace!r}: use "
                "RewardPool.get(name, namespace), shut it down first, or pick another PoolConfig.name"
            )
        bundles = [_bundle(config)] * config.num_workers
        pg = placement_group(bundles, strategy=config.strategy, name=f"{config.name}-pg")
        try:
            ray.get(pg.ready(), timeout=ready_timeout_s)
        except ray.exceptions.GetTimeoutError:
            remove_placement_group(pg)
            raise RuntimeError(
                f"could not reserve {config.num_workers} x {bundles[0]} ({config.strategy}) within "
                f"{ready_timeout_s:.0f}s; cluster resources available now: {ray.available_resources()}"
            ) from None
        options: dict[str, Any] = {
            "name": config.name,
            "namespace": config.namespace,
            "num_cpus": 0,
            "max_concurrency": 10_000,
        }
        if config.detached:
            options["lifetime"] = "detached"
        actor = _router_class().options(**options).remote(config, pg)
        try:
            ray.get(actor.start.remote(), timeout=ready_timeout_s)
        except Exception:
            ray.kill(actor)
            remove_placement_group(pg)
            raise
        return cls(actor, config)

    @classmethod
    def get(cls, name: str = DEFAULT_POOL_NAME, namespace: str = DEFAULT_NAMESPACE) -> RewardPool:
        """Find a running pool by name; raises ``LookupError`` saying how to start one."""
        try:
            actor = ray.get_actor(name, namespace=namespace)
        except ValueError:
            raise LookupError(
                f"no reward pool named {name!r} in Ray namespace {namespace!r}: start one with "
                "RewardPool.start(PoolConfig(...)) or `openrlhf-visualprm serve`, in the same Ray cluster"
            ) from None
        return cls(actor, ray.get(actor.get_config.remote()))

    def prepare(self, groups: list[dict | RewardGroup]) -> list[RewardGroup]:
        """Validate groups and load their images here (paths confined to the pool's image roots,
        the pool's image limits), with the one preparation every host uses; a bad group raises
        an :class:`~openrlhf_visualprm.errors.InputError` naming its field. Groups a host
        prepared already pass through (PRM images shrunk to what the workers' tiling reads)."""
        limits = self.config.image_limits()
        if groups and all(isinstance(g, RewardGroup) for g in groups):
            if limits.shrink_tiles:
                return [
                    replace(g, images=[shrink_for_tiling(im, limits.shrink_tiles) for im in g.images])
                    for g in groups
                ]
            return list(groups)  # type: ignore[arg-type]
        if not isinstance(groups, list) or any(isinstance(g, RewardGroup) for g in groups):
            raise BadRequestError("groups must be a list of dicts (or of prepared RewardGroups), not a mix")
        prepared = prepare_groups(
            groups, self.roots, kind=self.config.worker.kind, strict=True, limits=limits
        )
        if getattr(self.config.worker.component, "schedule", None) == "reference":
            missing = [i for i, g in enumerate(prepared) if g.reference is None]
            if missing:
                raise BadRequestError(
                    f"groups[{missing[0]}] has no 'reference': this judge pool runs schedule 'reference', which "
                    "compares each response with it",
                    "reference",
                    "no_reference",
                )
        return prepared

    def score_rows(
        self, groups: list[dict | RewardGroup], timeout_s: float | None = None
    ) -> list[list[dict]]:
        """Blocking: the reward runtime's rows the workers returned, one list per group, in order
        (``{"components": {kind: score}, kind: detail, "error", ...}``): what a host's runtime
        (:class:`~openrlhf_visualprm.workers.component.PoolComponent`) reads."""
        prepared = self.prepare(groups)
        return ray.get(self.actor.score_groups.remote(prepared, timeout_s))

    def score_requests(
        self, groups: list[dict | RewardGroup], timeout_s: float | None = None
    ) -> list[list[dict]]:
        """Blocking: one list of results per group, one dict per response, in order.

        Args:
            groups: ``{"images", "question", "responses" | "steps", "config"}`` dicts, or RewardGroups.
            timeout_s: per-request limit (None: the pool's default).

        Returns:
            PRM: ``{"steps", "spans", "step_scores", "score", "truncated", "note"}``; judge:
            ``{"score", "best", <group statistics>}`` (:func:`flat_results`).

        Raises:
            InputError: a bad group, naming its field (``RequestTooLargeError`` past a size limit).
            RewardTimeoutError: the request outlived ``timeout_s``.
            PoolBusyError: the queue stayed full for the whole timeout.
            WorkerFailedError: no live worker could score it.
        """
        return flat_results(self.score_rows(groups, timeout_s), self.config.worker.kind)

    async def ascore_requests(
        self, groups: list[dict | RewardGroup], timeout_s: float | None = None
    ) -> list[list[dict]]:
        """``score_requests`` for async callers (vLLM actors, the HTTP service)."""
        prepared = await asyncio.to_thread(self.prepare, groups)
        ref = self.actor.score_groups.remote(prepared, timeout_s)
        try:
            return flat_results(await ref, self.config.worker.kind)
        except asyncio.CancelledError:
            ray.cancel(ref)  # the router releases the queue places of a cancelled request
            raise

    def stats(self, include_workers: bool = True) -> dict[str, Any]:
        return ray.get(self.actor.stats.remote(include_workers))

    async def astats(self, include_workers: bool = True) -> dict[str, Any]:
        return await self.actor.stats.remote(include_workers)

    def worker_handles(self) -> list[Any]:
        return ray.get(self.actor.worker_handles.remote())

    def shutdown(self) -> None:
        """Stop the workers, release the placement group and remove the named router."""
        try:
            ray.get(self.actor.shutdown.remote(), timeout=60)
        finally:
            ray.kill(self.actor)

    def describe(self) -> dict[str, Any]:
        w = self.config.worker
        return {
            "name": self.config.name,
            "namespace": self.config.namespace,
            "kind": w.kind,
            "model": w.model,
            **asdict(w),
        }
