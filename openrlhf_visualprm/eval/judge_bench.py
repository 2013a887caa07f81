"""``eval-judge``: a judge on VL-RewardBench, every pair judged in both candidate orders.

The official script shows each pair in one pseudo-random order; a judge with a position bias
then scores by luck. We judge both orders and report accuracy for each, their mean, the
"both right" rate, position-bias statistics (first-position pick rate, swap-flip rate) and the
parse-failure rate. A parse failure counts as wrong (never as a coin flip). Overall accuracy is
correct / all pairs; macro accuracy is the mean over exactly the three groups of the official
evaluation (general, hallucination, reasoning; a pair's group comes from the folder of its
``image_path``, see :mod:`openrlhf_visualprm.data.benchmarks`). ``by_source`` breaks the same
numbers down by the six source datasets when they are known.

The judge is anything with the :data:`PairJudge` shape: ``(images, query, first, second) ->
0 | 1 | None`` (the index *as shown*, ``None`` when its output could not be parsed).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from openrlhf_visualprm.data.benchmarks import VLRB_CATEGORIES, RewardBenchPair, read_vlrewardbench
from openrlhf_visualprm.eval.judge_adapter import PairJudge
from openrlhf_visualprm.eval.loop import add_run_arguments, finish_run, run_items
from openrlhf_visualprm.eval.metrics import accuracy_report, order_stats
from openrlhf_visualprm.eval.plots import plot_judge_accuracy
from openrlhf_visualprm.eval.results import ResultsLog, field_of, is_int, list_of, write_json
from openrlhf_visualprm.images import ImageRoots
from openrlhf_visualprm.judge.config import DEFAULT_MAX_NEW_TOKENS


def _check_pick(pick) -> int | None:
    if pick is None:
        return None
    if pick not in (0, 1) or isinstance(pick, bool):
        raise ValueError(f"judge returned {pick!r}; a pair judge must return 0, 1 or None")
    return int(pick)


def check_vlrb_record(record: dict) -> None:
    """A reused results line must hold what the accuracy reads."""
    field_of(record, "category", lambda v: v in VLRB_CATEGORIES, f"one of {', '.join(VLRB_CATEGORIES)}")
    field_of(record, "preferred", lambda v: is_int(v) and v in (0, 1), "0 or 1")
    field_of(
        record, "picks", list_of(lambda v: v is None or (is_int(v) and v in (0, 1)), 2), "two of 0, 1, null"
    )


def evaluate_vlrewardbench(
    data: str | Path,
    judge: PairJudge,
    out_dir: str | Path,
    roots: ImageRoots,
    fingerprint: dict,
    on_error: str = "skip",
    limit: int | None = None,
    fresh: bool = False,
    progress: bool = True,
) -> dict:
    """Judge every pair twice; write ``results.jsonl``, ``report.json`` and ``accuracy.png``."""
    out = Path(out_dir)

    def score(pair: RewardBenchPair, images: list) -> dict:
        a, b = pair.responses
        pick_original = _check_pick(judge(images, pair.query, a, b))
        pick_swapped = _check_pick(judge(images, pair.query, b, a))
        return {
            "category": pair.category,
            "source": pair.source,
            "preferred": pair.preferred,
            "picks": [pick_original, pick_swapped],
        }

    with ResultsLog(out / "results.jsonl", fingerprint, fresh=fresh, check=check_vlrb_record) as log:
        loop = run_items(
            data,
            read_vlrewardbench,
            score,
            log,
            roots,
            on_error,
            limit,
            "eval-judge",
            progress,
            describe=lambda pair: {"category": pair.category, "source": pair.source},
        )
        records = [log.done[i] for i in dict.fromkeys(loop.selected_ids)]

    # Skipped pairs (missing image, judge error) stay in their category's denominator as unjudged
    # (= wrong); lines that never parsed are bad lines, counted and listed separately.
    cats, sources, orig, swap, both, verdicts = [], [], [], [], [], []
    for r in records:
        sources.append(r.get("source") or "unknown")
        if r.get("skipped"):
            cats.append(r["category"])
            orig.append(None)
            swap.append(None)
            both.append(None)
            continue
        p0, p1 = r["picks"]
        o = None if p0 is None else p0 == r["preferred"]
        s = None if p1 is None else (1 - p1) == r["preferred"]  # swapped: shown index 0 is response 1
        cats.append(r["category"])
        orig.append(o)
        swap.append(s)
        both.append(None if o is None or s is None else (o and s))
        verdicts.append((p0, p1))
    r_orig = accuracy_report(orig, cats, VLRB_CATEGORIES)
    r_swap = accuracy_report(swap, cats, VLRB_CATEGORIES)
    report = {
        "benchmark": "VL-RewardBench",
        **fingerprint,
        "original_order": r_orig,
        "swapped_order": r_swap,
        "mean_of_orders": {
            "accuracy": (r_orig["overall"]["accuracy"] + r_swap["overall"]["accuracy"]) / 2
            if records
            else None,
            "macro_accuracy": (r_orig["macro_accuracy"] + r_swap["macro_accuracy"]) / 2 if records else None,
        },
        "both_orders_right": accuracy_report(both, cats, VLRB_CATEGORIES),
        "by_source": {
            "original_order": accuracy_report(orig, sources)["by_category"],
            "swapped_order": accuracy_report(swap, sources)["by_category"],
        },
        "order_stats": order_stats(verdicts),
        "counts": loop.counts(),
        "bad_lines": loop.errors.summary(),
        "skipped": loop.skipped,
        "judge_stats_this_run": getattr(judge, "stats", None),
        "notes": "parse failures and skipped pairs count as wrong in `accuracy`; `accuracy_valid` excludes them. "
        "With --fallback reask, unparsable outputs were re-asked (constrained label) and are not parse failures "
        "in `order_stats`; judge_stats_this_run counts them",
    }
    write_json(out / "report.json", report)
    if records:
        plot_judge_accuracy(report, out / "accuracy.png", f"VL-RewardBench: {fingerprint.get('judge')}")
    return report


def format_report(report: dict) -> str:
    lines = ["VL-RewardBench (parse failures count as wrong)"]
    for key in ("original_order", "swapped_order", "both_orders_right"):
        r = report[key]
        cats = "  ".join(f"{c} {v['accuracy'] * 100:.1f}" for c, v in r["by_category"].items())
        lines.append(
            f"  {key:<18} overall {r['overall']['accuracy'] * 100:5.1f}  macro {r['macro_accuracy'] * 100:5.1f}"
            f"   [{cats}]"
        )
    s = report["order_stats"]
    lines.append(
        f"  calls {s['calls']}, parse failures {s['parse_failures']} ({s['parse_failure_rate']:.3f}), "
        f"first-position picks {s['first_position_rate']:.3f}, swap flips {s['swap_flip_rate']:.3f}"
    )
    c = report["counts"]
    lines.append(
        f"  pairs: {c['valid_items']} valid ({c['skipped_items']} skipped), {c['bad_lines']} bad lines, "
        f"{c['reused_from_previous_run']} reused from a previous run"
    )
    return "\n".join(lines)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--judge", required=True, help="judge checkpoint: local path or alias (e.g. mr-judge)"
    )
    parser.add_argument("--backend", default="hf", help="judge backend (default hf)")
    parser.add_argument(
        "--data", required=True, help="VL-RewardBench file (jsonl / json / parquet / save_to_disk)"
    )
    parser.add_argument(
        "--image-root",
        action="append",
        default=None,
        help="folder image paths are relative to (paths outside are refused); repeatable. "
        "Not needed when images are embedded (parquet / datasets)",
    )
    add_run_arguments(
        parser, default_out="eval-judge-output", outputs="results.jsonl, report.json, accuracy.png"
    )
    parser.add_argument(
        "--device",
        default="auto",
        help="torch device: auto (cuda when a GPU is visible, else cpu), cpu, cuda[:N]",
    )
    parser.add_argument(
        "--max-new-tokens",
        type=int,
        default=DEFAULT_MAX_NEW_TOKENS,
        help="cap on the judge's reasoning tokens",
    )
    parser.add_argument(
        "--fallback",
        default="none",
        choices=["none", "reask"],
        help="unparsable verdict: count it as a failure (default) or re-ask with a constrained label",
    )


def run(args: argparse.Namespace) -> int:
    from openrlhf_visualprm.eval.judge_adapter import load_pair_judge
    from openrlhf_visualprm.torch_names import cli_device, describe_device

    device = cli_device(args.device)
    print(describe_device(args.device, device), file=sys.stderr)
    judge, judge_id = load_pair_judge(
        args.judge,
        backend=args.backend,
        device=device,
        max_new_tokens=args.max_new_tokens,
        fallback=args.fallback,
    )
    fingerprint = {
        "judge": judge_id,
        "backend": args.backend,
        "data": str(Path(args.data).resolve()),
        "max_new_tokens": args.max_new_tokens,
        "fallback": args.fallback,
    }
    report = evaluate_vlrewardbench(
        args.data,
        judge,
        args.out,
        ImageRoots.of(args.image_root),
        fingerprint,
        on_error=args.on_error,
        limit=args.limit,
        fresh=args.fresh,
        progress=not args.no_progress,
    )
    return finish_run(report, args.data, args.out, format_report(report), "accuracy.png")
