"""``prm-prompt``: print the exact text VisualPRM reads for a question and its steps."""

from __future__ import annotations

import argparse
import json
import sys

from openrlhf_visualprm.config_fields import add_flags
from openrlhf_visualprm.errors import ConfigError
from openrlhf_visualprm.prm import template as T
from openrlhf_visualprm.prm.config import PRMConfig


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.description = "Print the exact text VisualPRM reads for a question and its steps."
    parser.add_argument(
        "--question", required=True, help="the question (an <image>\\n is prepended if absent)"
    )
    parser.add_argument(
        "--steps-json", required=True, help='the steps as a JSON list of strings, e.g. \'["a", "b"]\''
    )
    add_flags(parser, PRMConfig, only=["system_message"])
    parser.add_argument("--num-tiles", default="1", help="image tiles, comma-separated per image (default 1)")
    parser.add_argument(
        "--collapse-image-tokens",
        action="store_true",
        help="print <IMG_CONTEXT> x N instead of N copies (not the exact text)",
    )


def run(args: argparse.Namespace) -> int:
    try:
        steps = json.loads(args.steps_json)
    except json.JSONDecodeError as exc:
        raise ConfigError(f"--steps-json is not valid JSON: {exc}") from exc
    if not isinstance(steps, list) or not all(isinstance(s, str) for s in steps):
        raise ConfigError("--steps-json must be a JSON list of strings")
    tiles = [int(t) for t in str(args.num_tiles).split(",")]
    # No checkpoint here: 'config' has nothing to read, and the default is InternVL2.5's.
    system = T.resolve_system_message(args.system_message, None, "prm-prompt (no checkpoint)")
    print(system.describe("prm-prompt"), file=sys.stderr)
    # What the scorer reads: markup in the question (but its <image> placeholders) and in the
    # steps is broken the way VisualPRM.prompt_text breaks it (default specials; a checkpoint's
    # tokenizer adds its own added tokens to that set).
    question = T.neutralize(args.question, set(T._DEFAULT_SPECIALS) - {T.IMAGE_PLACEHOLDER})
    text = T.render_prompt(system.text, question, [T.neutralize(s) for s in steps], tiles)
    if args.collapse_image_tokens:
        import re

        text = re.sub(
            f"(?:{T.IMG_CONTEXT})+",
            lambda m: f"{T.IMG_CONTEXT} x {len(m.group(0)) // len(T.IMG_CONTEXT)}",
            text,
        )
    sys.stdout.write(text)
    return 0
