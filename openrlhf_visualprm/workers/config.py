"""Configuration of reward workers, the pool that feeds them, and the HTTP service in front.

Plain dataclasses (picklable, JSON-friendly via ``asdict``) so the same object travels from a
launcher or CLI to the Ray actors without any framework in between.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from openrlhf_visualprm.bounds import number
from openrlhf_visualprm.images import DEFAULT_MAX_TILES, MAX_TILES_LIMIT

DEFAULT_POOL_NAME = "visualprm-reward-pool"
DEFAULT_NAMESPACE = "openrlhf_visualprm"


@dataclass
class WorkerConfig:
    """One reward model worker.

    ``kind`` is ``"prm"`` (VisualPRM) or ``"judge"`` (MR. Judge). ``num_gpus`` may be fractional to
    share a GPU with rollout engines. ``max_batch_tokens`` is the token budget of one batch the
    pool sends to the worker (estimated from text length and image count).
    """

    model: str
    kind: str = "prm"
    device: str = "auto"  # "auto" -> cuda when the worker got a GPU, else cpu
    dtype: str = "auto"  # "auto" -> bfloat16 on GPU, float32 on CPU
    attn_implementation: str | None = None  # e.g. "sdpa", "flash_attention_2"; None = model default
    num_gpus: float = 1.0
    num_cpus: float = 1.0
    max_batch_tokens: int = 32768
    image_tokens_per_image: int = 1792  # estimate used for batching: 7 tiles x 256 tokens
    max_tiles: int = DEFAULT_MAX_TILES
    # PRM system message: prm | internvl2_5 | config | the text; None: the checkpoint config's, else
    # InternVL2.5's (prm.template.resolve_system_message). Fixed at load, like max_tiles and dtype.
    system_message: str | None = None
    judge_backend: str = "hf"  # "hf" or "vllm"
    judge_options: dict = field(default_factory=dict)  # MRJudge.from_pretrained kwargs: schedule, rounds, ...
    torch_threads: int | None = None  # CPU threads per worker; None = num_cpus (at least 1)
    # "module:function", called in the worker as function(scorer, **scorer_wrapper_options) once the
    # model is loaded; returns the scorer the worker runs. For instrumentation and failure drills
    # (the tests inject OOMs and delays this way); the module must be on the workers' PYTHONPATH.
    scorer_wrapper: str | None = None
    scorer_wrapper_options: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.kind not in ("prm", "judge"):
            raise ValueError(f"WorkerConfig.kind must be 'prm' or 'judge', got {self.kind!r}")
        if self.num_gpus < 0 or self.num_cpus < 0:
            raise ValueError(f"num_gpus/num_cpus must be >= 0, got {self.num_gpus}/{self.num_cpus}")
        if self.scorer_wrapper is not None and ":" not in self.scorer_wrapper:
            raise ValueError(f"scorer_wrapper must be 'module:function', got {self.scorer_wrapper!r}")
        if self.max_batch_tokens < 1:
            raise ValueError(f"max_batch_tokens must be >= 1, got {self.max_batch_tokens}")
        number(self.max_tiles, "max_tiles (serve --max-tiles)", low=1, high=MAX_TILES_LIMIT, integer=True)


@dataclass
class PoolConfig:
    """A pool of identical workers behind one named, discoverable router actor.

    ``strategy``: ``"PACK"`` keeps workers on as few nodes as possible, ``"SPREAD"`` spreads them
    across nodes (Ray placement-group strategies; ``STRICT_*`` variants accepted too).
    ``max_pending_groups`` bounds the router's queue; a caller that finds it full waits (back-
    pressure) up to its timeout and then gets ``PoolBusyError``.
    """

    worker: WorkerConfig
    num_workers: int = 1
    name: str = DEFAULT_POOL_NAME
    namespace: str = DEFAULT_NAMESPACE
    strategy: str = "PACK"
    image_roots: list[str] = field(default_factory=list)
    max_image_bytes: int = 16 * 1024 * 1024
    # What one request may make the pool's callers decode (see workers.groups.ImageLimits).
    max_images_per_group: int = 8
    max_group_pixels: int = 64_000_000
    max_request_pixels: int = 128_000_000
    max_pending_groups: int = 4096
    request_timeout_s: float = 600.0
    cache_size: int = 100_000  # scored units (responses for the PRM, groups for the judge); 0 = off
    # Restart budget per worker slot: at most ``max_restarts`` within any ``restart_window_s``;
    # past it the slot is taken out (its work moves to the other workers) for one window, then
    # tried again, so a burst of crashes cannot leave the pool dead for good.
    max_restarts: int = 3
    restart_window_s: float = 600.0
    detached: bool = False  # survive the driver that created it (for a long-running service)

    def __post_init__(self) -> None:
        if self.num_workers < 1:
            raise ValueError(f"num_workers must be >= 1, got {self.num_workers}")
        if self.strategy not in ("PACK", "SPREAD", "STRICT_PACK", "STRICT_SPREAD"):
            raise ValueError(
                f"strategy must be PACK, SPREAD, STRICT_PACK or STRICT_SPREAD, got {self.strategy!r}"
            )
        if self.max_restarts < 0 or not self.restart_window_s > 0:
            raise ValueError(
                f"need max_restarts >= 0 and restart_window_s > 0, got {self.max_restarts}, "
                f"{self.restart_window_s}"
            )
        if self.request_timeout_s <= 0:
            raise ValueError(f"request_timeout_s must be > 0, got {self.request_timeout_s}")
