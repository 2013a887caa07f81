"""``openrlhf-visualprm serve``: start a reward pool and the HTTP reward service, then wait.

Example::

    openrlhf-visualprm serve --model /ckpt/VisualPRM-8B --num-workers 2 --image-root /data/images
    # OpenRLHF: --reward.remote_url http://127.0.0.1:8000/

Binds to 127.0.0.1 unless ``--host`` says otherwise; set ``--token-env VAR`` to require
``Authorization: Bearer $VAR``.

Threat model: the bearer token guards HTTP only. Any process inside the Ray cluster can find the
pool by name and score without a token, and can run arbitrary code on every node: cluster
membership is full trust. So without ``--address`` the command starts a private single-node Ray
whose every port (GCS, raylet, object manager, worker gRPC, agents) listens on loopback only, and
without the dashboard (``--dashboard`` to start it, on loopback). Joining an existing cluster is
explicit: ``--address auto`` or ``--address HOST:PORT``; that cluster's own network rules apply.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import socket
import threading

from openrlhf_visualprm import envs
from openrlhf_visualprm.config_fields import add_flags, changed_flags, config_from_flags
from openrlhf_visualprm.errors import ConfigError
from openrlhf_visualprm.judge.config import JudgeConfig
from openrlhf_visualprm.prm.config import LOAD_FIELDS, PRMConfig
from openrlhf_visualprm.rewards.guard import DEFAULT_FAILURE_WINDOW, DEFAULT_MAX_FAILED_FRACTION
from openrlhf_visualprm.workers.config import PoolConfig, ServiceConfig, WorkerConfig


def add_arguments(parser: argparse.ArgumentParser) -> None:
    m = parser.add_argument_group("model workers")
    m.add_argument(
        "--model", required=True, help="checkpoint folder or alias (e.g. visualprm, a tiny model path)"
    )
    m.add_argument(
        "--kind", choices=["prm", "judge"], default="prm", help="VisualPRM or MR. Judge (default prm)"
    )
    add_flags(m, PoolConfig, only=["num_workers"])
    j = parser.add_argument_group(
        "judge (--kind judge): fixed for the pool's lifetime; a plan asking for other values is refused. "
        "POST / (OpenRLHF's one-sample requests) needs --schedule reference"
    )
    add_flags(j, JudgeConfig, dest_prefix="judge_")  # --schedule, --rounds, ...: the config's fields
    m.add_argument(
        "--num-gpus",
        type=float,
        default=None,
        help="GPUs per worker, fractional to share with rollout engines (default 1 if CUDA, else 0)",
    )
    add_flags(m, WorkerConfig)  # --num-cpus, --attn-implementation, --max-batch-tokens
    p = parser.add_argument_group("VisualPRM (--kind prm): fixed for the pool's lifetime")
    add_flags(p, PRMConfig, only=LOAD_FIELDS)  # --max-tiles, --dtype, --system-message
    # --strategy, --cache-size; the image budgets and queue bound under "HTTP service" below
    add_flags(m, PoolConfig, only=["strategy", "cache_size"])
    m.add_argument("--pool-name", default=None, help="Ray name of the pool (default visualprm-reward-pool)")
    m.add_argument("--namespace", default=None, help="Ray namespace of the pool (default openrlhf_visualprm)")
    h = parser.add_argument_group("HTTP service")
    add_flags(h, ServiceConfig, only=["host", "port"])
    h.add_argument(
        "--token-env",
        default=None,
        help="name of an environment variable holding the bearer token clients must send",
    )
    h.add_argument(
        "--image-root",
        action="append",
        default=[],
        metavar="DIR",
        help="folder image paths may resolve into (repeatable); paths elsewhere are refused",
    )
    h.add_argument(
        "--max-request-mb", type=float, default=32.0, help="request body limit in MiB (default 32)"
    )
    h.add_argument("--max-image-mb", type=float, default=16.0, help="per-image limit in MiB (default 16)")
    add_flags(
        h,
        PoolConfig,
        only=["max_images_per_group", "max_group_pixels", "max_request_pixels", "max_pending_groups"],
    )
    add_flags(h, ServiceConfig, only=["request_timeout_s"])  # --timeout
    h.add_argument(
        "--max-failed-fraction",
        type=float,
        default=None,
        help="POST / (OpenRLHF): answer 422, so OpenRLHF's client stops the run, when more of the last "
        "--failure-window samples were bad samples (default $OPENRLHF_VISUALPRM_MAX_FAILED_FRACTION, else "
        f"{DEFAULT_MAX_FAILED_FRACTION}; 1: never)",
    )
    h.add_argument(
        "--failure-window",
        type=int,
        default=None,
        help="samples the failed fraction is taken over (default $OPENRLHF_VISUALPRM_FAILURE_WINDOW, else "
        f"{DEFAULT_FAILURE_WINDOW})",
    )
    add_flags(h, ServiceConfig, only=["min_replicas", "max_replicas"])
    r = parser.add_argument_group("Ray")
    r.add_argument(
        "--address",
        "--ray-address",
        dest="address",
        default=None,
        help="join this Ray cluster (auto or HOST:PORT): every member gets full trust; default: start "
        "a private single-node Ray bound to 127.0.0.1",
    )
    r.add_argument(
        "--dashboard",
        action="store_true",
        help="start Ray's dashboard (on 127.0.0.1) with the private Ray (default: off)",
    )
    r.add_argument("--ray-temp-dir", default=None, help="Ray's temp/log folder for the private Ray")
    add_flags(m, PoolConfig, only=["max_restarts", "restart_window_s"])


def init_local_ray(namespace: str, dashboard: bool = False, temp_dir: str | None = None, **kwargs) -> None:
    """Start a private single-node Ray whose every port listens on loopback only.

    ``ray.init`` replaces a requested ``127.0.0.1`` node address with the machine's external one
    (so other nodes could join); Ray keeps a loopback-only mode for single machines behind
    ``RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0`` (read at import and by every child process), under
    which the node address is 127.0.0.1 and the gRPC servers, object manager and agents bind it.
    """
    os.environ[LOOPBACK_ENV] = "0"
    import ray
    from ray._private import ray_constants

    ray_constants.ENABLE_RAY_CLUSTER = False  # this process may have imported ray already
    options: dict = {"address": "local", "namespace": namespace, "include_dashboard": dashboard}
    if dashboard:
        options["dashboard_host"] = "127.0.0.1"
    if temp_dir:
        options["_temp_dir"] = temp_dir
    ray.init(**options, **kwargs)
    node_ip = ray.util.get_node_ip_address()
    if node_ip not in ("127.0.0.1", "::1"):
        ray.shutdown()
        raise RuntimeError(
            f"the private Ray came up on {node_ip}, not on loopback; refusing to serve "
            "(join a cluster deliberately with --address instead)"
        )


LOOPBACK_ENV = "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"


def check_port_free(host: str, port: int) -> None:
    """Refuse a port another process listens on: Serve's proxy shares a port with SO_REUSEPORT, so
    a second service would silently take part of the first one's traffic. A plain bind (no
    SO_REUSEPORT) fails on a port that is taken, whatever options its owner set."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        try:
            probe.bind((host, port))
        except OSError as exc:
            raise ConfigError(
                f"--port {port}: {host}:{port} is already in use ({exc.strerror}); another service listens "
                "there. Stop it or pick another --port"
            ) from None


def _guard_setting(flag_value, env_name: str, default, cast, flag: str):
    if flag_value is not None:
        return flag_value
    raw = envs.get(env_name)
    if raw is None:
        return default
    try:
        return cast(raw)
    except ValueError:
        raise ConfigError(f"{env_name}={raw!r} is not a valid {cast.__name__} (or pass {flag})") from None


def component_config(args: argparse.Namespace):
    """The pool's component config, whole: what the workers load and what plans are checked against."""
    from openrlhf_visualprm.registry import resolve_model

    resolved = resolve_model(args.model, args.kind)
    if args.kind == "prm":
        other, config_type, dest = changed_flags(args, JudgeConfig, dest_prefix="judge_"), PRMConfig, ""
    else:
        other, config_type, dest = changed_flags(args, PRMConfig), JudgeConfig, "judge_"
    if other:
        raise ConfigError(
            f"{', '.join(other)} set the {'judge' if args.kind == 'prm' else 'PRM'}; this pool runs --kind {args.kind}"
        )
    return config_from_flags(args, config_type, dest_prefix=dest, model=args.model, path=resolved.path)


def run(args: argparse.Namespace) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    log = logging.getLogger("openrlhf_visualprm.serve")
    try:
        return _run(args, log)
    except ConfigError as exc:  # a setting or the port: one line naming it, exit 2
        log.error("%s", exc)
        return 2


def _run(args: argparse.Namespace, log: logging.Logger) -> int:
    import ray

    from openrlhf_visualprm.workers.config import DEFAULT_NAMESPACE, DEFAULT_POOL_NAME
    from openrlhf_visualprm.workers.pool import RewardPool
    from openrlhf_visualprm.workers.service import start_service, stop_service

    token = None
    if args.token_env:
        token = os.environ.get(args.token_env)
        if not token:
            log.error("--token-env %s is set but that environment variable is empty", args.token_env)
            return 2
    component = component_config(args)
    max_failed = _guard_setting(
        args.max_failed_fraction,
        "OPENRLHF_VISUALPRM_MAX_FAILED_FRACTION",
        DEFAULT_MAX_FAILED_FRACTION,
        float,
        "--max-failed-fraction",
    )
    window = _guard_setting(
        args.failure_window,
        "OPENRLHF_VISUALPRM_FAILURE_WINDOW",
        DEFAULT_FAILURE_WINDOW,
        int,
        "--failure-window",
    )
    from openrlhf_visualprm.rewards.guard import FailureWindow

    names = (
        "--failure-window (default $OPENRLHF_VISUALPRM_FAILURE_WINDOW)",
        "--max-failed-fraction (default $OPENRLHF_VISUALPRM_MAX_FAILED_FRACTION)",
    )
    FailureWindow(window, max_failed, names)  # refuses out-of-range values by name before anything starts
    check_port_free(args.host, args.port)
    if getattr(component, "schedule", "reference") != "reference":
        log.warning(
            "judge schedule %r compares the responses of a group: POST /score serves it; POST / (OpenRLHF's "
            "one-sample requests) answers 400 unless the pool runs --schedule reference",
            component.schedule,
        )
    if args.num_gpus is None:
        import torch

        args.num_gpus = 1.0 if torch.cuda.is_available() else 0.0
    name = args.pool_name or DEFAULT_POOL_NAME
    namespace = args.namespace or DEFAULT_NAMESPACE
    max_image = int(args.max_image_mb * 1024 * 1024)
    # the generated flags (config_fields.add_flags) parsed back into their config types, checked there
    worker = config_from_flags(args, WorkerConfig, component=component, num_gpus=args.num_gpus)
    pool_config = config_from_flags(
        args,
        PoolConfig,
        worker=worker,
        name=name,
        namespace=namespace,
        image_roots=list(args.image_root),
        max_image_bytes=max_image,
        request_timeout_s=args.request_timeout_s,
    )
    service_config = config_from_flags(
        args,
        ServiceConfig,
        pool_name=name,
        namespace=namespace,
        token=token,
        image_roots=list(args.image_root),
        max_request_bytes=int(args.max_request_mb * 1024 * 1024),
        max_image_bytes=max_image,
        loopback_only=not args.address,
        max_failed_fraction=max_failed,
        failure_window=window,
    )
    if service_config.max_replicas < service_config.min_replicas:
        service_config.max_replicas = service_config.min_replicas
    if args.address:
        log.warning(
            "joining Ray cluster %s: every member of it can use the pool without the token", args.address
        )
        ray.init(address=args.address, namespace=namespace)
    else:
        init_local_ray(namespace, dashboard=args.dashboard, temp_dir=args.ray_temp_dir)
    # Installed after ray.init (which sets its own) and before loading: Ctrl-C while loading still
    # ends in a clean shutdown once startup returns.
    stop = threading.Event()
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    log.info("starting %d %s worker(s) for %s ...", args.num_workers, args.kind, args.model)
    pool = RewardPool.start(pool_config)
    log.info("pool %r ready in namespace %r", name, namespace)
    url = start_service(service_config)
    log.info(
        "reward service listening on %s (POST / for OpenRLHF, POST /score, GET /health, GET /metrics)", url
    )
    stop.wait()
    log.info("shutting down")
    stop_service(service_config)
    pool.shutdown()
    ray.shutdown()
    return 0
