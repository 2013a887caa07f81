"""``score``: score responses to one image + question with VisualPRM from the shell."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from openrlhf_visualprm.config_fields import add_flags, config_from_flags
from openrlhf_visualprm.prm import template as T
from openrlhf_visualprm.prm.config import SCORING_FIELDS, PRMConfig
from openrlhf_visualprm.prm.load_options import add_load_arguments, load_prm
from openrlhf_visualprm.steps import read_responses_file


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.description = (
        "Score responses to one image + question with VisualPRM. FILE.jsonl has one "
        '{"response": str} or {"steps": [str, ...]} per line.'
    )
    parser.add_argument("--model", required=True, help="checkpoint folder or alias (visualprm, visualprm-v1)")
    parser.add_argument("--image", action="append", required=True, help="image file (repeat for several)")
    parser.add_argument("--question", required=True)
    parser.add_argument("--responses", required=True, type=Path, help="jsonl file of responses")
    add_flags(parser, PRMConfig, only=SCORING_FIELDS)  # --method, --aggregation, --splitter, ...
    add_load_arguments(parser)
    parser.add_argument("--json", action="store_true", help="one JSON object per response")


def run(args: argparse.Namespace) -> int:
    from openrlhf_visualprm.images import ImageRoots

    responses, steps = read_responses_file(args.responses)
    T.format_question(args.question, len(args.image))  # a placeholder mismatch: refused before loading
    roots = ImageRoots.of([Path(p).resolve().parent for p in args.image])
    config = config_from_flags(args, PRMConfig, model=args.model)  # refused by name before loading
    prm = load_prm(args.model, args, image_roots=roots)
    results = prm.score(
        [str(Path(p).resolve()) for p in args.image],
        args.question,
        responses=responses,
        steps=steps,
        **config.score_kwargs(),
    )
    if args.json:
        for r in results:
            print(json.dumps(r.to_dict(), ensure_ascii=False))
        return 0
    for i, r in enumerate(results):
        print(
            f"response {i}: score {r.score:.4f} ({args.aggregation} of {len(r.step_scores)} steps)"
            + (f"  [{r.note}]" if r.note else "")
        )
        for k, (text, s) in enumerate(zip(r.steps, r.step_scores)):
            short = text.replace("\n", " ")
            short = short if len(short) <= 70 else short[:67] + "..."
            print(f"  step {k}: {s:.4f}  {short}")
    return 0
