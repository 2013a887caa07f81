"""The ``openrlhf-visualprm`` command.

Subcommands live in their own modules and are imported only when chosen, so ``--help`` is fast
and a subcommand that needs Ray or OpenRLHF does not slow down one that does not. Each module
exposes ``add_arguments(parser)`` and ``run(args) -> int``.

Errors: the project's own errors (bad input, a model that cannot be loaded, data in the wrong
layout, an evaluation that evaluated nothing) are expected outcomes for a user, not bugs: one
handler here prints ``openrlhf-visualprm COMMAND: error: MESSAGE`` and exits with status 2.
Anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import argparse
import importlib
import sys

# name -> (module, one-line help). Add a line here to add a subcommand.
SUBCOMMANDS: dict[str, tuple[str, str]] = {
    "demo": ("openrlhf_visualprm.demo", "score the bundled mini multimodal-math set and write a report"),
    "score": ("openrlhf_visualprm.prm.cli_score", "score responses to an image + question with VisualPRM"),
    "check-model": (
        "openrlhf_visualprm.prm.cli_check",
        "load a VisualPRM strictly and check it against the released checkpoints",
    ),
    "prm-prompt": (
        "openrlhf_visualprm.prm.cli_prompt",
        "print the exact text VisualPRM reads for given steps",
    ),
    "judge": (
        "openrlhf_visualprm.judge.cli",
        "judge a group of responses to an image + question (MR. Judge)",
    ),
    "train": (
        "openrlhf_visualprm.train_ppo_ray",
        "OpenRLHF PPO/GRPO training with VisualPRM / judge rewards",
    ),
    "serve": (
        "openrlhf_visualprm.workers.serve_cli",
        "run reward workers and the HTTP reward service (Ray Serve)",
    ),
    "eval-prm": ("openrlhf_visualprm.eval.prm_bench", "evaluate a PRM on VisualProcessBench (step F1)"),
    "eval-judge": ("openrlhf_visualprm.eval.judge_bench", "evaluate a judge on VL-RewardBench (both orders)"),
    "eval-bon": ("openrlhf_visualprm.eval.bon", "best-of-N accuracy: majority, PRM- and judge-selected"),
    "convert-data": (
        "openrlhf_visualprm.data.convert",
        "convert math benchmarks / VisualPRM400K for training",
    ),
    "make-sample-data": (
        "openrlhf_visualprm.data.samples",
        "write small files in the released dataset formats",
    ),
    "make-demo-data": ("openrlhf_visualprm.data.demo_data", "write the generated mini multimodal-math set"),
    "make-tiny-models": ("openrlhf_visualprm.tiny_models", "write tiny random VisualPRM / judge checkpoints"),
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="openrlhf-visualprm",
        description="Multimodal reward models (VisualPRM process rewards, MR. Judge) for OpenRLHF.",
        epilog="Run `openrlhf-visualprm COMMAND --help` for the options of one command.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (_module, help_text) in SUBCOMMANDS.items():
        sub.add_parser(name, help=help_text, add_help=False)
    return parser


def _project_error_types() -> tuple[type[BaseException], ...]:
    """The error classes the package raises on purpose (imported only when an error happened)."""
    from openrlhf_visualprm.errors import VisualPRMError

    return (VisualPRMError,)


def _message(exc: BaseException) -> str:
    # KeyError's str() quotes its message; the others read as they were written.
    if isinstance(exc, KeyError) and exc.args:
        return str(exc.args[0])
    return str(exc) or type(exc).__name__


def _quiet_known_warnings() -> None:
    import warnings

    # torch.cuda imports pynvml on every CPU-only run and warns about its deprecation: noise for users.
    warnings.filterwarnings("ignore", message="The pynvml package is deprecated")


def main(argv: list[str] | None = None) -> int:
    _quiet_known_warnings()
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help") or argv[0] not in SUBCOMMANDS:
        parser = build_parser()
        if argv and argv[0] not in ("-h", "--help"):
            parser.print_usage(sys.stderr)
            known = ", ".join(SUBCOMMANDS)
            print(
                f"openrlhf-visualprm: error: unknown command {argv[0]!r} (choose from: {known})",
                file=sys.stderr,
            )
            return 2
        parser.print_help()
        return 0
    name, rest = argv[0], argv[1:]
    module_name, help_text = SUBCOMMANDS[name]
    module = importlib.import_module(module_name)
    sub_parser = argparse.ArgumentParser(
        prog=f"openrlhf-visualprm {name}",
        description=help_text,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    module.add_arguments(sub_parser)
    args = sub_parser.parse_args(rest)
    try:
        return int(module.run(args) or 0)
    except Exception as exc:
        if not isinstance(exc, _project_error_types()):
            raise
        print(f"openrlhf-visualprm {name}: error: {_message(exc)}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
