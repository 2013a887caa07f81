"""``openrlhf-visualprm judge``: judge one group of responses to an image + question.

Prints one reward per response (chance = 0.5) and the judge's health numbers; ``--show-calls``
also prints every judge prompt and raw output, ``--json`` everything as JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from openrlhf_visualprm.errors import ConfigError

from ..steps import read_responses_file
from ..torch_names import cli_device, describe_device
from .aggregate import AGGREGATORS, FAILURE_POLICIES
from .backends import BACKENDS
from .config import DEFAULT_MAX_NEW_TOKENS, DEFAULT_ROUNDS
from .schedule import SCHEDULES
from .template import MAX_CANDIDATES


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--model",
        default="mr-judge",
        help="judge checkpoint: a local folder, a hub id in the local HF cache, or the alias "
        "'mr-judge' ($OPENRLHF_VISUALPRM_JUDGE_MODEL, default Qwen/Qwen2.5-VL-7B-Instruct)",
    )
    parser.add_argument(
        "--backend", choices=BACKENDS, default="hf", help="hf (transformers generate) or vllm (GPU)"
    )
    parser.add_argument(
        "--image",
        action="append",
        default=[],
        metavar="PATH",
        help="image the responses are about (repeat for several)",
    )
    parser.add_argument("--question", required=True, help="the question the responses answer")
    parser.add_argument(
        "--responses",
        required=True,
        metavar="FILE.jsonl",
        help="one response per line: a JSON string or an object with a 'response' field",
    )
    parser.add_argument(
        "--reference", default=None, help="reference solution text (for --schedule reference)"
    )
    parser.add_argument(
        "--schedule",
        choices=SCHEDULES,
        default="listwise",
        help="listwise rounds (default), pairwise all pairs both orders, versus a reference, "
        "or a knockout bracket",
    )
    parser.add_argument(
        "--rounds", type=int, default=DEFAULT_ROUNDS, help=f"listwise rounds (default {DEFAULT_ROUNDS})"
    )
    parser.add_argument(
        "--k",
        type=int,
        default=MAX_CANDIDATES,
        help=f"candidates per listwise call, 2..{MAX_CANDIDATES} (default {MAX_CANDIDATES})",
    )
    parser.add_argument("--aggregator", choices=AGGREGATORS, default="win_rate", help="verdicts -> rewards")
    parser.add_argument(
        "--on-failure",
        choices=FAILURE_POLICIES,
        default="neutral",
        help="a failed parse is a tie (neutral) or ignored (skip); never a win",
    )
    parser.add_argument(
        "--reask", action="store_true", help="constrained second call for the letter on failure"
    )
    parser.add_argument("--seed", type=int, default=0, help="seed of every shuffle (default 0)")
    parser.add_argument(
        "--max-new-tokens",
        type=int,
        default=DEFAULT_MAX_NEW_TOKENS,
        help=f"judge reasoning budget (default {DEFAULT_MAX_NEW_TOKENS})",
    )
    parser.add_argument("--batch-size", type=int, default=16, help="HF backend: calls per generate batch")
    parser.add_argument(
        "--device", default="auto", help="HF backend device (default auto: cuda when a GPU is visible)"
    )
    parser.add_argument("--dtype", default="auto", help="auto, bfloat16, float16 or float32")
    parser.add_argument("--json", action="store_true", help="print the full result (calls included) as JSON")
    parser.add_argument("--show-calls", action="store_true", help="print each judge prompt and raw output")
    parser.add_argument(
        "--no-progress",
        action="store_true",
        help="no progress bar on stderr (judge calls, with total and ETA)",
    )


def read_responses(path: str | os.PathLike) -> list[str]:
    """Whole responses from a JSONL file (the judge compares responses, not explicit steps)."""
    responses, steps = read_responses_file(path)
    if steps is not None:
        raise ConfigError(f"{path}: the judge compares whole responses; 'steps' lines are for `score`")
    return responses


def run(args: argparse.Namespace) -> int:
    from .judge import MRJudge

    if args.schedule == "reference" and not (args.reference or "").strip():
        raise ConfigError(
            "--schedule reference compares each response with a reference solution: give --reference TEXT"
        )
    responses = read_responses(args.responses)
    for p in args.image:
        if not Path(p).is_file():
            raise ConfigError(f"--image {p}: no such file")
    roots = sorted({str(Path(p).resolve().parent) for p in args.image})
    device = cli_device(args.device) if args.backend == "hf" else args.device
    if args.backend == "hf":
        print(describe_device(args.device, device), file=sys.stderr)
    judge = MRJudge.from_pretrained(
        args.model,
        backend=args.backend,
        device=device,
        dtype=args.dtype,
        max_new_tokens=args.max_new_tokens,
        batch_size=args.batch_size,
        schedule=args.schedule,
        rounds=args.rounds,
        k=args.k,
        aggregator=args.aggregator,
        on_failure=args.on_failure,
        reask=args.reask,
        seed=args.seed,
        image_roots=roots or None,
        backend_kwargs={"progress": not args.no_progress},
    )
    images = [str(Path(p).resolve()) for p in args.image]
    result = judge.judge_group(images, args.question, responses, reference=args.reference)
    if args.json:
        print(json.dumps(result.to_dict(), indent=2, ensure_ascii=False))
        return 0
    if args.show_calls:
        for i, call in enumerate(result.calls):
            print(
                f"=== call {i} (round {call.round}, order {list(call.order)}, labels {''.join(call.labels)}) ==="
            )
            print(call.prompt)
            print(f"--- raw output ---\n{call.raw_output}")
            verdict = (
                f"chose {call.choice} -> response {call.winner}"
                if call.choice
                else f"parse failed: {call.failure}"
            )
            print(f"--- {verdict}{' (re-asked)' if call.reasked else ''}\n")
    print(
        f"schedule={result.schedule} aggregator={result.aggregator} calls={len(result.calls)} (chance reward 0.5)"
    )
    for i, (reward, text) in enumerate(zip(result.rewards, responses, strict=True)):
        snippet = " ".join(text.split())[:70]
        mark = "  <- best" if i == result.best and result.stats["reward_spread"] > 0 else ""
        print(f"  [{i}] reward={reward:.3f}  {snippet}{mark}")
    s = result.stats
    print(
        f"parse failures: {s['parse_failures']}/{s['n_calls']} ({s['parse_failure_rate']:.0%})"
        f"{', re-asked ' + str(s['reasked']) if s['reasked'] else ''}"
    )
    for key in ("first_position_pick_rate", "swap_flip_rate", "reward_length_correlation"):
        if s[key] is not None:
            print(f"{key.replace('_', ' ')}: {s[key]:.3f}")
    if s["parse_failure_rate"] > 0.5:
        print(
            "note: most judge outputs could not be parsed; rewards are mostly the neutral fallback",
            file=sys.stderr,
        )
    return 0
