"""Loopback load test of the HTTP reward service: N concurrent clients for T seconds.

Each client loops: POST one request, wait for the answer, repeat, until the time is up. Reports
requests/s, p50/p99 latency and errors (any non-200 or transport failure; must be 0), and
writes them as JSON. With ``--tiny`` it starts Ray, a pool with the tiny random VisualPRM and the
service on 127.0.0.1 itself; otherwise it targets ``--url``.

    python benchmarks/service_load.py --tiny --clients 8 --duration 20
    python benchmarks/service_load.py --tiny --workers 2 --clients 4 --duration 20 \
        --kill-worker-at 5 --kill-worker-at 12 --verify
    python benchmarks/service_load.py --url http://127.0.0.1:8000 --image-root-relative --clients 64

Requests are built from the generated demo set; ``--endpoint reward`` sends OpenRLHF's protocol
(one sample per request, as OpenRLHF's rollout does), ``score`` the extended one (one group of
all candidates). Each request gets a distinct question so the result cache does not answer it
(``--allow-cache-hits`` to measure a warm cache instead).

Failure drill (``--tiny``): ``--kill-worker-at S`` kills a pool worker S seconds into the load
(repeatable; workers in turn). Reported: ``lost`` = requests sent without a 200 answer,
``duplicated`` = request ids answered more than once; ``--verify`` rescoring every answer with
the same tiny model in this process (``equal`` / ``mismatched``).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import socket
import statistics
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
PROMPT = "<|im_start|>user\n<image>\nSolve the problem.<|im_end|>\n<|im_start|>assistant\n"


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=__doc__.split("\n\n", 1)[1],
    )
    p.add_argument("--tiny", action="store_true", help="start Ray + tiny-model pool + service here first")
    p.add_argument("--url", default=None, help="service base URL (default: the --tiny service)")
    p.add_argument("--token", default=None, help="bearer token, if the service wants one")
    p.add_argument("--data", default=None, help="folder of the demo set (image paths are relative to it)")
    p.add_argument("--workers", type=int, default=1, help="--tiny: pool workers (default 1)")
    p.add_argument("--clients", type=int, default=8, help="concurrent clients (default 8)")
    p.add_argument("--duration", type=float, default=20.0, help="seconds of load (default 20)")
    p.add_argument("--endpoint", choices=["reward", "score"], default="reward", help="protocol to exercise")
    p.add_argument("--allow-cache-hits", action="store_true", help="repeat identical requests (warm cache)")
    p.add_argument(
        "--kill-worker-at",
        type=float,
        action="append",
        default=[],
        metavar="S",
        help="--tiny: kill a pool worker S seconds into the load (repeatable)",
    )
    p.add_argument(
        "--verify", action="store_true", help="--tiny, reward endpoint: rescore answers in-process"
    )
    p.add_argument("--out", default="service_load.json", help="where to write the figures (JSON)")
    return p.parse_args()


def _request(
    items: list[dict], endpoint: str, n: int, distinct: bool, rng: random.Random
) -> tuple[str, dict]:
    item = rng.choice(items)
    return _request_for(item, endpoint, n, distinct, rng)


def _request_for(item: dict, endpoint: str, n: int, distinct: bool, rng: random.Random) -> tuple[str, dict]:
    question = item["question"] + (f" (request {n})" if distinct else "")
    if endpoint == "score":
        return "/score", {
            "groups": [
                {
                    "images": [item["image"]],
                    "question": question,
                    "responses": [c["response"] for c in item["candidates"]],
                }
            ]
        }
    cand = rng.choice(item["candidates"])
    label = {"images": [item["image"]], "question": question, "answer": item["answer"]}
    return "/", {"query": [PROMPT + cand["response"] + "<|im_end|>"], "prompts": [PROMPT], "labels": [label]}


async def run_load(url: str, items: list[dict], args: argparse.Namespace, kill=None) -> dict:
    import httpx

    headers = {"Authorization": f"Bearer {args.token}"} if args.token else {}
    latencies: list[float] = []
    errors: list[str] = []
    answers: dict[int, list] = {}  # request id -> [(request body, reply body), ...]
    sent = 0
    kills: list[float] = []
    counter = iter(range(10**9))
    deadline = time.monotonic() + args.duration

    async def client(cid: int, http: httpx.AsyncClient) -> None:
        nonlocal sent
        rng = random.Random(cid)
        while time.monotonic() < deadline:
            n = next(counter)
            path, body = _request(items, args.endpoint, n, not args.allow_cache_hits, rng)
            start = time.monotonic()
            sent += 1
            try:
                reply = await http.post(url + path, json=body, headers=headers, timeout=180)
                ok = reply.status_code == 200 and ("rewards" in reply.json() or "results" in reply.json())
                if not ok:
                    errors.append(f"{reply.status_code}: {reply.text[:200]}")
                    continue
            except Exception as exc:  # counted, never hidden
                errors.append(f"{type(exc).__name__}: {exc}")
                continue
            latencies.append(time.monotonic() - start)
            answers.setdefault(n, []).append((body, reply.json()))

    async def killer(at: float, index: int) -> None:
        await asyncio.sleep(at)
        if time.monotonic() < deadline:
            await asyncio.to_thread(kill, index)
            kills.append(at)
            print(f"  killed worker {index} at {at:.0f}s")

    began = time.monotonic()
    async with httpx.AsyncClient(limits=httpx.Limits(max_connections=args.clients)) as http:
        drills = [killer(at, i) for i, at in enumerate(args.kill_worker_at)] if kill else []
        await asyncio.gather(*[client(i, http) for i in range(args.clients)], *drills)
    elapsed = time.monotonic() - began
    lat = sorted(latencies)

    def pct(q: float) -> float:
        return lat[min(len(lat) - 1, int(q * len(lat)))] if lat else float("nan")

    return {
        "url": url,
        "endpoint": args.endpoint,
        "clients": args.clients,
        "duration_s": elapsed,
        "requests": len(lat),
        "errors": len(errors),
        "sent": sent,
        "lost": sent - sum(len(v) for v in answers.values()),
        "duplicated": sum(len(v) - 1 for v in answers.values()),
        "worker_kills": kills,
        "_answers": answers,
        "error_samples": errors[:5],
        "requests_per_s": len(lat) / elapsed,
        "p50_s": pct(0.50),
        "p99_s": pct(0.99),
        "mean_s": statistics.fmean(lat) if lat else float("nan"),
    }


def verify_answers(answers: dict[int, list], model: str, root: Path) -> dict:
    """Rescore every answered OpenRLHF request with the same tiny model in this process."""
    from PIL import Image

    from openrlhf_visualprm.prm.scorer import VisualPRM

    prm = VisualPRM.from_pretrained(model)
    equal = mismatched = 0
    for replies in answers.values():
        body, reply = replies[0]
        label = body["labels"][0]
        response = body["query"][0][len(PROMPT) :].removesuffix("<|im_end|>").strip()
        image = Image.open(root / label["images"][0]).convert("RGB")
        want = prm.score([image], label["question"], responses=[response])[0].score
        if abs(want - reply["rewards"][0]) <= 1e-4:
            equal += 1
        else:
            mismatched += 1
    return {"equal": equal, "mismatched": mismatched}


def main() -> int:
    args = parse_args()
    from openrlhf_visualprm.data.demo_data import make_demo_data

    cache = Path(os.environ.get("OPENRLHF_VISUALPRM_BENCH_CACHE", Path(tempfile.gettempdir()) / "ovp-bench"))
    demo = make_demo_data(Path(args.data) if args.data else cache / "demo-data")
    items = [json.loads(line) for line in demo.read_text().splitlines()]
    url = args.url
    teardown = None
    if args.tiny:
        import ray
        from ray import serve

        from openrlhf_visualprm.prm.config import PRMConfig
        from openrlhf_visualprm.tiny_models import make_tiny_models
        from openrlhf_visualprm.workers import PoolConfig, RewardPool, WorkerConfig
        from openrlhf_visualprm.workers.service import ServiceConfig, start_service

        model = str(make_tiny_models(cache / "tiny-models")["visualprm-tiny"])
        ray.init(num_cpus=max(2, args.workers), include_dashboard=False, log_to_driver=False)
        pool = RewardPool.start(
            PoolConfig(
                WorkerConfig(PRMConfig(path=model), num_gpus=0, num_cpus=1),
                num_workers=args.workers,
                image_roots=[str(demo.parent)],
            )
        )
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        url = start_service(ServiceConfig(port=port, image_roots=[str(demo.parent)], token=args.token))
        print(f"tiny service up at {url}")

        def kill(i: int) -> None:
            handles = pool.worker_handles()
            ray.kill(handles[i % len(handles)])

        def teardown() -> None:
            serve.shutdown()
            pool.shutdown()
            ray.shutdown()

    if not url:
        raise SystemExit("give --url of a running service, or --tiny to start one here")
    print(f"{args.clients} clients x {args.duration:.0f}s on {url} ({args.endpoint}) ...")
    try:
        result = asyncio.run(run_load(url.rstrip("/"), items, args, kill if args.tiny else None))
        if args.tiny:
            result["pool"] = {k: v for k, v in pool.stats(include_workers=False)["counters"].items()}
    finally:
        if teardown:
            teardown()
    answers = result.pop("_answers")
    if args.verify and args.tiny and args.endpoint == "reward":
        result.update(verify_answers(answers, model, demo.parent))
    Path(args.out).write_text(json.dumps(result, indent=2))
    print(
        f"requests {result['requests']}  errors {result['errors']}  "
        f"{result['requests_per_s']:.2f} req/s  p50 {1000 * result['p50_s']:.0f} ms  "
        f"p99 {1000 * result['p99_s']:.0f} ms   -> {args.out}"
    )
    print(
        f"sent {result['sent']}  lost {result['lost']}  duplicated {result['duplicated']}  "
        f"worker kills at {result['worker_kills']}"
        + (
            f"  verified: {result['equal']} equal, {result['mismatched']} mismatched"
            if "equal" in result
            else ""
        )
    )
    for sample in result["error_samples"]:
        print("  error:", sample)
    return 1 if result["errors"] or result["lost"] or result["duplicated"] or result.get("mismatched") else 0


if __name__ == "__main__":
    raise SystemExit(main())
