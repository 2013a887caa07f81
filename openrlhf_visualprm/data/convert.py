"""``convert-data``: released dataset files -> what OpenRLHF and our tools read.

``convert-data math``           geometry3k / MathVista / MathVerse / MathVision / WeMath / DynaMath
                                records -> OpenRLHF prompt rows (jsonl or parquet).
``convert-data visualprm400k``  VisualPRM400K v1 conversations or v1.1-Raw -> stepwise or InternVL
                                conversation format, with statistics.

Bad lines (malformed JSON, wrong schema, missing image) are reported with file, line and reason;
``--on-error skip`` (default) goes on and ends with a summary (counts by reason, the first few
lines; every one in ``OUT.bad_lines.jsonl``), ``stop`` halts at the first. Converting nothing is
an error (exit 2) and writes no output file.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from openrlhf_visualprm.data.image_refs import ImageStore
from openrlhf_visualprm.data.math_prompts import DEFAULT_SUFFIX, READERS, convert_math
from openrlhf_visualprm.data.records import (
    ON_ERROR_CHOICES,
    BadDataError,
    ErrorLog,
    read_records,
    write_records,
)
from openrlhf_visualprm.data.visualprm400k import (
    UNESTIMATED_CHOICES,
    detect_version,
    format_statistics,
    read_v1,
    read_v11_raw,
    statistics_of,
    to_internvl,
    to_stepwise,
)
from openrlhf_visualprm.images import ImageError, ImageRoots


def convert_visualprm400k(
    inputs: list[str | Path],
    errors: ErrorLog,
    to: str = "stepwise",
    threshold: float = 0.0,
    unestimated: str = "drop",
    soft_labels: bool = False,
    roots: ImageRoots | None = None,
    limit: int | None = None,
) -> tuple[list[dict], dict]:
    """Rows in the ``to`` format and the statistics of what was kept."""
    if to not in ("stepwise", "internvl"):
        raise ValueError(f"--to must be stepwise or internvl, got {to!r}")
    kept, rows, dropped = [], [], 0
    for path in inputs:
        for row in read_records(path, errors):
            if limit is not None and len(kept) + dropped >= limit:
                break
            try:
                version = detect_version(row.record)
                rec = (
                    read_v1(row.record, row.lineno - 1)
                    if version == "v1"
                    else read_v11_raw(row.record, row.lineno - 1, threshold, unestimated)
                )
                if not rec.images:
                    raise KeyError("wrong schema: record has no image")
                if roots is not None:
                    for ref in rec.images:
                        roots.resolve(ref)
            except (KeyError, ValueError, TypeError) as exc:
                reason = exc.args[0] if isinstance(exc, KeyError) and exc.args else str(exc)
                if isinstance(exc, ImageError):
                    reason = f"missing or refused image: {exc}"
                errors.add(path, row.lineno, str(reason))
                continue
            if version == "v1.1-raw" and "id" not in row.record:
                rec.id = f"{Path(path).stem}:{row.lineno}"
            out = to_stepwise(rec, soft_labels) if to == "stepwise" else to_internvl(rec)
            if out is None or not rec.steps:
                dropped += 1  # every step unestimated: nothing trainable is left
                continue
            kept.append(rec)
            rows.append(out)
    return rows, statistics_of(kept, dropped)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="format", metavar="FORMAT", required=True)

    m = sub.add_parser(
        "math",
        help="multimodal math benchmark records -> OpenRLHF prompt rows",
        description="Write rows for --data.input_key prompt --data.image_key images "
        "--data.label_key label (label = JSON with answer, images, source, id).",
    )
    m.add_argument(
        "--input",
        action="append",
        required=True,
        help="jsonl / json / parquet / save_to_disk folder; repeatable",
    )
    m.add_argument(
        "--dataset",
        default="auto",
        choices=["auto", *sorted(READERS)],
        help="field layout of the input (default: guessed from the field names)",
    )
    m.add_argument(
        "--image-root",
        action="append",
        required=True,
        help="folder the records' image paths are relative to (paths outside are refused); repeatable",
    )
    m.add_argument(
        "--image-out",
        default=None,
        help="folder to write embedded image bytes to (default: images/ beside --out)",
    )
    m.add_argument("--out", required=True, help="output file (.jsonl or .parquet)")
    m.add_argument(
        "--source", default=None, help="datasource name written to each row (default: the dataset name)"
    )
    m.add_argument(
        "--suffix", default=DEFAULT_SUFFIX, help="instruction appended to every prompt ('' for none)"
    )
    m.add_argument("--split", default=None, help="split of a save_to_disk DatasetDict")

    v = sub.add_parser("visualprm400k", help="VisualPRM400K v1 / v1.1-Raw -> stepwise or InternVL format")
    v.add_argument(
        "--input", action="append", required=True, help="a <source>_prm.jsonl or v1.1-Raw file; repeatable"
    )
    v.add_argument(
        "--to",
        default="stepwise",
        choices=["stepwise", "internvl"],
        help="stepwise: {prompt, completions, labels, images} (TRL layout); internvl: conversations",
    )
    v.add_argument(
        "--threshold",
        type=float,
        default=0.0,
        help="v1.1-Raw: a step is '+' iff its MC value > threshold (default 0, the paper's)",
    )
    v.add_argument(
        "--unestimated",
        default="drop",
        choices=UNESTIMATED_CHOICES,
        help="v1.1-Raw steps with num_mc_total == 0: drop = cut the response before the first one; "
        "mask = keep with label null (stepwise only). Never labelled '-'",
    )
    v.add_argument("--soft-labels", action="store_true", help="also write soft_labels (the MC values)")
    v.add_argument(
        "--image-root",
        action="append",
        default=None,
        help="check that every image resolves inside this folder (missing ones are bad lines)",
    )
    v.add_argument("--out", required=True, help="output file (.jsonl or .parquet)")
    for p in (m, v):
        p.add_argument("--limit", type=int, default=None, help="stop after N records")
        p.add_argument(
            "--on-error",
            default="skip",
            choices=ON_ERROR_CHOICES,
            help="bad line: skip and report it (default) or stop",
        )


SUMMARY_LINES = 5  # bad lines shown in the summary; all of them go to OUT.bad_lines.jsonl


def _bad_lines_path(out: str | Path) -> Path:
    return Path(str(out) + ".bad_lines.jsonl")


def _print_errors(errors: ErrorLog, out: str | Path) -> None:
    """A summary: the count by reason, the first few lines, and the file holding every one."""
    path = _bad_lines_path(out)
    if not len(errors):
        path.unlink(missing_ok=True)  # a stale list from an earlier run would mislead
        return
    write_records(path, errors.entries)
    by_reason = sorted(errors.summary()["by_reason"].items(), key=lambda kv: -kv[1])
    print(f"{len(errors)} bad line(s): " + ", ".join(f"{reason} ({n})" for reason, n in by_reason))
    for e in errors.entries[:SUMMARY_LINES]:
        print(f"  {e['file']}:{e['line']}: {e['reason']}")
    if len(errors) > SUMMARY_LINES:
        print(f"  ... {len(errors) - SUMMARY_LINES} more")
    print(f"every bad line and its reason: {path}")


def _require_rows(rows: list, errors: ErrorLog, inputs: list[str]) -> None:
    """Converting nothing is an error (exit 2), not a run that wrote an empty file."""
    if rows:
        return
    first = f"; first: {errors.entries[0]['file']}:{errors.entries[0]['line']}: {errors.entries[0]['reason']}"
    raise BadDataError(
        f"converted nothing from {', '.join(map(str, inputs))}: {len(errors)} bad line(s)"
        + (first if len(errors) else " (no records)")
        + "; nothing was written. Check --image-root and the input layout (--dataset)"
    )


def run(args: argparse.Namespace) -> int:
    errors = ErrorLog(args.on_error, max_print=SUMMARY_LINES)
    try:
        if args.format == "math":
            image_out = Path(args.image_out) if args.image_out else Path(args.out).resolve().parent / "images"
            store = ImageStore(ImageRoots.of(args.image_root), image_out)
            rows = []
            for path in args.input:
                left = None if args.limit is None else args.limit - len(rows)
                if left is not None and left <= 0:
                    break
                rows += convert_math(
                    path, store, errors, args.dataset, args.source, args.suffix, args.split, left
                )
            _require_rows(rows, errors, args.input)
            write_records(args.out, rows)
            print(
                f"wrote {len(rows)} prompt rows to {args.out} ({store.written} embedded images written to "
                f"{image_out}); use --data.input_key prompt --data.image_key images --data.label_key label"
            )
        else:
            roots = ImageRoots.of(args.image_root) if args.image_root else None
            rows, stats = convert_visualprm400k(
                args.input,
                errors,
                args.to,
                args.threshold,
                args.unestimated,
                args.soft_labels,
                roots,
                args.limit,
            )
            _require_rows(rows, errors, args.input)
            write_records(args.out, rows)
            print(f"wrote {len(rows)} rows ({args.to}) to {args.out}")
            print(format_statistics(stats))
            Path(str(args.out) + ".stats.json").write_text(
                json.dumps(stats, indent=2) + "\n", encoding="utf-8"
            )
    except (BadDataError, ImageError):
        _print_errors(errors, args.out)  # what was collected before the stop; the CLI prints the error
        raise
    _print_errors(errors, args.out)
    return 0
