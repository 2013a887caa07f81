"""VisualPRM throughput: per-step vs single vs shared-prefix paths, side by side in one run.

GPU (default): the real VisualPRM-8B-v1.1 architecture (InternViT-300M + Qwen2.5-7B, InternVL3-8B
layout) with RANDOM weights in bf16, built from a config: nothing is downloaded.
``--tiny``: the tiny random checkpoint on CPU in fp32 (a smoke run; compare ratios, not absolutes).

Workload (the defaults are the design's performance model, measured on one H100): a GRPO group of 8 responses to one
image of 7 tiles (2x3 grid + thumbnail = 1,792 image tokens), 8 steps of ~60 tokens each.
Reports responses/s, LLM tokens processed, model TFLOP/s (2·params·tokens + attention), peak
GPU memory, and the largest step-score difference between each path and the per-step reference.

    python benchmarks/prm_throughput.py --tiny
    python benchmarks/prm_throughput.py --group 8 --steps 8 --tiles 7 --repeats 3   # on a GPU
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import tempfile
import time
from pathlib import Path

import torch
from PIL import Image
from tqdm.auto import tqdm

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from openrlhf_visualprm.images import choose_grid  # noqa: E402
from openrlhf_visualprm.prm.scorer import VisualPRM  # noqa: E402

WORDS = (
    "the angle measures degrees so we subtract from which gives side length area triangle base height "
    "therefore multiply add equals value chart bar reading first second"
).split()


def make_group(n: int, steps: int, tokens_per_step: int, seed: int) -> list[str]:
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        k = max(1, steps + rng.randint(-1, 1))
        out.append(
            "\n\n".join(" ".join(rng.choice(WORDS) for _ in range(tokens_per_step)) + "." for _ in range(k))
        )
    return out


def image_for_tiles(tiles: int) -> Image.Image:
    """An image whose InternVL grid + thumbnail gives ``tiles`` tiles (7 -> 2x3 + thumbnail)."""
    for cols in range(1, 13):
        for rows in range(1, 13):
            n = cols * rows
            if n + (1 if n > 1 else 0) == tiles and choose_grid(448 * cols, 448 * rows) == (cols, rows):
                return Image.new("RGB", (448 * cols, 448 * rows), (120, 80, 200))
    raise SystemExit(f"no grid gives exactly {tiles} tiles")


def build_real_architecture(device: str) -> VisualPRM:
    """VisualPRM-8B-v1.1-shaped model with random bf16 weights (InternVL3-8B layout)."""
    from transformers import AutoTokenizer, InternVLConfig, InternVLForConditionalGeneration

    from openrlhf_visualprm.prm.template import INTERNVL2_5_SYSTEM_MESSAGE
    from openrlhf_visualprm.tiny_models import INTERNVL_IMAGE_TOKENS, qwen2_tokenizer_dir

    tok = AutoTokenizer.from_pretrained(
        str(qwen2_tokenizer_dir()), extra_special_tokens=INTERNVL_IMAGE_TOKENS
    )
    config = InternVLConfig(
        vision_config={
            "hidden_size": 1024,
            "intermediate_size": 4096,
            "num_hidden_layers": 24,
            "num_attention_heads": 16,
            "image_size": [448, 448],
            "patch_size": [14, 14],
            "use_mean_pooling": True,
            "norm_type": "layer_norm",
            "attention_bias": True,
        },
        text_config={
            "model_type": "qwen2",
            "vocab_size": 151674,
            "hidden_size": 3584,
            "intermediate_size": 18944,
            "num_hidden_layers": 28,
            "num_attention_heads": 28,
            "num_key_value_heads": 4,
            "max_position_embeddings": 32768,
            "rope_theta": 1000000.0,
            "rms_norm_eps": 1e-6,
            "tie_word_embeddings": False,
        },
        image_token_id=tok.context_image_token_id,
        image_seq_length=256,
        downsample_ratio=0.5,
        vision_feature_layer=-1,
        vision_feature_select_strategy="default",
    )
    config._attn_implementation = "sdpa"
    with torch.device(device):
        model = InternVLForConditionalGeneration(config).to(torch.bfloat16).eval()
    return VisualPRM(model, tok, INTERNVL2_5_SYSTEM_MESSAGE, "random-visualprm-8b-arch", batch_size=8)


def llm_tokens(prm: VisualPRM, image, question: str, group: list[str], method: str) -> int:
    """Tokens the LLM processes for one group under ``method`` (counted from the tokenised prompts)."""
    _, tiles = prm.prepare_images([image])
    prefix = prm.prefix_text(question, tiles)
    from openrlhf_visualprm.steps import split_steps

    encs = [prm._encode(prefix, split_steps(r)) for r in group]
    if method == "single":
        return sum(len(e.ids) for e in encs)
    p = len(prm.tokenizer(prefix, add_special_tokens=False)["input_ids"])
    if method == "shared":
        return p + sum(len(e.ids) - p for e in encs)
    total = 0
    for e in encs:
        total += sum(pos + 2 for pos in e.score_positions)  # each step prefix up to its '+' turn
    return total


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tiny", action="store_true", help="tiny random checkpoint on CPU (fp32)")
    ap.add_argument("--group", type=int, default=8)
    ap.add_argument("--steps", type=int, default=8)
    ap.add_argument("--words-per-step", type=int, default=45, help="~60 tokens per step at the default")
    ap.add_argument("--tiles", type=int, default=7)
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--methods", default="per-step,single,shared")
    ap.add_argument("--json", type=Path, default=None, help="also write the table as JSON")
    args = ap.parse_args()

    if args.tiny:
        from openrlhf_visualprm.tiny_models import make_tiny_models

        tmp = Path(tempfile.gettempdir()) / "openrlhf-visualprm-bench"
        prm = VisualPRM.from_pretrained(str(make_tiny_models(tmp)["visualprm-tiny"]), batch_size=8)
        device = "cpu"
    else:
        if not torch.cuda.is_available():
            raise SystemExit("no GPU: run with --tiny for the CPU smoke mode")
        device = "cuda"
        prm = build_real_architecture(device)
    image = image_for_tiles(args.tiles)
    question = "Find the measure of angle x in the figure. Give the answer in degrees."
    group = make_group(args.group, args.steps, args.words_per_step, seed=0)
    lm = prm.model.model.language_model
    # Matmul parameters only: the embedding table is a lookup, not FLOPs.
    llm_params = sum(p.numel() for p in lm.parameters()) - lm.get_input_embeddings().weight.numel()
    results, ref = [], None
    methods = args.methods.split(",")
    # stderr: a bar with total and ETA (a real-size run takes minutes), the table stays on stdout
    bar = tqdm(total=len(methods) * (1 + args.repeats), desc="prm benchmark passes", unit="pass")
    for method in methods:
        bar.set_postfix_str(method)
        prm.score([image], question, group[:1], method=method)  # warm-up
        bar.update(1)
        if device == "cuda":
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
        times = []
        for _ in range(args.repeats):
            t0 = time.perf_counter()
            out = prm.score([image], question, group, method=method)
            if device == "cuda":
                torch.cuda.synchronize()
            times.append(time.perf_counter() - t0)
            bar.update(1)
        best = min(times)
        tokens = llm_tokens(prm, image, question, group, method)
        scores = [s for r in out for s in r.step_scores]
        if ref is None:
            ref = scores
        diff = max(abs(a - b) for a, b in zip(ref, scores))
        row = {
            "method": method,
            "responses_per_s": args.group / best,
            "seconds_per_group": best,
            "llm_tokens": tokens,
            "llm_tflops": 2 * llm_params * tokens / best / 1e12,
            "peak_mem_gib": torch.cuda.max_memory_allocated() / 2**30 if device == "cuda" else None,
            "max_diff_vs_first": diff,
        }
        results.append(row)
        print(json.dumps(row), flush=True)
    bar.close()
    base = {r["method"]: r for r in results}
    print(
        f"\n{'method':10s} {'resp/s':>8s} {'x single':>8s} {'LLM tokens':>11s} {'TFLOP/s':>8s} "
        f"{'peak GiB':>8s} {'max diff':>9s}"
    )
    for r in results:
        rel = r["responses_per_s"] / base["single"]["responses_per_s"] if "single" in base else float("nan")
        mem = f"{r['peak_mem_gib']:.1f}" if r["peak_mem_gib"] is not None else "-"
        print(
            f"{r['method']:10s} {r['responses_per_s']:8.2f} {rel:8.2f} {r['llm_tokens']:11d} "
            f"{r['llm_tflops']:8.3f} {mem:>8s} {r['max_diff_vs_first']:9.2e}"
        )
    print(
        f"\ndevice={device} group={args.group} steps~{args.steps} tiles={args.tiles}"
        + ("  (tiny random model on CPU: compare ratios only)" if args.tiny else "")
    )
    if args.json:
        args.json.write_text(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
