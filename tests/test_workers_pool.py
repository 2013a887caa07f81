"""The reward pool through real Ray (``ray.init(num_cpus=2)``) and the real tiny VisualPRM.

The session's Ray instance (``tests/conftest.py``); two pools share it: a clean pool (2 workers) and a faulty pool
(1 worker whose scorer sleeps and raises the real ``torch.OutOfMemoryError`` above 2 responses).
Reference scores come from the same tiny model loaded directly in the test process.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from pathlib import Path

import pytest
import ray
from PIL import Image

from openrlhf_visualprm.errors import InputError
from openrlhf_visualprm.judge.config import JudgeConfig
from openrlhf_visualprm.prm.config import PRMConfig
from openrlhf_visualprm.workers import (
    PoolBusyError,
    PoolConfig,
    RewardPool,
    RewardTimeoutError,
    WorkerConfig,
)

TOL = 1e-4


@pytest.fixture(scope="module")
def items(demo_data) -> list[dict]:
    return [json.loads(line) for line in Path(demo_data).read_text().splitlines()]


@pytest.fixture(scope="module")
def direct_prm(tiny_prm_path):
    from openrlhf_visualprm.prm.scorer import VisualPRM

    return VisualPRM.from_pretrained(str(tiny_prm_path))


def _group(item: dict, aggregation: str = "mean", n: int | None = None, variant: str = "") -> dict:
    """A group of one demo item; ``variant`` makes the question (hence the scores) distinct."""
    responses = [c["response"] for c in item["candidates"]][:n]
    question = item["question"] + (f" ({variant})" if variant else "")
    return {
        "images": [item["image"]],
        "question": question,
        "responses": responses,
        "config": {"aggregation": aggregation},
    }


def _direct(prm, demo_data, group: dict) -> list[dict]:
    image = Image.open(Path(demo_data).parent / group["images"][0]).convert("RGB")
    agg = group.get("config", {}).get("aggregation", "mean")
    return [
        r.to_dict()
        for r in prm.score([image], group["question"], responses=group["responses"], aggregation=agg)
    ]


def _assert_same(got: list[dict], want: list[dict]) -> None:
    assert len(got) == len(want)
    for g, w in zip(got, want):
        assert g["steps"] == w["steps"] and [list(s) for s in g["spans"]] == [list(s) for s in w["spans"]]
        assert g["step_scores"] == pytest.approx(w["step_scores"], abs=TOL)
        assert g["score"] == pytest.approx(w["score"], abs=TOL)


@pytest.fixture(scope="module")
def pool(ray_cluster, tiny_prm_path, demo_data):
    config = PoolConfig(
        WorkerConfig(PRMConfig(path=str(tiny_prm_path)), num_gpus=0, num_cpus=0.5),
        num_workers=2,
        name="test-clean-pool",
        image_roots=[str(Path(demo_data).parent)],
    )
    p = RewardPool.start(config)
    yield p
    p.shutdown()


@pytest.fixture(scope="module")
def faulty_pool(ray_cluster, tiny_prm_path, demo_data):
    faults = {"oom_above_responses": 2, "delay_s": 0.3}  # tests/support/scorer_wrappers.py
    config = PoolConfig(
        WorkerConfig(
            PRMConfig(path=str(tiny_prm_path)),
            num_gpus=0,
            num_cpus=0.5,
            scorer_wrapper="scorer_wrappers:inject_faults",
            scorer_wrapper_options=faults,
        ),
        num_workers=1,
        name="test-faulty-pool",
        image_roots=[str(Path(demo_data).parent)],
        max_pending_groups=3,
    )
    p = RewardPool.start(config)
    yield p
    p.shutdown()


def test_concurrent_callers_get_exactly_their_own_results(pool, items, direct_prm, demo_data):
    k = len(items)
    requests = [
        [_group(items[i % k], variant=f"caller {i}"), _group(items[(i + 3) % k], n=2, variant=f"c{i}")]
        for i in range(6)
    ]
    outputs: dict[int, list] = {}
    errors: list[BaseException] = []

    def call(i: int) -> None:
        try:
            outputs[i] = pool.score_requests(requests[i], timeout_s=120)
        except BaseException as exc:  # collected and re-raised in the main thread
            errors.append(exc)

    threads = [threading.Thread(target=call, args=(i,)) for i in range(len(requests))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    for i, groups in enumerate(requests):
        assert len(outputs[i]) == len(groups)
        for got, group in zip(outputs[i], groups):
            _assert_same(got, _direct(direct_prm, demo_data, group))
    stats = pool.stats()
    # Concurrent callers were batched together: some batch carried more than one group.
    assert stats["batch_groups"]["count"] < stats["counters"]["groups"]
    assert sum(w["batches"] for w in stats["workers"]) == stats["batch_groups"]["count"]


def test_group_goes_whole_to_one_worker_on_the_shared_prefix_path(pool, items, direct_prm, demo_data):
    group = _group(items[1], aggregation="min")
    before = [len(w["calls"]) for w in pool.stats()["workers"]]
    got = pool.score_requests([group])[0]
    after = pool.stats()["workers"]
    new_calls = [c for w, n in zip(after, before) for c in w["calls"][n:]]
    assert new_calls == [
        {"question": group["question"][:80], "n_responses": len(group["responses"]), "method": "shared"}
    ]
    _assert_same(got, _direct(direct_prm, demo_data, group))


def test_cache_hits_return_identical_results_without_scoring(pool, items, demo_data, direct_prm):
    group = _group(items[2], aggregation="last")
    # Partial hit: one response cached first; the rest is scored as a sub-group, merged in order.
    pool.score_requests([_group(items[2], aggregation="last", n=1)])
    s0 = pool.stats()
    first = pool.score_requests([group])[0]
    assert pool.stats()["cache"]["hits"] - s0["cache"]["hits"] == 1
    _assert_same(first, _direct(direct_prm, demo_data, group))
    s1 = pool.stats()
    again = pool.score_requests([group])[0]
    # The same picture sent as bytes instead of a path hits too: the key is the image content.
    as_bytes = dict(group, images=[(Path(demo_data).parent / group["images"][0]).read_bytes()])
    third = pool.score_requests([as_bytes])[0]
    s2 = pool.stats()
    assert again == first and third == first
    n = len(group["responses"])
    assert s2["cache"]["hits"] - s1["cache"]["hits"] == 2 * n
    assert s2["counters"].get("batches", 0) == s1["counters"].get("batches", 0)
    # Another scoring config is another key: a miss that reaches a worker.
    pool.score_requests([_group(items[2], aggregation="product")])
    s3 = pool.stats()
    assert (
        s3["cache"]["misses"] - s2["cache"]["misses"] == n
        and s3["counters"]["batches"] > s2["counters"]["batches"]
    )


def test_pool_is_discoverable_by_name_from_another_process(pool, items, demo_data):
    group = _group(items[4], aggregation="mean", n=1)

    @ray.remote(num_cpus=0)
    def score_elsewhere(name: str, namespace: str, g: dict):
        from openrlhf_visualprm.workers import RewardPool as Pool

        return Pool.get(name, namespace).score_requests([g])

    remote = ray.get(score_elsewhere.remote(pool.config.name, pool.config.namespace, group))
    assert remote == pool.score_requests([group])
    with pytest.raises(LookupError, match="no reward pool named 'nope'"):
        RewardPool.get("nope", pool.config.namespace)
    with pytest.raises(ValueError, match="already runs"):
        RewardPool.start(pool.config)


def test_bad_requests_raise_clear_errors_and_pool_keeps_serving(pool, items):
    bad = [
        (
            {"images": ["../../../etc/passwd"], "question": "q", "responses": ["a"]},
            "outside the allowed image roots",
        ),
        ({"images": ["images/missing.png"], "question": "q", "responses": ["a"]}, "not found"),
        ({"images": [items[0]["image"]], "question": "", "responses": ["a"]}, "question"),
    ]
    for group, needle in bad:
        with pytest.raises(InputError, match=needle):
            pool.score_requests([group])
    assert len(pool.score_requests([_group(items[0], n=1)])[0]) == 1


def test_placeholder_mismatch_is_a_bad_sample_on_the_pool_route(pool, items, caplog):
    """Issue 23: the pool refuses the group naming the question part; through the runtime (the reward
    actor's / reward_fns' pool component) it is a neutral, counted sample and the batch scores on."""
    from openrlhf_visualprm.images import load_image
    from openrlhf_visualprm.labels import Label
    from openrlhf_visualprm.rewards.groups import RewardGroup
    from openrlhf_visualprm.rewards.runtime import RewardRuntime
    from openrlhf_visualprm.workers.component import PoolComponent

    bad = {**_group(items[0], n=1), "question": "<image> and <image>?"}
    with pytest.raises(InputError, match=r"question: the question has 2") as info:
        pool.score_requests([bad])
    assert info.value.part == "question" and info.value.reason == "image_placeholders"
    image = load_image(items[0]["image"], pool.roots)
    groups = [
        RewardGroup(q, [items[0]["candidates"][0]["response"]], [image], Label({}))
        for q in ("<image> and <image>?", items[0]["question"])
    ]
    out = RewardRuntime({"prm": PoolComponent(pool)}).score_groups(groups)
    assert out[0][0]["failed"] == ["prm"] and out[0][0]["reasons"] == ["image_placeholders"]
    assert out[1][0]["error"] is None and out[1][0]["prm"]["step_scores"]


def test_oom_is_split_and_completes(faulty_pool, items, direct_prm, demo_data):
    group = _group(items[5], aggregation="min")
    assert len(group["responses"]) > 2
    got = faulty_pool.score_requests([group], timeout_s=120)[0]
    _assert_same(got, _direct(direct_prm, demo_data, group))
    worker = faulty_pool.stats()["workers"][0]
    assert worker["oom_splits"] >= 1
    assert all(c["n_responses"] <= 2 for c in worker["calls"])


def test_killing_a_worker_mid_flight_loses_no_request(faulty_pool, items, direct_prm, demo_data):
    requests = [[_group(items[i % len(items)], n=2, variant=f"kill {i}")] for i in range(4)]
    outputs: dict[int, list] = {}
    errors: list[BaseException] = []

    def call(i: int) -> None:
        try:
            outputs[i] = faulty_pool.score_requests(requests[i], timeout_s=150)
        except BaseException as exc:
            errors.append(exc)

    old_pid = faulty_pool.stats()["workers"][0]["pid"]
    threads = [threading.Thread(target=call, args=(i,)) for i in range(len(requests))]
    for t in threads:
        t.start()
    deadline = time.monotonic() + 30
    while faulty_pool.stats(include_workers=False)["workers"][0]["in_flight"] == 0:
        assert time.monotonic() < deadline, "no request ever went in flight"
        time.sleep(0.02)
    ray.kill(faulty_pool.worker_handles()[0])
    for t in threads:
        t.join()
    assert not errors, errors
    for i, groups in enumerate(requests):
        assert len(outputs[i]) == 1
        _assert_same(outputs[i][0], _direct(direct_prm, demo_data, groups[0]))
    stats = faulty_pool.stats()
    assert stats["counters"]["restarts"] == 1 and stats["counters"]["resubmitted_groups"] >= 1
    assert stats["workers"][0]["alive"] and stats["workers"][0]["pid"] != old_pid
    assert stats["pending_groups"] == 0


def test_timeout_and_back_pressure_have_clear_errors(faulty_pool, items):
    with pytest.raises(RewardTimeoutError, match=r"timed out after 0\.1s"):
        faulty_pool.score_requests([_group(items[0], n=1, variant="timeout")], timeout_s=0.1)
    # Fill the bounded queue (max 3 groups) from one caller, then a second caller is refused.
    filler = threading.Thread(
        target=faulty_pool.score_requests,
        args=([_group(items[i], n=1, variant="fill") for i in (1, 2, 3)],),
        kwargs={"timeout_s": 60},
    )
    filler.start()
    deadline = time.monotonic() + 30
    while faulty_pool.stats(include_workers=False)["pending_groups"] < 3:
        assert time.monotonic() < deadline
        time.sleep(0.01)
    with pytest.raises(PoolBusyError, match="queue stayed full"):
        faulty_pool.score_requests([_group(items[4], n=1, variant="refused")], timeout_s=0.2)
    filler.join()
    assert faulty_pool.stats(include_workers=False)["pending_groups"] == 0


def test_judge_pool_through_ray_matches_the_judge_called_directly(
    ray_cluster, tiny_judge_path, items, demo_data
):
    """The judge plugs into the same pool shape: rewards through Ray equal MR. Judge's own.

    The worker's judge generates with the scripted, content-aware backend of
    ``tests/support/scorer_wrappers.py`` (the tiny random judge never parses: 0.5 everywhere), so
    a group routed to another caller, or responses reordered, change the rewards.
    """
    from scorer_wrappers import scripted_backend

    from openrlhf_visualprm.judge import MRJudge

    options = {"max_new_tokens": 4, "schedule": "listwise", "rounds": 2}
    config = PoolConfig(
        WorkerConfig(
            JudgeConfig(path=str(tiny_judge_path), **options),
            num_gpus=0,
            num_cpus=0.5,
            scorer_wrapper="scorer_wrappers:scripted_judge",
        ),
        num_workers=1,
        name="test-judge-pool",
        image_roots=[str(Path(demo_data).parent)],
    )
    judge_pool = RewardPool.start(config)
    try:
        groups = [{k: v for k, v in _group(item).items() if k != "config"} for item in items[:3]]
        got = judge_pool.score_requests(groups, timeout_s=120)
        options.pop("max_new_tokens")  # a backend option: the scripted backend has none
        direct = MRJudge(scripted_backend(), image_roots=[str(Path(demo_data).parent)], **options)
        wants = []
        for group, results in zip(groups, got):
            want = direct.judge_group(group["images"], group["question"], group["responses"]).rewards
            assert len(results) == len(group["responses"])
            assert [r["score"] for r in results] == pytest.approx(want)
            assert [r["best"] for r in results].count(True) == 1  # the judge's detail, not a PRM's
            assert all(0.0 <= r["parse_failure_rate"] <= 1.0 for r in results)
            wants.append(want)
        # the scripted verdicts separate responses: a reordered group or a swapped result fails
        assert all(len(set(w)) > 1 for w in wants) and wants[0] != wants[1]
        again = judge_pool.score_requests(groups[:1], timeout_s=120)
        assert again[0] == got[0]
        assert judge_pool.stats()["cache"]["hits"] >= 1
    finally:
        judge_pool.shutdown()


def test_cancelled_requests_give_their_queue_places_back(faulty_pool, items):
    """Issue 14 item 3: a caller that goes away while its groups wait in the bounded queue."""
    pool = faulty_pool
    busy = pool.actor.score_groups.remote(pool.prepare([_group(items[0], n=1, variant="busy")]), 60)
    refs = [
        pool.actor.score_groups.remote(pool.prepare([_group(items[i], n=1, variant=f"hang-up {i}")]), 60)
        for i in (1, 2)
    ]
    deadline = time.monotonic() + 30
    while pool.stats(include_workers=False)["pending_groups"] < 3:
        assert time.monotonic() < deadline, "the queue never filled"
        time.sleep(0.01)
    for ref in refs:
        ray.cancel(ref)
    ray.get(busy, timeout=60)
    deadline = time.monotonic() + 20
    while (pending := pool.stats(include_workers=False)["pending_groups"]) != 0:
        assert time.monotonic() < deadline, f"{pending} queue places still taken by cancelled requests"
        time.sleep(0.05)

    # An asyncio caller that is cancelled (what Serve does when an HTTP client hangs up) passes the
    # cancellation on to the router, which counts it and frees its places.
    before = pool.stats(include_workers=False)["counters"].get("cancelled", 0)

    async def hang_up() -> None:
        task = asyncio.ensure_future(
            pool.ascore_requests([_group(items[3], n=1, variant=f"async hang-up {i}") for i in range(3)], 60)
        )
        await asyncio.sleep(0.5)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(hang_up())
    deadline = time.monotonic() + 20
    while True:
        stats = pool.stats(include_workers=False)
        if stats["counters"].get("cancelled", 0) == before + 1 and stats["pending_groups"] == 0:
            break
        assert time.monotonic() < deadline, f"cancellation never reached the router: {stats['counters']}"
        time.sleep(0.05)


def test_restart_budget_is_per_window_and_a_worker_comes_back(ray_cluster, tiny_prm_path, demo_data, items):
    """Issue 14 item 7: past the budget a worker is out (stats say why), and back after the window."""
    from openrlhf_visualprm.workers import WorkerFailedError

    window = 20.0  # longer than a restart (model load) on a busy 2-CPU machine
    p = RewardPool.start(
        PoolConfig(
            WorkerConfig(PRMConfig(path=str(tiny_prm_path)), num_gpus=0, num_cpus=0.5),
            num_workers=1,
            name="test-restart-window-pool",
            image_roots=[str(Path(demo_data).parent)],
            max_restarts=1,
            restart_window_s=window,
        )
    )
    try:
        ray.kill(p.worker_handles()[0])
        assert len(p.score_requests([_group(items[0], n=1, variant="after kill 1")], timeout_s=60)[0]) == 1
        ray.kill(p.worker_handles()[0])
        taken_out = time.monotonic()
        with pytest.raises(WorkerFailedError, match=r"died 2 times within 20s"):
            p.score_requests([_group(items[0], n=1, variant="after kill 2")], timeout_s=60)
        worker = p.stats(include_workers=False)["workers"][0]
        assert not worker["alive"] and "budget: 1 restarts per 20s" in worker["out_reason"]
        deadline = time.monotonic() + window + 60
        while not p.stats(include_workers=False)["workers"][0]["alive"]:
            assert time.monotonic() < deadline, "the worker never came back after its window"
            time.sleep(0.1)
        assert time.monotonic() - taken_out >= window - 0.5
        got = p.score_requests([_group(items[0], n=1, variant="after the window")], timeout_s=60)
        assert len(got[0]) == 1
        worker = p.stats(include_workers=False)["workers"][0]
        assert worker["out_reason"] is None and worker["restarts"] == 2
    finally:
        p.shutdown()
