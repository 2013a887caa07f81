"""``make demo``: score the generated mini multimodal-math set and write a report.

Builds the tiny random checkpoints and the demo data when they are missing, scores every
candidate group with VisualPRM on the shared-prefix path (and, when available and asked for,
with the MR. Judge), prints a per-step table and writes ``demo-output/report.html`` (images
inline, step scores coloured). With the default tiny checkpoint the weights are random and the
scores mean nothing: the demo shows the machinery. Pass ``--model PATH`` for a real VisualPRM.
"""

from __future__ import annotations

import argparse
import base64
import html
import json
import time
from pathlib import Path

from openrlhf_visualprm.config_fields import add_flags
from openrlhf_visualprm.prm.config import PRMConfig
from openrlhf_visualprm.torch_names import add_device_arguments

RANDOM_JUDGE_NOTE = (
    "Judge rewards of 0.500: the tiny judge has random weights, so its outputs almost never parse to a "
    "verdict; a failed parse counts as a tie (the neutral 0.5, never a win), so every response gets the "
    "chance reward. A real judge (--judge PATH, e.g. Qwen2.5-VL-7B-Instruct) gives spread-out rewards."
)
RANDOM_WEIGHTS_BANNER = (
    "NOTE: scores below come from a tiny model with RANDOM weights; they show the pipeline, not quality.\n"
    '      Run `make demo DEMO_ARGS="--model /path/to/VisualPRM-8B-v1_1"` for real scores.'
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.description = __doc__
    parser.add_argument(
        "--model", default=None, help="VisualPRM checkpoint or alias (default: the tiny random one)"
    )
    parser.add_argument("--data", default=None, help="demo.jsonl (default: generate the mini set)")
    parser.add_argument("--out", default="demo-output", help="output folder (default demo-output/)")
    add_flags(parser, PRMConfig, only=["method", "aggregation"])
    add_device_arguments(parser)
    parser.add_argument(
        "--judge",
        default=None,
        help="judge checkpoint or alias for MR. Judge rewards beside the PRM's (default: the tiny one)",
    )
    parser.add_argument("--no-judge", action="store_true", help="skip the judge")
    parser.add_argument(
        "--judge-max-new-tokens",
        type=int,
        default=16,
        help="judge reasoning budget (default 16: the tiny judge is random)",
    )


def _colour(p: float) -> str:
    """Red (0) -> yellow (0.5) -> green (1)."""
    p = min(max(p, 0.0), 1.0)
    r = int(255 * min(1.0, 2 * (1 - p)))
    g = int(200 * min(1.0, 2 * p))
    return f"rgb({r},{g},60)"


def _report_html(rows: list[dict], data_dir: Path, banner: str | None, judge_note: str | None = None) -> str:
    parts = [
        "<!doctype html><meta charset='utf-8'><title>openrlhf-visualprm demo</title>",
        "<style>body{font-family:sans-serif;max-width:1100px;margin:auto}td{vertical-align:top;padding:4px}"
        ".step{padding:3px 6px;margin:2px 0;border-radius:4px;color:#000}.ok{color:#070}.bad{color:#a00}</style>",
        "<h1>VisualPRM demo report</h1>",
    ]
    if banner:
        parts.append(f"<p style='background:#fee;padding:8px'><b>{html.escape(banner)}</b></p>")
    if judge_note:
        parts.append(f"<p style='background:#ffd;padding:8px'>{html.escape(judge_note)}</p>")
    for row in rows:
        img_b64 = base64.b64encode((data_dir / row["image"]).read_bytes()).decode()
        parts.append(
            f"<h2>{html.escape(row['id'])}</h2><table><tr><td><img width=320 "
            f"src='data:image/png;base64,{img_b64}'></td><td><p>{html.escape(row['question'])}</p>"
            f"<p>ground truth: <b>{html.escape(row['answer'])}</b></p></td></tr></table>"
        )
        for c in row["candidates"]:
            verdict = (
                "<span class=ok>correct</span>"
                if c["correct"]
                else (f"<span class=bad>planted error at step {c['wrong_step']}</span>")
            )
            judge = f", judge reward {c['judge_reward']:.3f}" if c.get("judge_reward") is not None else ""
            parts.append(f"<h3>candidate {c['index']}: PRM score {c['score']:.3f}{judge} ({verdict})</h3>")
            for k, (text, s) in enumerate(zip(c["steps"], c["step_scores"])):
                parts.append(
                    f"<div class=step style='background:{_colour(s)}'><b>{s:.3f}</b> "
                    f"[{k}] {html.escape(text)}</div>"
                )
    return "\n".join(parts)


def _judge_rewards(
    args, items: list[dict], data_dir: Path, tiny_dir: Path
) -> tuple[list[list[float]] | None, str]:
    """Judge rewards per item, or None with the reason (the judge is optional in the demo)."""
    if args.no_judge:
        return None, "judge skipped (--no-judge)"
    try:
        from openrlhf_visualprm.judge import MRJudge
    except ImportError as exc:
        return None, f"judge unavailable ({exc})"
    judge_path = args.judge or str(tiny_dir / "judge-tiny")
    from openrlhf_visualprm.judge.judge import JudgeGroup

    judge = MRJudge.from_pretrained(
        judge_path,
        backend="hf",
        device=args.resolved_device,
        max_new_tokens=args.judge_max_new_tokens,
        backend_kwargs={"progress": True},
        image_roots=[data_dir],
    )
    # One batched call for every group: the judge batches generation across groups.
    groups = [
        JudgeGroup([item["image"]], item["question"], [c["response"] for c in item["candidates"]], None)
        for item in items
    ]
    results = judge.judge_groups(groups)
    failures = sum(r.stats.get("parse_failures", 0) for r in results)
    calls = sum(len(r.calls) for r in results)
    out = [[float(x) for x in r.rewards] for r in results]
    return out, f"judge {judge_path}: {calls} calls, {failures} unparseable (scored neutral)"


def run(args: argparse.Namespace) -> int:
    from openrlhf_visualprm.data.demo_data import load_demo_data, make_demo_data
    from openrlhf_visualprm.errors import ConfigError
    from openrlhf_visualprm.images import ImageRoots
    from openrlhf_visualprm.prm.scorer import VisualPRM
    from openrlhf_visualprm.tiny_models import make_tiny_models
    from openrlhf_visualprm.torch_names import auto_dtype, cli_device, describe_device

    if args.data is not None and not Path(args.data).exists():
        raise ConfigError(f"--data {args.data}: no such file or folder (a demo.jsonl from make-demo-data)")
    args.resolved_device = cli_device(args.device)
    print(f"[demo] {describe_device(args.device, args.resolved_device)}")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    tiny_dir = out / "tiny-models"
    banner = None
    if args.model is None:
        print(f"[demo] building tiny random checkpoints in {tiny_dir} (once)")
        model = str(make_tiny_models(tiny_dir)["visualprm-tiny"])
        banner = RANDOM_WEIGHTS_BANNER
    else:
        model = args.model
    if args.data is None:
        data_path = make_demo_data(out / "data")
    else:
        data_path = Path(args.data)
    data_dir = data_path.parent if data_path.is_file() else data_path
    items = load_demo_data(data_path)
    print(f"[demo] {len(items)} questions from {data_path}; model {model}; method {args.method}")
    prm = VisualPRM.from_pretrained(
        model,
        device=args.resolved_device,
        dtype=auto_dtype(args.dtype, args.resolved_device),
        image_roots=ImageRoots.of(data_dir),
    )
    if banner:
        print(banner)
    from tqdm.auto import tqdm

    rows, start, n_resp = [], time.perf_counter(), 0
    for item in tqdm(items, desc="[demo] PRM scoring", unit="question"):
        results = prm.score(
            [item["image"]],
            item["question"],
            [c["response"] for c in item["candidates"]],
            method=args.method,
            aggregation=args.aggregation,
        )
        n_resp += len(results)
        cands = []
        for i, (c, r) in enumerate(zip(item["candidates"], results)):
            cands.append(
                {
                    "index": i,
                    "correct": c["correct"],
                    "wrong_step": c["wrong_step"],
                    "steps": r.steps,
                    "step_scores": r.step_scores,
                    "score": r.score,
                    "note": r.note,
                    "response": c["response"],
                }
            )
        rows.append({**{k: item[k] for k in ("id", "image", "question", "answer")}, "candidates": cands})
    elapsed = time.perf_counter() - start
    judge_rewards, judge_note = _judge_rewards(args, rows, data_dir, tiny_dir)
    print(f"[demo] {judge_note}")
    for row_i, row in enumerate(rows):
        print(f"\n== {row['id']}: {row['question']}  (ground truth {row['answer']})")
        for c in row["candidates"]:
            c["judge_reward"] = judge_rewards[row_i][c["index"]] if judge_rewards else None
            tag = "correct" if c["correct"] else f"error@step{c['wrong_step']}"
            judge = f"  judge {c['judge_reward']:.3f}" if c["judge_reward"] is not None else ""
            print(f"  candidate {c['index']} [{tag}]  PRM {args.aggregation} {c['score']:.3f}{judge}")
            for k, (text, s) in enumerate(zip(c["steps"], c["step_scores"])):
                short = text.replace("\n", " ")
                print(f"      step {k}: {s:.3f}  {short[:72]}")
    (out / "scores.json").write_text(json.dumps(rows, indent=1, ensure_ascii=False))
    judge_random = (
        judge_rewards is not None
        and args.judge is None
        and all(abs(r - 0.5) < 1e-9 for group in judge_rewards for r in group)
    )
    judge_html = RANDOM_JUDGE_NOTE if judge_random else None
    if judge_random:
        print(f"[demo] {RANDOM_JUDGE_NOTE}")
    (out / "report.html").write_text(_report_html(rows, data_dir, banner, judge_html), encoding="utf-8")
    print(
        f"\n[demo] scored {n_resp} responses in {elapsed:.2f} s ({n_resp / elapsed:.1f} responses/s, {args.method} path)"
    )
    print(f"[demo] wrote {out / 'report.html'} and {out / 'scores.json'}")
    if banner:
        print(banner)
    return 0
