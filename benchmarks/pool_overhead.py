"""Reward-pool overhead: the same groups scored by VisualPRM directly and through the Ray pool.

The pool adds Ray transport (pickled images and results), routing and batching. This measures
what that costs on identical inputs: direct ``VisualPRM.score`` calls, one per group, against
``RewardPool.score_requests`` on the same groups with one worker on the same device and the cache
off (every group really scored). Overhead = pool time / direct time - 1; target <= 10% on GPU.

CPU smoke run with the tiny random model (numbers dominated by the tiny model's speed, so they
say little about the GPU figure)::

    python benchmarks/pool_overhead.py --tiny

GPU run (one worker on one GPU, bf16; the figure the target refers to)::

    python benchmarks/pool_overhead.py --model /ckpt/VisualPRM-8B-v1_1 --device cuda --num-gpus 1 \
        --dtype bfloat16 --groups 32 --repeats 3
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=__doc__.split("\n\n", 1)[1],
    )
    p.add_argument(
        "--tiny", action="store_true", help="CPU run with the tiny random VisualPRM (built if needed)"
    )
    p.add_argument("--model", help="VisualPRM checkpoint (required unless --tiny)")
    p.add_argument("--data", help="folder for the generated demo set (default: a cache folder)")
    p.add_argument("--device", default="cpu", help="cpu or cuda (default cpu)")
    p.add_argument("--dtype", default="float32", help="float32 (CPU) or bfloat16 (GPU)")
    p.add_argument(
        "--num-gpus", type=float, default=0.0, help="GPUs for the pool worker (1 with --device cuda)"
    )
    p.add_argument("--threads", type=int, default=1, help="CPU threads for both paths (CPU runs; default 1)")
    p.add_argument("--groups", type=int, default=12, help="groups per measured round (default 12)")
    p.add_argument(
        "--repeats", type=int, default=3, help="measured rounds per path (default 3; median reported)"
    )
    p.add_argument("--out", default="pool_overhead.json", help="where to write the figures (JSON)")
    return p.parse_args()


def main() -> int:
    args = parse_args()
    import ray
    import torch
    from PIL import Image
    from tqdm import tqdm

    from openrlhf_visualprm.data.demo_data import make_demo_data
    from openrlhf_visualprm.prm.config import PRMConfig
    from openrlhf_visualprm.prm.scorer import VisualPRM
    from openrlhf_visualprm.workers import PoolConfig, RewardPool, WorkerConfig

    cache = Path(os.environ.get("OPENRLHF_VISUALPRM_BENCH_CACHE", Path(tempfile.gettempdir()) / "ovp-bench"))
    if args.tiny:
        from openrlhf_visualprm.tiny_models import make_tiny_models

        args.model = str(make_tiny_models(cache / "tiny-models")["visualprm-tiny"])
    if not args.model:
        raise SystemExit("give --model PATH, or --tiny for the CPU smoke run")
    demo = make_demo_data(Path(args.data) if args.data else cache / "demo-data")
    root = demo.parent
    items = [json.loads(line) for line in demo.read_text().splitlines()]
    groups = []
    for i in range(args.groups):
        item = items[i % len(items)]
        groups.append(
            {
                "images": [item["image"]],
                "question": f"{item['question']} (#{i})",
                "responses": [c["response"] for c in item["candidates"]],
            }
        )
    n_responses = sum(len(g["responses"]) for g in groups)

    torch.set_num_threads(args.threads)
    dtype = getattr(torch, args.dtype)
    prm = VisualPRM.from_pretrained(args.model, device=args.device, dtype=dtype)
    pictures = {g["images"][0]: Image.open(root / g["images"][0]).convert("RGB") for g in groups}

    def direct_round() -> float:
        start = time.perf_counter()
        for g in groups:
            prm.score([pictures[g["images"][0]]], g["question"], responses=g["responses"])
        if args.device.startswith("cuda"):
            torch.cuda.synchronize()
        return time.perf_counter() - start

    ray.init(num_cpus=max(2, args.threads + 1), include_dashboard=False, log_to_driver=False)
    worker = WorkerConfig(
        PRMConfig(path=args.model, dtype=args.dtype),  # the component config, whole
        num_gpus=args.num_gpus,
        num_cpus=args.threads,
        device=args.device,
        torch_threads=args.threads,
        max_batch_tokens=10**9,
    )
    pool = RewardPool.start(
        PoolConfig(worker, num_workers=1, name="bench-pool", image_roots=[str(root)], cache_size=0)
    )
    prepared = pool.prepare(groups)  # image loading is the caller's work in both paths: not timed

    def pool_round() -> float:
        start = time.perf_counter()
        ray.get(pool.actor.score_groups.remote(prepared, 3600))
        return time.perf_counter() - start

    direct_round(), pool_round()  # warm-up
    # Interleaved rounds, so a change in machine load hits both paths alike.
    direct, pooled = [], []
    for _ in tqdm(range(args.repeats), desc="rounds (direct + pool)"):
        direct.append(direct_round())
        pooled.append(pool_round())
    pool.shutdown()
    ray.shutdown()

    d, p = statistics.median(direct), statistics.median(pooled)
    result = {
        "model": args.model,
        "device": args.device,
        "dtype": args.dtype,
        "groups": args.groups,
        "responses": n_responses,
        "repeats": args.repeats,
        "direct_s": direct,
        "pool_s": pooled,
        "direct_median_s": d,
        "pool_median_s": p,
        "overhead": p / d - 1,
        "direct_responses_per_s": n_responses / d,
        "pool_responses_per_s": n_responses / p,
    }
    Path(args.out).write_text(json.dumps(result, indent=2))
    print(f"{args.groups} groups / {n_responses} responses on {args.device}:")
    print(f"  direct  {d:8.3f} s  ({n_responses / d:7.1f} responses/s)")
    print(f"  pool    {p:8.3f} s  ({n_responses / p:7.1f} responses/s)")
    print(f"  overhead {100 * (p / d - 1):+.1f}%  (target <= +10% on GPU)   -> {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
