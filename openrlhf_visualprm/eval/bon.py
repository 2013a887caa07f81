"""``eval-bon``: best-of-N accuracy of answer selectors over records with n sampled responses.

For every question, the final answer of each response is extracted and checked against the
ground truth with the project's math answer checker; then, for each N = 1, 2, 4, ... n (the
first N responses), the report gives the accuracy of:

- ``random pick (pass@1)``: the expected accuracy of picking one of the N at random;
- ``first response``; ``oracle (pass@N)``: some response among the N is right (upper bound);
- ``majority vote``: the most frequent extracted answer (ties: the answer seen first);
- ``PRM (<aggregation>)``: the response with the highest aggregated PRM score, one curve per
  aggregation (mean, min, last, product, softmin); ties go to the earlier response;
- ``judge (knockout)``: the judge's own single-elimination bracket over the N
  (:func:`~openrlhf_visualprm.judge.schedule.run_bracket`: N - 1 calls, random seeding and label
  order seeded per question and N, a failed verdict decided by the seeded coin and counted);
  verdicts are cached per ordered pair, so brackets for different N reuse calls.

Accuracy is over evaluated questions; skipped ones (missing image, scorer error) and bad lines
are counted in the report, never hidden.
"""

from __future__ import annotations

import argparse
import math
import random
from collections.abc import Callable
from pathlib import Path

from openrlhf_visualprm.data.benchmarks import BonItem, read_bon
from openrlhf_visualprm.eval.judge_adapter import PairJudge
from openrlhf_visualprm.eval.loop import add_run_arguments, finish_run, run_items
from openrlhf_visualprm.eval.metrics import argmax_first, majority_vote, n_values
from openrlhf_visualprm.eval.plots import plot_bon
from openrlhf_visualprm.eval.prm_bench import StepScorer
from openrlhf_visualprm.eval.results import (
    ResultsLog,
    field_of,
    is_finite,
    is_int,
    is_str,
    list_of,
    optional,
    write_json,
)
from openrlhf_visualprm.images import ImageRoots
from openrlhf_visualprm.judge.config import DEFAULT_MAX_NEW_TOKENS
from openrlhf_visualprm.judge.schedule import Matchup, run_bracket
from openrlhf_visualprm.prm.aggregate import AGGREGATIONS
from openrlhf_visualprm.prm.config import METHODS
from openrlhf_visualprm.prm.load_options import add_load_arguments, load_prm

Extract = Callable[[str], "str | None"]
Verify = Callable[[list[str], list[str]], list[bool]]


def _default_checker() -> tuple[Extract, Verify]:
    try:
        from openrlhf_visualprm.answers import extract_final_answer, verify_answers
    except ImportError as exc:
        raise RuntimeError(
            "eval-bon needs openrlhf_visualprm.answers (extract_final_answer / verify_answers), "
            f"which could not be imported: {exc}"
        ) from exc
    return extract_final_answer, verify_answers


def _finite_or_none(x: float) -> float | None:
    return x if x is not None and math.isfinite(x) else None


def check_bon_record(record: dict) -> None:
    """A reused results line must hold what the curves read ("correct": "yes" counted as right)."""
    n = field_of(record, "n", lambda v: is_int(v) and v >= 1, "a positive integer")
    field_of(record, "answers", list_of(optional(is_str), n), f"{n} strings or nulls")
    field_of(record, "correct", list_of(lambda v: isinstance(v, bool), n), f"{n} booleans")
    if "prm" in record:
        prm = field_of(record, "prm", lambda v: isinstance(v, dict), "an object")
        for how in AGGREGATIONS:
            field_of(prm, how, list_of(optional(is_finite), n), f"{n} finite numbers or nulls")
    if "judge" in record:
        judge = field_of(record, "judge", lambda v: isinstance(v, dict), "an object")
        winners = field_of(judge, "winners", lambda v: isinstance(v, dict), "an object")
        for k in range(1, n + 1):
            field_of(winners, str(k), lambda v, k=k: is_int(v) and 0 <= v < k, f"an index below {k}")
        for key in ("calls", "parse_failures"):
            field_of(judge, key, lambda v: is_int(v) and v >= 0, "a count")


def evaluate_bon(
    data: str | Path,
    out_dir: str | Path,
    roots: ImageRoots,
    fingerprint: dict,
    prm_scorer: StepScorer | None = None,
    pair_judge: PairJudge | None = None,
    extract: Extract | None = None,
    verify: Verify | None = None,
    max_n: int | None = None,
    on_error: str = "skip",
    limit: int | None = None,
    fresh: bool = False,
    progress: bool = True,
) -> dict:
    """Score, write ``results.jsonl``, ``report.json`` and ``accuracy_vs_n.png`` in ``out_dir``."""
    from openrlhf_visualprm.prm.aggregate import aggregate
    from openrlhf_visualprm.steps import split_steps

    if extract is None or verify is None:
        extract, verify = _default_checker()
    out = Path(out_dir)

    def score(item: BonItem, images: list) -> dict:
        responses = item.responses[:max_n] if max_n else item.responses
        answers = [extract(r) for r in responses]
        preds = [a if a is not None else "" for a in answers]
        if item.choices:  # multiple choice: the option's letter and its text both verify
            checked = verify(preds, [item.answer] * len(answers), choices=[item.choices] * len(answers))
        else:
            checked = verify(preds, [item.answer] * len(answers))
        correct = [bool(c) and a is not None for c, a in zip(checked, answers, strict=True)]
        record: dict = {"n": len(responses), "answers": answers, "correct": correct}
        if prm_scorer is not None:
            steps = (
                item.steps[: len(responses)]
                if item.steps
                else [[s.text for s in split_steps(r)] for r in responses]
            )
            step_scores = prm_scorer(images, item.question, steps)
            record["prm"] = {
                how: [_finite_or_none(aggregate(s, how)) if s else None for s in step_scores]
                for how in AGGREGATIONS
            }
        if pair_judge is not None:
            cache: dict[tuple[int, int], int | None] = {}

            def judge_pair(i: int, j: int) -> int | None:
                if (i, j) not in cache:
                    cache[(i, j)] = pair_judge(images, item.question, responses[i], responses[j])
                return cache[(i, j)]

            def judge_match(m: Matchup) -> int | None:
                pick = judge_pair(*m.order)
                return None if pick is None else m.order[pick]

            winners = {}
            for n in range(1, len(responses) + 1):  # every N: questions may differ in n
                # The judge's own bracket and tie rule, seeded per item and N: reproducible on resume.
                rng = random.Random(f"bon:{item.id}:{n}")
                winners[str(n)], _, _ = run_bracket(n, judge_match, rng)
            failures = sum(v is None for v in cache.values())
            record["judge"] = {"winners": winners, "calls": len(cache), "parse_failures": failures}
        return record

    with ResultsLog(out / "results.jsonl", fingerprint, fresh=fresh, check=check_bon_record) as log:
        loop = run_items(data, read_bon, score, log, roots, on_error, limit, "eval-bon", progress)
        done = [
            log.done[i] for i in dict.fromkeys(loop.selected_ids) if not log.done.get(i, {}).get("skipped")
        ]

    n_common = min((r["n"] for r in done), default=0)
    curves: dict[str, list[tuple[int, float]]] = {}

    def add(name: str, n: int, hits: list[bool]) -> None:
        curves.setdefault(name, []).append((n, sum(hits) / len(hits)))

    for n in n_values(n_common) if n_common else []:
        curves.setdefault("random pick (pass@1)", []).append(
            (n, sum(sum(r["correct"][:n]) / n for r in done) / len(done))
        )
        add("first response", n, [r["correct"][0] for r in done])
        add("oracle (pass@N)", n, [any(r["correct"][:n]) for r in done])
        votes = [majority_vote(r["answers"][:n]) for r in done]
        add("majority vote", n, [v is not None and r["correct"][v] for v, r in zip(votes, done, strict=True)])
        if all("prm" in r for r in done):
            for how in AGGREGATIONS:
                picks = [
                    argmax_first([math.nan if s is None else s for s in r["prm"][how][:n]]) for r in done
                ]
                add(f"PRM ({how})", n, [r["correct"][p] for p, r in zip(picks, done, strict=True)])
        if all("judge" in r for r in done):
            add("judge (knockout)", n, [r["correct"][r["judge"]["winners"][str(n)]] for r in done])

    judge_calls = sum(r.get("judge", {}).get("calls", 0) for r in done)
    judge_failures = sum(r.get("judge", {}).get("parse_failures", 0) for r in done)
    report = {
        "benchmark": "best-of-N",
        **fingerprint,
        "n_values": n_values(n_common) if n_common else [],
        "n_per_question": sorted({r["n"] for r in done}),
        "accuracy": {name: {str(n): acc for n, acc in pts} for name, pts in curves.items()},
        "questions_evaluated": len(done),
        "answers_not_extracted": sum(a is None for r in done for a in r["answers"]),
        "judge_calls": judge_calls,
        "judge_parse_failures": judge_failures,
        "judge_stats_this_run": getattr(pair_judge, "stats", None),
        "counts": loop.counts(),
        "bad_lines": loop.errors.summary(),
        "skipped": loop.skipped,
        "notes": "accuracy over evaluated questions; N uses the first N responses; when questions have "
        "different n, N goes up to the smallest",
    }
    write_json(out / "report.json", report)
    if curves:
        plot_bon(curves, out / "accuracy_vs_n.png", f"Best-of-N: {fingerprint.get('data_name', '')}")
    return report


def format_table(report: dict) -> str:
    ns = [str(n) for n in report["n_values"]]
    width = max([len(k) for k in report["accuracy"]] + [10])
    lines = [f"{'selector':<{width}}  " + "  ".join(f"N={n:>3}" for n in ns)]
    for name, row in report["accuracy"].items():
        lines.append(f"{name:<{width}}  " + "  ".join(f"{row[n] * 100:5.1f}" for n in ns))
    c = report["counts"]
    lines.append(
        f"questions: {report['questions_evaluated']} evaluated, {c['skipped_items']} skipped, "
        f"{c['bad_lines']} bad lines; answers not extracted: {report['answers_not_extracted']}; "
        f"judge calls {report['judge_calls']} ({report['judge_parse_failures']} parse failures)"
    )
    return "\n".join(lines)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--data",
        required=True,
        help="jsonl with {id, image|images, question, answer, responses: [...]} per line "
        "(the demo set's candidates: [{response, steps}] works too)",
    )
    parser.add_argument(
        "--image-root",
        action="append",
        required=True,
        help="folder image paths are relative to (paths outside are refused); repeatable",
    )
    parser.add_argument("--prm", default=None, help="VisualPRM checkpoint (path or alias) for PRM selection")
    parser.add_argument(
        "--judge", default=None, help="judge checkpoint (path or alias) for knockout selection"
    )
    parser.add_argument("--judge-backend", default="hf", help="judge backend (default hf)")
    parser.add_argument(
        "--judge-max-new-tokens",
        type=int,
        default=DEFAULT_MAX_NEW_TOKENS,
        help="cap on judge reasoning tokens",
    )
    parser.add_argument("--method", default="shared", choices=METHODS, help="PRM method")
    parser.add_argument(
        "--max-n", type=int, default=None, help="use at most the first N responses per question"
    )
    add_load_arguments(parser)  # the PRM's (the judge's device is --device too)
    add_run_arguments(parser, default_out="eval-bon-output", outputs="results.jsonl, report.json, the plot")
    parser.add_argument(
        "--judge-fallback",
        default="none",
        choices=["none", "reask"],
        help="unparsable verdict: the first-shown candidate advances (default) or a constrained re-ask picks",
    )


def run(args: argparse.Namespace) -> int:
    fingerprint: dict = {
        "data": str(Path(args.data).resolve()),
        "data_name": Path(args.data).name,
        "max_n": args.max_n,
        "prm": None,
        "judge": None,
    }
    prm_scorer = pair_judge = None
    if args.prm:
        from openrlhf_visualprm.eval.prm_bench import prm_step_scorer

        prm = load_prm(args.prm, args)
        prm_scorer = prm_step_scorer(prm, args.method)
        fingerprint.update(
            prm=prm.model_id,
            method=args.method,
            max_tiles=args.max_tiles,
            system_message=prm.system_info.fingerprint(),
        )
    if args.judge:
        from openrlhf_visualprm.eval.judge_adapter import load_pair_judge
        from openrlhf_visualprm.torch_names import cli_device

        pair_judge, judge_id = load_pair_judge(
            args.judge,
            backend=args.judge_backend,
            device=cli_device(args.device),
            max_new_tokens=args.judge_max_new_tokens,
            fallback=args.judge_fallback,
        )
        fingerprint.update(
            judge=judge_id, judge_max_new_tokens=args.judge_max_new_tokens, judge_fallback=args.judge_fallback
        )
    report = evaluate_bon(
        args.data,
        args.out,
        ImageRoots.of(args.image_root),
        fingerprint,
        prm_scorer,
        pair_judge,
        max_n=args.max_n,
        on_error=args.on_error,
        limit=args.limit,
        fresh=args.fresh,
        progress=not args.no_progress,
    )
    return finish_run(report, args.data, args.out, format_table(report), "accuracy_vs_n.png")
