"""``eval-prm``: a process reward model on VisualProcessBench, the way the VisualPRM paper scores it.

The gold steps are scored exactly as given (passed to the scorer as explicit step lists, never
re-split), neutral steps are excluded, a step counts as predicted correct when P('+') is above
the threshold (0.85 reproduces the paper's 62.0 for VisualPRM-8B), and the report gives per-class
F1 and macro F1 pooled over all steps ("overall"), per data source and per policy model, a
threshold sweep and its plot. Step scores are stored per item, so changing the threshold never
needs the model again: rerun with the same ``--out`` and a new ``--threshold``.
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable
from pathlib import Path

from openrlhf_visualprm.config_fields import add_flags
from openrlhf_visualprm.data.benchmarks import ProcessBenchItem, read_processbench
from openrlhf_visualprm.eval.loop import add_run_arguments, finish_run, run_items
from openrlhf_visualprm.eval.metrics import default_thresholds, grouped_step_f1, threshold_sweep
from openrlhf_visualprm.eval.plots import plot_f1_sweep
from openrlhf_visualprm.eval.results import (
    ResultsLog,
    field_of,
    is_finite,
    is_int,
    is_str,
    list_of,
    write_json,
)
from openrlhf_visualprm.images import ImageRoots
from openrlhf_visualprm.prm.config import PRMConfig
from openrlhf_visualprm.prm.load_options import add_load_arguments, load_prm

# (images, question, steps per response) -> step scores per response
StepScorer = Callable[[list, str, list[list[str]]], list[list[float]]]
PAPER_THRESHOLD = 0.85


def prm_step_scorer(prm, method: str = "shared") -> StepScorer:
    """Adapt a ``VisualPRM`` to the evaluator: explicit steps, one group per call."""

    def score(images: list, question: str, steps: list[list[str]]) -> list[list[float]]:
        return [list(r.step_scores) for r in prm.score(images, question, steps=steps, method=method)]

    return score


def check_processbench_record(record: dict) -> None:
    """A reused results line must hold what the metrics read (NaN would zero the F1 silently)."""
    labels = field_of(
        record, "labels", list_of(lambda v: is_int(v) and v in (-1, 0, 1)), "a list of 1, 0, -1"
    )
    scores = field_of(record, "step_scores", list_of(is_finite, len(labels)), f"{len(labels)} finite numbers")
    field_of(record, "data_source", is_str, "a string")
    del scores


def evaluate_processbench(
    data: str | Path,
    scorer: StepScorer,
    out_dir: str | Path,
    roots: ImageRoots,
    fingerprint: dict,
    threshold: float = PAPER_THRESHOLD,
    use_best_threshold: bool = False,
    on_error: str = "skip",
    limit: int | None = None,
    fresh: bool = False,
    progress: bool = True,
) -> dict:
    """Score, write ``results.jsonl`` / ``report.json`` / ``f1_vs_threshold.png`` in ``out_dir``."""
    out = Path(out_dir)

    def score(item: ProcessBenchItem, images: list) -> dict:
        scores = scorer(images, item.question, [item.steps])[0]
        if len(scores) != len(item.steps):
            raise ValueError(f"scorer returned {len(scores)} step scores for {len(item.steps)} gold steps")
        if any(s is None or math.isnan(s) for s in scores):
            raise ValueError("scorer returned a missing (NaN) step score")
        return {
            "data_source": item.data_source,
            "policy_model": item.policy_model,
            "labels": item.labels,
            "step_scores": [float(s) for s in scores],
        }

    with ResultsLog(out / "results.jsonl", fingerprint, fresh=fresh, check=check_processbench_record) as log:
        loop = run_items(
            data,
            read_processbench,
            score,
            log,
            roots,
            on_error,
            limit,
            "eval-prm",
            progress,
            describe=lambda it: {
                "data_source": it.data_source,
                "policy_model": it.policy_model,
                "steps_not_scored": sum(lab != 0 for lab in it.labels),
            },
        )
        done = [
            log.done[i] for i in dict.fromkeys(loop.selected_ids) if not log.done.get(i, {}).get("skipped")
        ]

    labels = [lab for r in done for lab in r["labels"]]
    scores = [s for r in done for s in r["step_scores"]]
    sweep = threshold_sweep(labels, scores, default_thresholds(0.05)) if done else []
    best = max(sweep, key=lambda r: r["macro_f1"]) if sweep else None
    chosen = best["threshold"] if (use_best_threshold and best) else threshold
    report = {
        "benchmark": "VisualProcessBench",
        **fingerprint,
        "threshold": chosen,
        "threshold_note": (
            "best macro F1 of the sweep, tuned on this data (optimistic)"
            if use_best_threshold
            else "fixed threshold (paper: 0.85)"
        ),
        **grouped_step_f1(done, chosen),
        "sweep": sweep,
        "best_threshold": best,
        "counts": {
            **loop.counts(),
            "non_neutral_steps_in_skipped_items": sum(r.get("steps_not_scored", 0) for r in loop.skipped),
        },
        "bad_lines": loop.errors.summary(),
        "skipped": loop.skipped,
    }
    write_json(out / "report.json", report)
    if sweep:
        plot_f1_sweep(
            sweep, chosen, out / "f1_vs_threshold.png", f"VisualProcessBench: {fingerprint.get('model')}"
        )
    return report


def format_report(report: dict) -> str:
    o = report["overall"]
    lines = [
        f"VisualProcessBench  threshold {report['threshold']:g} ({report['threshold_note']})",
        f"overall (pooled, {o['steps']} steps, {o['neutral_excluded']} neutral excluded): "
        f"macro F1 {o['macro_f1'] * 100:.1f}  (correct {o['correct']['f1'] * 100:.1f}, "
        f"incorrect {o['incorrect']['f1'] * 100:.1f})",
    ]
    for key in ("by_data_source", "by_policy_model"):
        for name, r in report.get(key, {}).items():
            lines.append(
                f"  {key[3:]:<13} {name:<32} macro F1 {r['macro_f1'] * 100:5.1f}  ({r['steps']} steps)"
            )
    if report.get("best_threshold"):
        b = report["best_threshold"]
        lines.append(f"sweep: best macro F1 {b['macro_f1'] * 100:.1f} at t={b['threshold']:g}")
    c = report["counts"]
    lines.append(
        f"items: {c['valid_items']} valid, {c['evaluated_items']} evaluated "
        f"({c['reused_from_previous_run']} reused from a previous run), {c['skipped_items']} skipped, "
        f"{c['bad_lines']} bad lines, of {c['lines_read']} lines read"
    )
    if c["skipped_items"]:
        lines.append(
            f"  NOTE: {c['non_neutral_steps_in_skipped_items']} labelled steps of skipped items are not in the F1"
        )
    return "\n".join(lines)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--model", required=True, help="VisualPRM checkpoint: local path or alias (visualprm, visualprm-v1)"
    )
    parser.add_argument("--data", required=True, help="VisualProcessBench test.jsonl (or .json / .parquet)")
    parser.add_argument(
        "--image-root",
        action="append",
        required=True,
        help="folder the record image paths are relative to; repeatable. Paths outside are refused",
    )
    add_run_arguments(parser, default_out="eval-prm-output", outputs="results.jsonl, report.json, the plot")
    group = parser.add_mutually_exclusive_group()
    group.add_argument(
        "--threshold",
        type=float,
        default=PAPER_THRESHOLD,
        help="a step is predicted correct when P('+') > threshold (default 0.85, the paper's)",
    )
    group.add_argument(
        "--sweep",
        action="store_true",
        help="report at the threshold with the best macro F1 (tuned on the test data; the sweep "
        "and plot are written in every mode)",
    )
    add_flags(parser, PRMConfig, only=["method"])
    add_load_arguments(parser)


def run(args: argparse.Namespace) -> int:
    prm = load_prm(args.model, args)
    fingerprint = {
        "model": prm.model_id,
        "system_message": prm.system_info.fingerprint(),
        "data": str(Path(args.data).resolve()),
        "method": args.method,
        "max_tiles": args.max_tiles,
        "dtype": str(args.dtype),
    }
    report = evaluate_processbench(
        args.data,
        prm_step_scorer(prm, args.method),
        args.out,
        ImageRoots.of(args.image_root),
        fingerprint,
        threshold=args.threshold,
        use_best_threshold=args.sweep,
        on_error=args.on_error,
        limit=args.limit,
        fresh=args.fresh,
        progress=not args.no_progress,
    )
    return finish_run(report, args.data, args.out, format_report(report), "f1_vs_threshold.png")
