"""Ray reward workers, the reward pool and the HTTP reward service (knows Ray, never OpenRLHF).

Public API (everything else is internal)::

    import ray
    from openrlhf_visualprm.prm.config import PRMConfig
    from openrlhf_visualprm.workers import PoolConfig, RewardPool, WorkerConfig

    ray.init(...)                                    # or ray.init(address="auto") in a cluster
    pool = RewardPool.start(PoolConfig(              # the component config whole: PRMConfig / JudgeConfig
        WorkerConfig(PRMConfig(path="/ckpt/VisualPRM-8B"), num_gpus=1),  # max_batch_tokens: a worker batch's budget
        num_workers=4, strategy="SPREAD", image_roots=["/data/images"]))

    # from any process in the same cluster (e.g. a reward function in a vLLM actor):
    pool = RewardPool.get()                          # name / namespace default to PoolConfig's
    results = pool.score_requests([
        {"images": ["geo/0001.png"], "question": "...", "responses": ["step 1\\n\\nstep 2", "..."],
         "config": {"method": "shared", "aggregation": "min"}},
    ], timeout_s=120)
    # -> one list per group, one dict per response (PRMResult fields):
    #    {"steps", "spans", "step_scores", "score", "truncated", "note"}
    # (a judge pool: {"score", "best", <group statistics>}); hosts read the runtime's rows: score_rows
    await pool.ascore_requests(...)                  # the same, for async callers
    pool.stats(); pool.shutdown()

Workers host the reward runtime (:mod:`openrlhf_visualprm.rewards`) the plugin's reward actor hosts;
this package adds only Ray's and HTTP's business (placement, routing, token batching, cache,
restarts, auth, limits), and ``reward_func.py``, the host behind ``reward_fns/``.

Errors: an ``InputError`` (a ``ValueError``: bad group, image missing or outside the roots; ``BadRequestError``
for a malformed request, ``RequestTooLargeError`` past a size limit),
``RewardTimeoutError`` (a ``TimeoutError``), ``PoolBusyError`` (queue full for the whole timeout),
``WorkerFailedError``. The HTTP service (``openrlhf-visualprm serve``) is in ``service.py``.

Names are imported lazily, so ``workers.errors`` and ``workers.config`` load neither torch nor Ray.
"""

from __future__ import annotations

from openrlhf_visualprm.lazy import lazy_exports

_EXPORTS = {
    "PoolConfig": "config",
    "WorkerConfig": "config",
    "BadRequestError": "errors",
    "PoolBusyError": "errors",
    "RequestTooLargeError": "errors",
    "RewardTimeoutError": "errors",
    "WorkerFailedError": "errors",
    "RewardPool": "pool",
    "worker_class": "worker",
}

__all__ = sorted(_EXPORTS)


__getattr__ = lazy_exports(__name__, _EXPORTS)
