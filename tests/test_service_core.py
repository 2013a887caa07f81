"""ServiceCore without Ray Serve: hang-ups in /metrics, workers out in /health (issue 14 items 3, 7)."""

from __future__ import annotations

import asyncio
import base64
import io
import json

import pytest
from PIL import Image
from starlette.requests import Request

from openrlhf_visualprm.judge.config import JudgeConfig
from openrlhf_visualprm.prm.config import PRMConfig
from openrlhf_visualprm.workers.config import PoolConfig, WorkerConfig
from openrlhf_visualprm.workers.service import CLIENT_CLOSED, RUN_STOPPING, ServiceConfig, ServiceCore


class SlowPool:
    """A pool whose scoring never finishes; records whether the caller's cancellation reached it."""

    def __init__(self, workers: list[dict] | None = None, component=None) -> None:
        self.config = PoolConfig(WorkerConfig(component or PRMConfig(model="m"), num_gpus=0))
        self.cancelled = 0
        self.workers = workers or []
        self.scored: list[int] = []

    def score_rows(self, groups, timeout_s=None):
        """What the pool's workers answer: the runtime's rows (every response 0.75)."""
        self.scored.append(sum(g.n for g in groups))
        kind = self.config.worker.kind
        return [
            [{"components": {kind: 0.75}, kind: {"step_scores": [0.75]}, "error": None} for _ in range(g.n)]
            for g in groups
        ]

    async def ascore_requests(self, groups, timeout_s=None):
        try:
            await asyncio.sleep(3600)
        except asyncio.CancelledError:
            self.cancelled += 1
            raise

    async def astats(self, include_workers: bool = True) -> dict:
        return {"name": "p", "model_id": "m", "kind": "prm", "workers": self.workers}


def _request(body: bytes, path: str = "/score") -> Request:
    sent = False

    async def receive():
        nonlocal sent
        if sent:
            return {"type": "http.request", "body": b"", "more_body": False}
        sent = True
        return {"type": "http.request", "body": body, "more_body": False}

    scope = {"type": "http", "method": "POST", "path": path, "headers": [], "query_string": b""}
    return Request(scope, receive)


def test_a_client_hang_up_is_not_counted_as_200_and_reaches_the_pool():
    buf = io.BytesIO()
    Image.new("RGB", (8, 8)).save(buf, format="PNG")
    uri = "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()
    body = json.dumps({"groups": [{"images": [uri], "question": "q", "responses": ["a"]}]}).encode()
    core = ServiceCore(ServiceConfig())
    core._pool = SlowPool()

    async def hang_up() -> None:
        task = asyncio.ensure_future(core.handle(_request(body), "score"))
        await asyncio.sleep(0.5)  # past the image preparation, waiting on the pool
        task.cancel()  # what Serve does when the HTTP client disconnects
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(hang_up())
    assert dict(core.requests) == {("score", CLIENT_CLOSED): 1}
    assert core._pool.cancelled == 1


def test_health_names_the_worker_that_is_out_and_why():
    reason = "died 4 times within 600s (budget: 3 restarts per 600s); out until 12:00:00"
    core = ServiceCore(ServiceConfig())
    core._pool = SlowPool(
        [{"index": 0, "alive": True, "out_reason": None}, {"index": 1, "alive": False, "out_reason": reason}]
    )
    reply = asyncio.run(core.health())
    data = json.loads(reply.body)
    assert reply.status_code == 200 and data["workers_alive"] == 1
    assert data["workers_out"] == [{"index": 1, "reason": reason}]


def _png_uri() -> str:
    buf = io.BytesIO()
    Image.new("RGB", (8, 8)).save(buf, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()


def _reward(core: ServiceCore, labels: list) -> tuple[int, dict]:
    """One OpenRLHF remote-reward request (one sample per label), as its client sends it."""
    prompt = "<|im_start|>user\nWhat is x?<|im_end|>\n<|im_start|>assistant\n"
    body = {
        "query": [prompt + "x = 2<|im_end|>"] * len(labels),
        "prompts": [prompt] * len(labels),
        "labels": labels,
    }
    reply = asyncio.run(core.handle(_request(json.dumps(body).encode(), "/reward"), "reward"))
    return reply.status_code, json.loads(reply.body)


def test_an_all_bad_stream_to_reward_gets_the_run_stopping_answer(caplog):
    """Issue 21 item 1: /reward had no failure guard; an all-bad stream got 200 and zeros forever.
    Past --max-failed-fraction of the last --failure-window samples it answers 422 (OpenRLHF's
    client raises after its retries, and the run stops), naming the reasons, and keeps answering
    it while the run's retries arrive."""
    core = ServiceCore(
        ServiceConfig(failure_window=4, max_failed_fraction=0.5, bad_sample_log_interval_s=3600)
    )
    core._pool = SlowPool()
    good = {"image": _png_uri(), "answer": "2"}
    assert _reward(core, [good, good]) == (200, _reward(core, [good, good])[1])
    assert _reward(core, [good])[1]["rewards"] == [0.75]
    statuses = []
    with caplog.at_level("ERROR", logger="openrlhf_visualprm.rewards"):
        for _ in range(6):  # one sample per request, as OpenRLHF's executor sends them
            status, body = _reward(core, [{"answer": "2"}])  # no image: a bad sample
            statuses.append(status)
    assert statuses[:2] == [200, 200]  # a few bad samples among good ones: neutral, counted
    assert statuses[2:] == [RUN_STOPPING] * 4, statuses
    assert "no_image (3)" in body["error"] and "--max-failed-fraction" in body["error"]
    assert _reward(core, [good])[0] == RUN_STOPPING  # the run's retries are refused too
    # the bad samples' reason is logged (rate-limited: one line here, then counted)
    bad_lines = [r.message for r in caplog.records if "bad sample, neutral reward" in r.message]
    assert len(bad_lines) == 1 and "no_image" in bad_lines[0]
    assert core._pool.scored == [2, 2, 1, 0, 0][: len(core._pool.scored)] or core._pool.scored[:3] == [
        2,
        2,
        1,
    ]


def test_reward_logs_the_same_keys_for_good_and_bad_samples():
    core = ServiceCore(ServiceConfig())
    core._pool = SlowPool()
    status, body = _reward(core, [{"image": _png_uri()}, {"answer": "no image"}])
    assert status == 200 and body["rewards"] == [0.75, 0.0]
    logs = body["extra_logs"]
    assert logs["reward/failed_group"] == [0.0, 1.0] and logs["prm/num_steps"] == [1.0, 0.0]
    assert all(len(v) == 2 for v in logs.values())


def test_reward_on_a_group_judge_answers_400_naming_the_schedule():
    """Issue 20 item 3: `serve --kind judge` answered OpenRLHF's one-sample requests with 0.5."""
    core = ServiceCore(ServiceConfig())
    core._pool = SlowPool(component=JudgeConfig(model="j", schedule="listwise"))
    status, body = _reward(core, [{"image": _png_uri(), "reference": "x = 2"}])
    assert (
        status == 400 and "schedule 'listwise'" in body["error"] and "--schedule reference" in body["error"]
    )


def test_reward_on_a_reference_judge_scores_one_sample_against_its_reference():
    core = ServiceCore(ServiceConfig())
    core._pool = SlowPool(component=JudgeConfig(model="j", schedule="reference"))
    status, body = _reward(core, [{"image": _png_uri(), "reference": "x = 2"}, {"image": _png_uri()}])
    assert status == 200 and body["rewards"] == [0.75, 0.0]  # no reference: a bad sample, counted
    assert (
        body["extra_logs"]["reward/failed_group"] == [0.0, 1.0]
        and "judge/parse_failure_rate" in body["extra_logs"]
    )
