"""Configuration of reward workers, the pool that feeds them, and the HTTP service in front.

Plain dataclasses (picklable, JSON-friendly via ``asdict``) so the same object travels from a
launcher or CLI to the Ray actors without any framework in between.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from openrlhf_visualprm.config_fields import option
from openrlhf_visualprm.errors import ConfigError
from openrlhf_visualprm.judge.config import JudgeConfig
from openrlhf_visualprm.prm.config import DEFAULT_MAX_BATCH_TOKENS, PRMConfig
from openrlhf_visualprm.rewards.groups import (
    DEFAULT_MAX_GROUP_PIXELS,
    DEFAULT_MAX_IMAGES_PER_GROUP,
    DEFAULT_MAX_REQUEST_PIXELS,
    ImageLimits,
)
from openrlhf_visualprm.rewards.guard import DEFAULT_FAILURE_WINDOW, DEFAULT_MAX_FAILED_FRACTION

STRATEGIES = ("PACK", "SPREAD", "STRICT_PACK", "STRICT_SPREAD")  # Ray placement-group strategies
DEFAULT_POOL_NAME = "visualprm-reward-pool"
DEFAULT_NAMESPACE = "openrlhf_visualprm"


@dataclass
class WorkerConfig:
    """One reward model worker: the component config whole, plus where and how it runs.

    ``component`` is the frozen :class:`~openrlhf_visualprm.prm.config.PRMConfig` (VisualPRM) or
    :class:`~openrlhf_visualprm.judge.config.JudgeConfig` (MR. Judge) the one loader
    (:mod:`openrlhf_visualprm.rewards.components`) builds the worker's component from, exactly as
    the plugin's reward actor does; a host compares it with its plan field by field
    (``rewards.components.loaded_config_diff``). ``num_gpus`` may be fractional to share a GPU
    with rollout engines. ``max_batch_tokens`` is the token budget of one batch the pool sends
    to the worker (estimated from text length and image count).
    """

    component: PRMConfig | JudgeConfig
    device: str = "auto"  # "auto" -> cuda when the worker got a GPU, else cpu
    attn_implementation: str | None = option(
        None, "attention kernel, e.g. sdpa, flash_attention_2", unset="the model's", env=False
    )
    num_gpus: float = 1.0
    num_cpus: float = option(1.0, "CPUs per worker", env=False)
    max_batch_tokens: int = option(DEFAULT_MAX_BATCH_TOKENS, "token budget of one worker batch", env=False)
    image_tokens_per_image: int = 1792  # estimate used for batching: 7 tiles x 256 tokens
    torch_threads: int | None = None  # CPU threads per worker; None = num_cpus (at least 1)
    # "module:function", called in the worker as function(component, **scorer_wrapper_options) once
    # the model is loaded; returns the component the worker runs. For instrumentation and failure
    # drills (the tests inject OOMs and delays this way); the module must be on the workers' PYTHONPATH.
    scorer_wrapper: str | None = None
    scorer_wrapper_options: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not isinstance(self.component, (PRMConfig, JudgeConfig)):
            raise ConfigError(
                f"WorkerConfig.component must be a PRMConfig or a JudgeConfig, got {type(self.component).__name__}"
            )
        if self.num_gpus < 0 or self.num_cpus < 0:
            raise ConfigError(f"num_gpus/num_cpus must be >= 0, got {self.num_gpus}/{self.num_cpus}")
        if self.scorer_wrapper is not None and ":" not in self.scorer_wrapper:
            raise ConfigError(f"scorer_wrapper must be 'module:function', got {self.scorer_wrapper!r}")
        if self.max_batch_tokens < 1:
            raise ConfigError(f"max_batch_tokens must be >= 1, got {self.max_batch_tokens}")

    @property
    def kind(self) -> str:
        """``prm`` or ``judge``: the component the worker hosts."""
        return "prm" if isinstance(self.component, PRMConfig) else "judge"

    @property
    def model(self) -> str:
        """The checkpoint the worker loads."""
        return self.component.path or self.component.model


@dataclass
class PoolConfig:
    """A pool of identical workers behind one named, discoverable router actor.

    ``strategy``: ``"PACK"`` keeps workers on as few nodes as possible, ``"SPREAD"`` spreads them
    across nodes (Ray placement-group strategies; ``STRICT_*`` variants accepted too).
    ``max_pending_groups`` bounds the router's queue; a caller that finds it full waits (back-
    pressure) up to its timeout and then gets ``PoolBusyError``.
    """

    worker: WorkerConfig
    num_workers: int = option(1, "model workers in the pool", env=False)
    name: str = DEFAULT_POOL_NAME
    namespace: str = DEFAULT_NAMESPACE
    strategy: str = option("PACK", "placement of workers across nodes", choices=STRATEGIES, env=False)
    image_roots: list[str] = field(default_factory=list)
    max_image_bytes: int = 16 * 1024 * 1024
    # What one request may make the pool's callers decode (see rewards.groups.ImageLimits).
    max_images_per_group: int = option(
        DEFAULT_MAX_IMAGES_PER_GROUP, "image references per group (413 past it)", env=False
    )
    max_group_pixels: int = option(
        DEFAULT_MAX_GROUP_PIXELS, "decoded pixels per group, per reference", env=False
    )
    max_request_pixels: int = option(
        DEFAULT_MAX_REQUEST_PIXELS, "decoded pixels per request, per reference", env=False
    )
    max_pending_groups: int = option(
        4096, "groups queued or in flight in the pool; callers wait (then 503) past it", env=False
    )
    request_timeout_s: float = 600.0
    cache_size: int = option(
        100_000, "cached results: responses for the PRM, groups for the judge (0 disables)", env=False
    )
    # Restart budget per worker slot: at most ``max_restarts`` within any ``restart_window_s``;
    # past it the slot is taken out (its work moves to the other workers) for one window, then
    # tried again, so a burst of crashes cannot leave the pool dead for good.
    max_restarts: int = option(
        3, "restarts a worker may use within --restart-window-s before it is taken out", env=False
    )
    restart_window_s: float = option(
        600.0, "window of the restart budget in seconds; older restarts stop counting", env=False
    )
    detached: bool = False  # survive the driver that created it (for a long-running service)

    def image_limits(self) -> ImageLimits:
        """The pool's image limits; PRM images ship at the size the worker's tiling reads."""
        component = self.worker.component
        shrink = component.max_tiles if isinstance(component, PRMConfig) else None
        return ImageLimits(self.max_images_per_group, self.max_group_pixels, self.max_request_pixels, shrink)

    def __post_init__(self) -> None:
        if self.num_workers < 1:
            raise ConfigError(f"num_workers must be >= 1, got {self.num_workers}")
        if self.strategy not in STRATEGIES:
            raise ConfigError(
                f"strategy must be PACK, SPREAD, STRICT_PACK or STRICT_SPREAD, got {self.strategy!r}"
            )
        if self.max_restarts < 0 or not self.restart_window_s > 0:
            raise ConfigError(
                f"need max_restarts >= 0 and restart_window_s > 0, got {self.max_restarts}, "
                f"{self.restart_window_s}"
            )
        if self.request_timeout_s <= 0:
            raise ConfigError(f"request_timeout_s must be > 0, got {self.request_timeout_s}")


@dataclass
class ServiceConfig:
    """How the HTTP service listens and what it accepts."""

    pool_name: str = DEFAULT_POOL_NAME
    namespace: str = DEFAULT_NAMESPACE
    host: str = option("127.0.0.1", "bind address (127.0.0.1: this machine only)", env=False)
    port: int = option(8000, "port", env=False)
    token: str | None = None
    image_roots: list[str] = field(default_factory=list)
    max_request_bytes: int = 32 * 1024 * 1024
    max_image_bytes: int = 16 * 1024 * 1024
    request_timeout_s: float = option(
        170.0,
        "per-request timeout in seconds, the pool's too (below OpenRLHF's 180 s client timeout, so it "
        "gets our error)",
        flag="timeout",
        env=False,
    )
    min_replicas: int = option(1, "HTTP front-end replicas, minimum", env=False)
    max_replicas: int = option(1, "HTTP front-end replicas, maximum (autoscale)", env=False)
    target_ongoing_requests: float = 16
    replica_num_cpus: float = 0.0
    app_name: str = "visualprm-reward"
    route_prefix: str = "/"
    # Set by ``serve`` when it runs its own private, loopback-only Ray: the replica's internal
    # gRPC server (which Serve binds to all interfaces) is confined to 127.0.0.1 as well.
    loopback_only: bool = False
    # The failure guard of /reward (rewards.guard.FailureWindow): past this fraction of bad samples
    # among the last ``failure_window`` the route answers 422 (OpenRLHF's client then stops the run)
    # for ``failure_hold_s`` seconds, so its retries are refused too.
    max_failed_fraction: float = DEFAULT_MAX_FAILED_FRACTION
    failure_window: int = DEFAULT_FAILURE_WINDOW
    failure_hold_s: float = 600.0
    bad_sample_log_interval_s: float = 10.0  # bad samples' reasons: at most one ERROR line per interval
