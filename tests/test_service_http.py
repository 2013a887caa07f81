"""The HTTP reward service on real Ray Serve, the real tiny VisualPRM, and OpenRLHF's own client.

The session's Ray (``tests/conftest.py``) and one Serve instance for the module: an open app at ``/`` (OpenRLHF's client
sends no auth header) and a token-protected app at ``/secure``, both over one pool.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import socket
from pathlib import Path

import httpx
import pytest
from PIL import Image
from ray import serve

from openrlhf_visualprm.prm.config import PRMConfig
from openrlhf_visualprm.workers import PoolConfig, RewardPool, WorkerConfig
from openrlhf_visualprm.workers.service import ServiceConfig, start_service

TOKEN = "test-token-123"
TOL = 1e-4
PROMPT = "<|im_start|>user\n<image>\nSolve it.<|im_end|>\n<|im_start|>assistant\n"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def items(demo_data) -> list[dict]:
    return [json.loads(line) for line in Path(demo_data).read_text().splitlines()]


@pytest.fixture(scope="module")
def direct_prm(tiny_prm_path):
    from openrlhf_visualprm.prm.scorer import VisualPRM

    return VisualPRM.from_pretrained(str(tiny_prm_path))


@pytest.fixture(scope="module")
def service(ray_cluster, tiny_prm_path, demo_data):
    root = str(Path(demo_data).parent)
    pool = RewardPool.start(
        PoolConfig(
            WorkerConfig(PRMConfig(path=str(tiny_prm_path)), num_gpus=0, num_cpus=0.5),
            name="test-service-pool",
            image_roots=[root],
        )
    )
    port = _free_port()
    common = dict(
        pool_name="test-service-pool",
        port=port,
        image_roots=[root],
        max_request_bytes=256 * 1024,
        max_image_bytes=64 * 1024,
        request_timeout_s=60,
    )
    url = start_service(ServiceConfig(**common))
    start_service(ServiceConfig(**common, token=TOKEN, app_name="secure", route_prefix="/secure"))
    yield url
    serve.shutdown()
    pool.shutdown()


def _image(demo_data, item) -> Image.Image:
    return Image.open(Path(demo_data).parent / item["image"]).convert("RGB")


def test_openrlhf_remote_reward_client_gets_correct_rewards(service, items, direct_prm, demo_data):
    from openrlhf.utils.agent import SingleTurnAgentExecutor

    item = items[0]
    responses = [c["response"] for c in item["candidates"]]
    want = [
        r.score for r in direct_prm.score([_image(demo_data, item)], item["question"], responses=responses)
    ]
    label = {"images": [item["image"]], "question": item["question"], "answer": item["answer"]}
    # OpenRLHF's own HTTP path, one sample per call as its rollout does.
    executor = SingleTurnAgentExecutor(remote_rm_url=service + "/")
    for response, expected in zip(responses, want):
        query = PROMPT + response + "<|im_end|>"
        infos = asyncio.run(executor._fetch_rewards_via_http([query], [PROMPT], [label]))
        assert infos[0]["rewards"] == pytest.approx([expected], abs=TOL)
        assert infos[0]["scores"] == infos[0]["rewards"] and infos[0]["extra_logs"]["prm/num_steps"][0] >= 1
    # The same request shape with a whole group (labels as JSON strings, as some datasets store them).
    body = {
        "query": [PROMPT + r for r in responses],
        "prompts": [PROMPT] * len(responses),
        "labels": [json.dumps(label)] * len(responses),
    }
    reply = httpx.post(service + "/reward", json=body, timeout=60).json()
    assert reply["rewards"] == pytest.approx(want, abs=TOL)


def test_reward_route_counts_a_placeholder_mismatch_as_a_bad_sample(service, items):
    """Issue 23: on OpenRLHF's route the mismatched sample gets the neutral reward, counted; the
    other sample of the batch keeps its score."""
    item = items[0]
    label = {"images": [item["image"]], "question": item["question"]}
    bad = {**label, "question": "<image> beside <image>: which?"}
    response = item["candidates"][0]["response"]
    body = {"query": [PROMPT + response] * 2, "prompts": [PROMPT] * 2, "labels": [label, bad]}
    reply = httpx.post(service + "/reward", json=body, timeout=60)
    assert reply.status_code == 200, reply.text
    assert reply.json()["extra_logs"]["reward/failed_group"] == [0.0, 1.0]
    assert reply.json()["rewards"][1] == 0.0 and reply.json()["extra_logs"]["prm/num_steps"][0] >= 1


def test_extended_endpoint_returns_per_step_scores(service, items, direct_prm, demo_data):
    a, b = items[1], items[2]
    data = (Path(demo_data).parent / b["image"]).read_bytes()
    steps = [["First, read the figure.", "Then compute."], ["A single step."]]
    body = {
        "groups": [
            {
                "images": [{"path": a["image"]}],
                "question": a["question"],
                "responses": [c["response"] for c in a["candidates"]],
                "config": {"aggregation": "min"},
            },
            {
                "images": ["data:image/png;base64," + base64.b64encode(data).decode()],
                "question": b["question"],
                "steps": steps,
            },
        ]
    }
    reply = httpx.post(service + "/score", json=body, timeout=60)
    assert reply.status_code == 200, reply.text
    got = reply.json()["results"]
    want_a = direct_prm.score(
        [_image(demo_data, a)], a["question"], responses=body["groups"][0]["responses"], aggregation="min"
    )
    want_b = direct_prm.score([_image(demo_data, b)], b["question"], steps=steps)
    for got_group, want_group in ((got[0], want_a), (got[1], want_b)):
        assert len(got_group) == len(want_group)
        for g, w in zip(got_group, want_group):
            assert g["steps"] == w.steps and len(g["step_scores"]) == len(w.steps)
            assert g["step_scores"] == pytest.approx(w.step_scores, abs=TOL)
            assert g["score"] == pytest.approx(w.score, abs=TOL)


def test_bad_requests_get_4xx_with_clear_messages_and_service_keeps_serving(service, items):
    item = items[3]
    good = {
        "groups": [
            {
                "images": [item["image"]],
                "question": item["question"],
                "responses": [item["candidates"][0]["response"]],
            }
        ]
    }

    def group(**kw):
        return json.dumps({"groups": [{**good["groups"][0], **kw}]}).encode()

    cases = [
        (b"{not json", 400, "not valid JSON"),
        (b"", 400, "empty request body"),
        (b"[1, 2]", 400, "must be a JSON object"),
        (group(images=["images/no-such.png"]), 400, "not found under the image roots"),
        (group(images=["../../../../etc/passwd"]), 400, "outside the allowed image roots"),
        (group(images=["/etc/hostname"]), 400, "outside the allowed image roots"),
        (group(images=[{"base64": "!!notbase64"}]), 400, "not valid base64"),
        (
            group(images=[{"base64": base64.b64encode(os.urandom(90_000)).decode()}]),
            413,
            "over the image limit",
        ),
        (group(responses="not a list"), 400, "responses must be a list of strings"),
        (b'{"groups": [{"question": "q", "responses": ["a"]}]}', 400, "has no image"),
        (b'{"groups": []}', 400, "non-empty list"),
        (b'{"query": ["x"], "prompts": ["x"], "labels": "not a list"}', 400, "'labels' must be a list"),
        (b"x" * (300 * 1024), 413, "over the limit"),
        # valid JSON that used to be a 500 (issue 22 item 4)
        (b'{"groups": [], "n": ' + b"9" * 5000 + b"}", 400, "number too large"),
        (json.dumps({**good, "timeout_s": 10**400}).encode(), 400, "'timeout_s' must be a positive, finite"),
        (group(question="area \ud800?"), 400, "groups[0].question is not valid Unicode"),
        (group(responses=["ok", "\udfff"]), 400, "groups[0].responses[1] is not valid Unicode"),
    ]
    for body, status, needle in cases:
        path = "/reward" if body.startswith(b'{"query"') else "/score"
        reply = httpx.post(
            service + path, content=body, headers={"content-type": "application/json"}, timeout=60
        )
        assert reply.status_code == status, (body[:80], reply.text)
        assert needle in reply.json()["error"], reply.json()
        assert httpx.get(service + "/health", timeout=30).status_code == 200
    # OpenRLHF's endpoint: a bad *sample* is not a bad request; it gets the neutral reward and is
    # counted (as in the reward actor and reward_fns), the good sample beside it its real score
    prompt = "<|im_start|>user\nQ<|im_end|>\n<|im_start|>assistant\n"
    response = item["candidates"][0]["response"]
    body = {
        "query": [prompt + "x", prompt + response, prompt + "y", prompt + "z\ud800"],
        "prompts": [prompt] * 4,
        "labels": [
            "no image here",
            {"image": item["image"], "question": item["question"]},
            {"image": "../../../../etc/passwd"},
            {"image": item["image"], "question": item["question"]},  # its response: a lone surrogate
        ],
    }
    raw = json.dumps(body).encode()  # "\\ud800" in the JSON text, as a client may send it
    reply = httpx.post(
        service + "/reward", content=raw, headers={"content-type": "application/json"}, timeout=120
    )
    assert reply.status_code == 200, reply.text
    out = reply.json()
    assert out["extra_logs"]["reward/failed_group"] == [1.0, 0.0, 1.0, 1.0]
    assert (
        out["rewards"][0] == out["rewards"][2] == out["rewards"][3] == 0.0 and 0.0 < out["rewards"][1] < 1.0
    )
    assert all(len(v) == 4 for v in out["extra_logs"].values())  # one schema, the same keys per sample
    ok = httpx.post(service + "/score", json=good, timeout=60)
    assert ok.status_code == 200 and len(ok.json()["results"][0]) == 1


def test_bearer_token_is_enforced(service, items):
    item = items[4]
    body = {
        "groups": [
            {
                "images": [item["image"]],
                "question": item["question"],
                "responses": [item["candidates"][0]["response"]],
            }
        ]
    }
    assert httpx.post(service + "/secure/score", json=body, timeout=60).status_code == 401
    wrong = httpx.post(
        service + "/secure/score", json=body, headers={"Authorization": "Bearer nope"}, timeout=60
    )
    assert wrong.status_code == 401 and "bearer token" in wrong.json()["error"]
    assert httpx.get(service + "/secure/metrics", timeout=30).status_code == 401
    right = httpx.post(
        service + "/secure/score", json=body, headers={"Authorization": f"Bearer {TOKEN}"}, timeout=60
    )
    assert right.status_code == 200 and len(right.json()["results"][0]) == 1


def test_health_and_prometheus_metrics(service, items):
    health = httpx.get(service + "/health", timeout=30).json()
    assert health["status"] == "ok" and health["workers_alive"] == 1 and health["kind"] == "prm"
    item = items[5]
    body = {
        "groups": [
            {
                "images": [item["image"]],
                "question": item["question"],
                "responses": [c["response"] for c in item["candidates"]],
            }
        ]
    }
    first = httpx.post(service + "/score", json=body, timeout=60).json()
    second = httpx.post(service + "/score", json=body, timeout=60).json()
    assert first == second
    text = httpx.get(service + "/metrics", timeout=30).text
    lines = dict(line.rsplit(" ", 1) for line in text.splitlines() if line and not line.startswith("#"))
    assert float(lines['visualprm_http_requests_total{endpoint="score",status="200"}']) >= 2
    assert float(lines['visualprm_http_requests_total{endpoint="score",status="400"}']) >= 1
    assert float(lines["visualprm_cache_hits_total"]) >= len(item["candidates"])
    assert float(lines["visualprm_pool_workers_alive"]) == 1
    assert float(lines['visualprm_pool_batch_groups_bucket{le="+Inf"}']) >= 1
    assert "# TYPE visualprm_http_request_seconds histogram" in text


def _bomb_png(folder: Path) -> str:
    """An 8000x8000 1-bit PNG of a few KB: at the 64M-pixel limit, 192 MB once decoded to RGB."""
    path = folder / "hostile" / "bomb.png"
    if not path.exists():
        path.parent.mkdir(exist_ok=True)
        Image.new("1", (8000, 8000)).save(path, optimize=True)
    return "hostile/bomb.png"


def test_hostile_requests_get_4xx_naming_the_field(service, items, demo_data):
    """Issue 14 items 2 and 5: each of these was a 5xx (or 4.4 GB of RAM) before."""
    item = items[2]
    base = {"images": [item["image"]], "question": item["question"], "responses": ["a\n\nb"]}
    bomb = _bomb_png(Path(demo_data).parent)
    nested = b'{"groups": ' + b"[" * 100_000 + b"]" * 100_000 + b"}"
    cases = [
        (nested, 400, "nested too deeply"),
        ({"groups": [{**base, "question": "<image> and <image> again"}]}, 400, "groups[0].question"),
        ({"groups": [{**base, "images": ["images/x\u0000.png"]}]}, 400, "NUL character"),
        ({"groups": [{**base, "images": ["a" * 10_000]}]}, 400, "longer than 4096 characters"),
        ({"groups": [{**base, "images": ["a/" * 200 + "b" * 300]}]}, 400, "groups[0].images[0]"),
        ({"groups": [base], "timeout_s": float("nan")}, 400, "'timeout_s' must be a positive, finite"),
        ({"groups": [{**base, "images": [bomb] * 4}]}, 413, "per group (--max-group-pixels)"),
        ({"groups": [{**base, "images": [item["image"]] * 9}]}, 413, "per group (--max-images-per-group)"),
        ({"groups": [{**base, "images": [bomb]}] * 3}, 413, "per request (--max-request-pixels)"),
    ]
    wrong = []
    for body, status, needle in cases:
        content = body if isinstance(body, bytes) else json.dumps(body).encode()
        reply = httpx.post(
            service + "/score", content=content, headers={"content-type": "application/json"}, timeout=120
        )
        if reply.status_code != status or needle not in reply.text:
            wrong.append((needle, reply.status_code, reply.text[:160]))
    assert not wrong, "\n".join(map(str, wrong))
    assert httpx.get(service + "/health", timeout=30).status_code == 200
    # One maximal image is allowed and is shipped at the size the PRM reads.
    ok = httpx.post(service + "/score", json={"groups": [{**base, "images": [bomb]}]}, timeout=120)
    assert ok.status_code == 200, ok.text[:300]
