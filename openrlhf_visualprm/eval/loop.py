"""The loop every evaluator shares: read, validate, skip done ids, load images, score, record.

Every line of the data file ends up in exactly one bucket, and the report lists them all:
``scored`` (this run or an earlier one of the same settings), ``bad_lines`` (malformed JSON or a
wrong schema: the line and reason), ``skipped`` (a valid record that could not be scored: a
missing or refused image, a scorer error; the id, line and reason). Nothing leaves the
denominator unreported. ``on_error="stop"`` raises on the first bad line or skipped item.
A run that evaluated nothing (every line bad or skipped) is an error once its report is written
(:func:`require_evaluated`): a NaN accuracy with exit status 0 looks like a result.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tqdm import tqdm

from openrlhf_visualprm.data.records import ON_ERROR_CHOICES, BadDataError, ErrorLog, count_rows, iter_rows
from openrlhf_visualprm.eval.results import ResultsLog
from openrlhf_visualprm.images import ImageError, ImageRoots, load_image


@dataclass
class LoopOutcome:
    selected_ids: list[str] = field(default_factory=list)
    lines_read: int = 0
    scored_now: int = 0
    resumed: int = 0
    skipped: list[dict] = field(default_factory=list)
    errors: ErrorLog | None = None
    redone: int = 0  # results lines of an earlier run not trusted on resume (ResultsLog.redo)

    def counts(self) -> dict:
        bad = len(self.errors) if self.errors is not None else 0
        return {
            "lines_read": self.lines_read,
            "bad_lines": bad,
            "valid_items": len(self.selected_ids),
            "scored_this_run": self.scored_now,
            "reused_from_previous_run": self.resumed,
            "previous_results_lines_not_trusted": self.redone,
            "skipped_items": len(self.skipped),
            "evaluated_items": len(self.selected_ids) - len(self.skipped),
        }


def load_images(refs: list, roots: ImageRoots) -> list:
    """PIL images for a record's references (paths confined to ``roots``, or embedded bytes)."""
    out = []
    for ref in refs:
        if isinstance(ref, dict):  # parquet / datasets export: {"bytes": ..., "path": ...}
            ref = ref.get("bytes") or ref.get("path") or ""
        out.append(load_image(ref, roots))
    return out


def run_items(
    data: str | os.PathLike,
    parse: Callable[[dict, int], Any],
    score: Callable[[Any, list], dict],
    log: ResultsLog,
    roots: ImageRoots,
    on_error: str = "skip",
    limit: int | None = None,
    desc: str = "scoring",
    progress: bool = True,
    split: str | None = None,
    describe: Callable[[Any], dict] | None = None,
) -> LoopOutcome:
    """Run ``score(item, images) -> record`` over the data; see the module docstring.

    ``describe(item)`` adds fields (e.g. the category) to the entry of a skipped item, so reports
    can keep it in the right group's denominator.
    """
    errors = ErrorLog(on_error)
    out = LoopOutcome(errors=errors, redone=len(log.redo))
    rows = iter_rows(data, split)
    total = count_rows(data, split) if progress else None  # a total gives the bar its ETA
    if limit is not None:
        total = limit if total is None else min(limit, total)
    bar = tqdm(desc=desc, total=total, unit="item", disable=not progress, dynamic_ncols=True)
    first_line: dict[str, int] = {}
    try:
        for row in rows:
            if limit is not None and out.lines_read >= limit:
                break
            out.lines_read += 1
            bar.update(1)
            if row.error is not None:
                errors.add(data, row.lineno, row.error)
                continue
            try:
                item = parse(row.record, row.lineno)
            except (KeyError, ValueError, TypeError) as exc:
                reason = exc.args[0] if isinstance(exc, KeyError) and exc.args else str(exc)
                errors.add(data, row.lineno, str(reason))
                continue
            if item.id in first_line:  # would otherwise be silently merged with the first one
                errors.add(
                    data, row.lineno, f"duplicate id {item.id!r} (first seen at line {first_line[item.id]})"
                )
                continue
            first_line[item.id] = row.lineno
            out.selected_ids.append(item.id)
            if item.id in log.done and not log.done[item.id].get("skipped"):
                out.resumed += 1
                continue
            try:
                images = load_images(item.images, roots)
            except ImageError as exc:
                _skip(
                    out, log, item, row.lineno, f"missing or refused image: {exc}", on_error, data, describe
                )
                continue
            try:
                record = score(item, images)
            except (ValueError, RuntimeError, ArithmeticError, TypeError) as exc:
                reason = f"scoring failed: {type(exc).__name__}: {exc}"
                _skip(out, log, item, row.lineno, reason, on_error, data, describe)
                continue
            record = {"id": item.id, "line": row.lineno, **record}
            log.append(record)
            out.scored_now += 1
        if bar.total is not None and bar.n != bar.total:
            bar.total = bar.n  # blank lines were counted as rows: end the bar at 100 %
            bar.refresh()
    finally:
        bar.close()
    return out


def _skip(
    out: LoopOutcome,
    log: ResultsLog,
    item: Any,
    lineno: int,
    reason: str,
    on_error: str,
    data,
    describe: Callable[[Any], dict] | None,
) -> None:
    item_id = item.id
    entry = {"id": item_id, "line": lineno, "skipped": reason, **(describe(item) if describe else {})}
    out.skipped.append(entry)
    log.append(entry)
    if on_error == "stop":
        raise BadDataError(f"{data}:{lineno}: item {item_id}: {reason}  (use --on-error skip to continue)")
    print(f"warning: skipped {data}:{lineno} (item {item_id}): {reason}", flush=True)


def add_run_arguments(parser: argparse.ArgumentParser, default_out: str, outputs: str) -> None:
    """Options every evaluator shares: output folder, limit, bad-data policy, resume, progress."""
    parser.add_argument("--out", default=default_out, help=f"folder for {outputs} (default {default_out})")
    parser.add_argument("--limit", type=int, default=None, help="only the first N lines of the data")
    parser.add_argument(
        "--on-error",
        default="skip",
        choices=ON_ERROR_CHOICES,
        help="bad line / missing image: skip and report (default) or stop",
    )
    parser.add_argument("--fresh", action="store_true", help="ignore an existing results.jsonl in --out")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


class NothingEvaluatedError(BadDataError):
    """An evaluator read its data but scored no item: there is no result to report."""


def require_evaluated(counts: dict, data, report_path, bad_lines: dict | None = None) -> None:
    """Raise :class:`NothingEvaluatedError` when ``counts`` (``LoopOutcome.counts()``) has no
    evaluated item; the message says how many lines were read, why they were refused (the most
    common reasons) and where the report with every line is."""
    if counts.get("evaluated_items", 0) > 0:
        return
    reasons = ""
    if bad_lines and bad_lines.get("lines"):
        first = bad_lines["lines"][0]
        reasons = f"; first bad line {first.get('line')}: {first.get('reason')}"
    raise NothingEvaluatedError(
        f"evaluated nothing in {data}: {counts.get('lines_read', 0)} line(s) read, "
        f"{counts.get('bad_lines', 0)} bad, {counts.get('skipped_items', 0)} skipped{reasons}. "
        f"Every line and its reason is in {report_path}; check that the file is in the released layout"
    )


def finish_run(report: dict, data, out_dir, text: str, plot_name: str) -> int:
    """The end every evaluator CLI shares: refuse an empty run, print the report and its files."""
    out = Path(out_dir)
    require_evaluated(report["counts"], data, out / "report.json", report["bad_lines"])
    print(text)
    print(f"report: {out / 'report.json'}  plot: {out / plot_name}")
    return 0
