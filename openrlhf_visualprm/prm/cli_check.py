"""``check-model``: load a VisualPRM strictly and print what the scorer relies on.

The checks themselves are :func:`openrlhf_visualprm.prm.check.check_loaded`, which
``VisualPRM.from_pretrained`` runs on every load; this module is only the command (kept apart so
the checks import neither the command's options nor the scorer).
"""

from __future__ import annotations

import argparse
import json
import sys

from openrlhf_visualprm.prm.load_options import add_load_arguments


def check_model(path_or_alias: str, system_message: str | None = None, device: str = "cpu", dtype="float32"):
    """Load ``path_or_alias`` strictly and return its :class:`ModelCheck` (for pre-flight checks)."""
    from openrlhf_visualprm.prm.scorer import VisualPRM

    prm = VisualPRM.from_pretrained(path_or_alias, device=device, dtype=dtype, system_message=system_message)
    return prm.check_report


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.description = (
        "Load a VisualPRM checkpoint strictly and print what the scorer relies on (architecture, image "
        "tokens per tile, '+'/'-' ids, BOS rule, system message and its source), with a warning for "
        "anything that differs from the released checkpoints."
    )
    parser.add_argument(
        "model", metavar="PATH_OR_ALIAS", help="checkpoint folder or alias (visualprm, visualprm-v1)"
    )
    add_load_arguments(parser, tiles=False)
    parser.add_argument("--json", action="store_true", help="print the check as JSON")
    parser.add_argument("--strict", action="store_true", help="exit with status 1 when there is a warning")


def run(args: argparse.Namespace) -> int:
    from openrlhf_visualprm.torch_names import auto_dtype, cli_device, describe_device

    device = cli_device(args.device)
    print(describe_device(args.device, device), file=sys.stderr)
    report = check_model(
        args.model, system_message=args.system_message, device=device, dtype=auto_dtype(args.dtype, device)
    )
    if args.json:
        print(json.dumps(report.to_dict(), ensure_ascii=False, indent=2))
    else:
        print(report.format())
    if args.strict and report.warnings:
        print(f"{len(report.warnings)} warning(s) with --strict", file=sys.stderr)
        return 1
    return 0
