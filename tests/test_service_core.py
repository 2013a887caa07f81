"""ServiceCore without Ray Serve: hang-ups in /metrics, workers out in /health (issue 14 items 3, 7)."""

from __future__ import annotations

import asyncio
import base64
import io
import json

import pytest
from PIL import Image
from starlette.requests import Request

from openrlhf_visualprm.workers.config import PoolConfig, WorkerConfig
from openrlhf_visualprm.workers.groups import ImageLimits
from openrlhf_visualprm.workers.service import CLIENT_CLOSED, ServiceConfig, ServiceCore


class SlowPool:
    """A pool whose scoring never finishes; records whether the caller's cancellation reached it."""

    def __init__(self, workers: list[dict] | None = None) -> None:
        self.config = PoolConfig(WorkerConfig(model="m", num_gpus=0))
        self.cancelled = 0
        self.workers = workers or []

    def image_limits(self) -> ImageLimits:
        return ImageLimits()

    async def ascore_groups(self, groups, timeout_s=None):
        try:
            await asyncio.sleep(3600)
        except asyncio.CancelledError:
            self.cancelled += 1
            raise

    async def astats(self, include_workers: bool = True) -> dict:
        return {"name": "p", "model_id": "m", "kind": "prm", "workers": self.workers}


def _request(body: bytes) -> Request:
    sent = False

    async def receive():
        nonlocal sent
        if sent:
            return {"type": "http.request", "body": b"", "more_body": False}
        sent = True
        return {"type": "http.request", "body": body, "more_body": False}

    scope = {"type": "http", "method": "POST", "path": "/score", "headers": [], "query_string": b""}
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
