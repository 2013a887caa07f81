"""The HTTP reward service on Ray Serve, in front of a running ``RewardPool``.

Endpoints (JSON in and out; see ``protocol.py`` for the request shapes):
- ``POST /`` and ``POST /reward``: OpenRLHF's remote reward protocol, so
  ``--reward.remote_url http://HOST:PORT/`` works unchanged.
- ``POST /score``: groups with images (paths under the configured roots, or base64) -> per-step
  scores.
- ``GET /health``: liveness plus the pool's model and live workers (no token needed).
- ``GET /metrics``: Prometheus text: requests and latency per endpoint and status (this replica),
  batch sizes, cache hits/misses, restarts, queue depth (the pool, shared by all replicas).

Serve replicas are light front ends (auth, size limits, JSON, image decoding) and autoscale
between ``min_replicas`` and ``max_replicas``; model capacity is the pool's workers. Bad input
gets a 4xx with ``{"error": "..."}`` naming the field; the service keeps serving.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import logging
import time
from collections import Counter
from typing import Any

import ray
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, PlainTextResponse
from ray import serve

from openrlhf_visualprm.errors import InputError, RewardFailureError
from openrlhf_visualprm.images import ImageRoots
from openrlhf_visualprm.log import ensure_package_handler
from openrlhf_visualprm.rewards.guard import (
    FailureWindow,
)
from openrlhf_visualprm.rewards.runtime import RewardRuntime
from openrlhf_visualprm.workers.component import PoolComponent
from openrlhf_visualprm.workers.config import ServiceConfig
from openrlhf_visualprm.workers.errors import (
    PoolBusyError,
    RequestTooLargeError,
    RewardTimeoutError,
    WorkerFailedError,
)
from openrlhf_visualprm.workers.metrics import LATENCY_BUCKETS, Histogram, PromText
from openrlhf_visualprm.workers.pool import RewardPool
from openrlhf_visualprm.workers.protocol import (
    extended_groups,
    openrlhf_reply,
    openrlhf_samples,
    score_openrlhf,
)

logger = logging.getLogger("openrlhf_visualprm.workers")


CLIENT_CLOSED = 499  # nginx's "client closed request": the status /metrics records for hang-ups
RUN_STOPPING = 422  # /reward past the failure guard: any non-2xx makes OpenRLHF's client raise


class HTTPError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def _message(exc: BaseException) -> str:
    # Ray re-raises actor errors as a subclass carrying the original in ``cause``.
    cause = getattr(exc, "cause", None)
    return str(cause if isinstance(cause, BaseException) else exc)


class ServiceCore:
    """Request handling without Serve specifics (the deployment delegates to it)."""

    def __init__(self, config: ServiceConfig) -> None:
        ensure_package_handler()
        self.config = config
        self.roots = ImageRoots.of(config.image_roots or None, max_bytes=config.max_image_bytes)
        self._pool: RewardPool | None = None
        self._runtime: RewardRuntime | None = None
        self.requests: Counter = Counter()
        self.latency: dict[str, Histogram] = {}
        self.window = FailureWindow(
            config.failure_window,
            config.max_failed_fraction,
            ("ServiceConfig.failure_window", "ServiceConfig.max_failed_fraction"),
        )
        self.tripped: tuple[float, str] | None = None  # (until, why) once the guard stopped /reward

    def pool(self) -> RewardPool:
        if self._pool is None:
            try:
                self._pool = RewardPool.get(self.config.pool_name, self.config.namespace)
            except LookupError as exc:
                raise HTTPError(503, str(exc)) from None
            self._runtime = None
        return self._pool

    def runtime(self) -> RewardRuntime:
        """The reward runtime every route runs, its component the pool's (as with ``--reward.pool``)."""
        pool = self.pool()
        if self._runtime is None:
            self._runtime = RewardRuntime(
                {pool.config.worker.kind: PoolComponent(pool)},
                log_interval_s=self.config.bad_sample_log_interval_s,
            )
        return self._runtime

    def _check_auth(self, request: Request) -> None:
        token = self.config.token
        if not token:
            return
        header = request.headers.get("authorization", "")
        scheme, _, given = header.partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(given.strip().encode(), token.encode()):
            raise HTTPError(401, "missing or wrong bearer token: send 'Authorization: Bearer <token>'")

    async def _read_json(self, request: Request) -> Any:
        limit = self.config.max_request_bytes
        declared = request.headers.get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > limit:
            raise HTTPError(413, f"request body is {declared} bytes, over the limit of {limit}")
        chunks, size = [], 0
        async for chunk in request.stream():
            size += len(chunk)
            if size > limit:
                raise HTTPError(413, f"request body is over the limit of {limit} bytes")
            chunks.append(chunk)
        body = b"".join(chunks)
        if not body:
            raise HTTPError(400, "empty request body: send a JSON object")
        try:
            return json.loads(body)
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise HTTPError(400, f"request body is not valid JSON: {exc}") from None
        except ValueError as exc:  # valid JSON Python refuses: an integer of over 4300 digits
            raise HTTPError(400, f"request body holds a number too large to read: {exc}") from None
        except RecursionError:
            raise HTTPError(400, "request body is JSON nested too deeply: flatten it") from None

    async def _score(self, groups: list[dict], timeout_s: float | None) -> list[list[dict]]:
        """``/score``: the groups prepared strictly (a bad one is a 4xx naming its field)."""
        pool = self.pool()
        timeout = min(float(timeout_s or self.config.request_timeout_s), self.config.request_timeout_s)
        try:
            return await pool.ascore_requests(groups, timeout)
        except ray.exceptions.RayActorError:
            self._pool = None  # the pool was restarted: look it up again next time
            raise HTTPError(503, "the reward pool is unavailable (restarting?); retry shortly") from None

    def _check_one_sample_route(self) -> None:
        """OpenRLHF sends one sample per request: a judge needs a schedule that judges one."""
        worker = self.pool().config.worker
        schedule = getattr(worker.component, "schedule", None)
        if worker.kind == "judge" and schedule != "reference":
            raise HTTPError(
                400,
                f"this judge pool runs schedule {schedule!r}, which compares the responses of a group, but "
                "OpenRLHF's remote reward sends one sample per request (it would get a constant reward): "
                'start `serve --kind judge --schedule reference` (labels carry a "reference" answer), or '
                "send whole groups to POST /score",
            )

    async def _reward(self, payload: Any) -> dict:
        """``/reward``: OpenRLHF's protocol -> the one preparation -> the runtime -> the guard."""
        if self.tripped is not None:
            until, why = self.tripped
            if time.monotonic() < until:
                raise HTTPError(RUN_STOPPING, why)
            self.tripped = None
        self._check_one_sample_route()
        samples = openrlhf_samples(payload, self.config.max_image_bytes)
        runtime, pool = self.runtime(), self.pool()
        try:
            rows = await asyncio.to_thread(
                score_openrlhf,
                samples,
                runtime,
                self.roots,
                pool.config.worker.kind,
                pool.config.image_limits(),
            )
        except ray.exceptions.RayActorError:
            self._pool = None
            raise HTTPError(503, "the reward pool is unavailable (restarting?); retry shortly") from None
        for row in rows:  # the runtime logged the bad ones' reasons (rate-limited)
            try:
                self.window.record(row["error"], "answered by /reward on this replica")
            except RewardFailureError as exc:
                why = (
                    f"{exc} (--max-failed-fraction). The reward service refuses /reward for "
                    f"{self.config.failure_hold_s:.0f}s so the training run stops instead of training on zeros"
                )
                self.tripped = (time.monotonic() + self.config.failure_hold_s, why)
                logger.error("/reward: %s", why)
                raise HTTPError(RUN_STOPPING, why) from None
        return openrlhf_reply(rows, runtime.names)

    async def handle(self, request: Request, endpoint: str) -> JSONResponse:
        start = time.monotonic()
        status = 200
        try:
            self._check_auth(request)
            payload = await self._read_json(request)
            if endpoint == "reward":
                body = await self._reward(payload)
            else:
                groups, timeout = extended_groups(payload, self.config.max_image_bytes)
                body = {"results": await self._score(groups, timeout)}
            return JSONResponse(body)
        except asyncio.CancelledError:
            # The client hung up (Serve cancels the handler): counted apart from answers; the pool
            # handle passes the cancellation on so the router gives the queue places back.
            status = CLIENT_CLOSED
            raise
        except HTTPError as exc:
            status, body = exc.status, {"error": exc.message}
        except RequestTooLargeError as exc:
            status, body = 413, {"error": _message(exc)}
        except InputError as exc:  # BadRequestError, or a bad group of /score
            status, body = 400, {"error": _message(exc)}
        except RewardTimeoutError as exc:
            status, body = 504, {"error": _message(exc)}
        except PoolBusyError as exc:
            status, body = 503, {"error": _message(exc)}
        except WorkerFailedError as exc:
            status, body = 500, {"error": _message(exc)}
        except Exception as exc:  # last resort: still a JSON error, and the service keeps serving
            logger.exception("unexpected error on /%s", endpoint)
            status, body = 500, {"error": f"internal error: {type(exc).__name__}: {_message(exc)}"}
        finally:
            self.requests[(endpoint, status)] += 1
            self.latency.setdefault(endpoint, Histogram(LATENCY_BUCKETS)).observe(time.monotonic() - start)
        if status >= 500:
            logger.warning("/%s -> %d: %s", endpoint, status, body["error"])
        return JSONResponse(body, status_code=status)

    async def health(self) -> JSONResponse:
        try:
            stats = await self.pool().astats(include_workers=False)
        except HTTPError as exc:
            return JSONResponse({"status": "unavailable", "error": exc.message}, status_code=503)
        except Exception as exc:
            self._pool = None
            return JSONResponse({"status": "unavailable", "error": _message(exc)}, status_code=503)
        alive = sum(1 for w in stats["workers"] if w["alive"])
        return JSONResponse(
            {
                "status": "ok" if alive else "degraded",
                "pool": stats["name"],
                "model_id": stats["model_id"],
                "kind": stats["kind"],
                "workers_alive": alive,
                "workers": len(stats["workers"]),
                # which worker is out of service and why (restart budget spent), so an operator
                # does not have to read the router's log
                "workers_out": [
                    {"index": w["index"], "reason": w.get("out_reason") or "not alive"}
                    for w in stats["workers"]
                    if not w["alive"]
                ],
            },
            status_code=200 if alive else 503,
        )

    async def metrics(self, request: Request) -> PlainTextResponse:
        try:
            self._check_auth(request)
        except HTTPError as exc:
            return PlainTextResponse(exc.message + "\n", status_code=exc.status)
        doc = PromText()
        doc.counter(
            "visualprm_http_requests_total",
            "HTTP requests handled by this replica",
            [({"endpoint": e, "status": str(s)}, n) for (e, s), n in sorted(self.requests.items())],
        )
        for endpoint, hist in sorted(self.latency.items()):
            doc.histogram(
                "visualprm_http_request_seconds",
                "HTTP request latency on this replica",
                hist,
                {"endpoint": endpoint},
            )
        try:
            stats = await self.pool().astats(include_workers=False)
        except Exception as exc:
            doc.gauge("visualprm_pool_up", "1 when the reward pool answered", 0)
            logger.warning("metrics: pool stats unavailable: %s", _message(exc))
            return PlainTextResponse(doc.render(), media_type="text/plain; version=0.0.4")
        c, cache = stats["counters"], stats["cache"]
        doc.gauge("visualprm_pool_up", "1 when the reward pool answered", 1)
        for key, help_text in [
            ("requests", "scoring requests"),
            ("groups", "groups requested"),
            ("responses", "responses requested"),
            ("batches", "batches sent to workers"),
            ("restarts", "worker restarts"),
            ("resubmitted_groups", "groups resubmitted"),
            ("timeouts", "requests timed out"),
            ("busy_rejections", "requests refused: queue full"),
            ("failed_groups", "groups that failed in a worker"),
        ]:
            doc.counter(f"visualprm_pool_{key}_total", f"Pool: {help_text}", [(None, c.get(key, 0))])
        doc.counter("visualprm_cache_hits_total", "Result cache hits", [(None, cache["hits"])])
        doc.counter("visualprm_cache_misses_total", "Result cache misses", [(None, cache["misses"])])
        doc.gauge("visualprm_cache_entries", "Result cache entries", cache["entries"])
        doc.gauge("visualprm_pool_pending_groups", "Groups queued or in flight", stats["pending_groups"])
        doc.gauge(
            "visualprm_pool_workers_alive", "Live workers", sum(1 for w in stats["workers"] if w["alive"])
        )
        doc.histogram(
            "visualprm_pool_batch_groups",
            "Groups per worker batch",
            Histogram.from_dict(stats["batch_groups"]),
        )
        doc.histogram(
            "visualprm_pool_batch_responses",
            "Responses per worker batch",
            Histogram.from_dict(stats["batch_responses"]),
        )
        doc.histogram(
            "visualprm_pool_request_seconds", "Pool request latency", Histogram.from_dict(stats["latency"])
        )
        return PlainTextResponse(doc.render(), media_type="text/plain; version=0.0.4")


def confine_grpc_to_loopback() -> None:
    """Make gRPC servers of this process bind 127.0.0.1 where they ask for all interfaces.

    Ray Serve's replica starts an inter-deployment gRPC server on ``[::]:0`` whatever the node
    address (Ray 2.55); it is created after the deployment's ``__init__``, which calls this, so
    on a loopback-only Ray no port of the service is reachable from other machines.
    """
    from grpc.aio import _server

    original = _server.Server.add_insecure_port
    if getattr(original, "_loopback_only", False):
        return

    def add_insecure_port(self, address: str) -> int:
        host, _, port = address.rpartition(":")
        if host in ("[::]", "0.0.0.0", "", "::"):
            address = f"127.0.0.1:{port}"
        return original(self, address)

    add_insecure_port._loopback_only = True  # type: ignore[attr-defined]
    _server.Server.add_insecure_port = add_insecure_port


# The replica builds its FastAPI app itself (Serve calls ``build_app`` after the deployment's
# ``__init__``, in the replica process): a FastAPI app object cannot be pickled to the replica.
_REPLICA_CORE: ServiceCore | None = None


def _register_core(core: ServiceCore) -> None:
    # A module-level function, so the by-value pickled deployment class sets this module's global.
    global _REPLICA_CORE
    _REPLICA_CORE = core


def build_app(core: ServiceCore | None = None) -> FastAPI:
    """The FastAPI app of one replica, bound to ``core`` (default: the one its deployment made)."""
    core = core or _REPLICA_CORE
    if core is None:
        raise RuntimeError("build_app() called before the RewardService deployment created its core")
    api = FastAPI(title="openrlhf-visualprm reward service", docs_url=None, redoc_url=None, openapi_url=None)

    @api.post("/")
    async def openrlhf_root(request: Request) -> JSONResponse:
        return await core.handle(request, "reward")

    @api.post("/reward")
    async def openrlhf_reward(request: Request) -> JSONResponse:
        return await core.handle(request, "reward")

    @api.post("/score")
    async def score(request: Request) -> JSONResponse:
        return await core.handle(request, "score")

    @api.get("/health")
    async def health() -> JSONResponse:
        return await core.health()

    @api.get("/metrics")
    async def metrics(request: Request) -> PlainTextResponse:
        return await core.metrics(request)

    return api


@serve.deployment(ray_actor_options={"num_cpus": 0})
@serve.ingress(build_app)
class RewardService:
    """Ray Serve deployment; see the module docstring."""

    def __init__(self, config: ServiceConfig) -> None:
        if config.loopback_only:
            confine_grpc_to_loopback()
        self.core = ServiceCore(config)
        _register_core(self.core)


def start_service(config: ServiceConfig) -> str:
    """Start Serve's HTTP proxy on ``host:port`` and deploy the service; returns its base URL."""
    if config.host not in ("127.0.0.1", "localhost", "::1") and not config.token:
        logger.warning(
            "serving on %s without a bearer token: anyone who can reach it can use the GPUs", config.host
        )
    serve.start(http_options={"host": config.host, "port": config.port})
    options: dict[str, Any] = {"ray_actor_options": {"num_cpus": config.replica_num_cpus}}
    if config.max_replicas > config.min_replicas:
        options["autoscaling_config"] = {
            "min_replicas": config.min_replicas,
            "max_replicas": config.max_replicas,
            "target_ongoing_requests": config.target_ongoing_requests,
        }
    else:
        options["num_replicas"] = config.min_replicas
    serve.run(
        RewardService.options(**options).bind(config),
        name=config.app_name,
        route_prefix=config.route_prefix,
        blocking=False,
    )
    return f"http://{config.host}:{config.port}"


def stop_service(config: ServiceConfig) -> None:
    serve.delete(config.app_name)
