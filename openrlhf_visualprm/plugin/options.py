"""The plugin's own flags (``--reward.prm.*``, ``--reward.judge.*``, ``--reward.outcome.*``, ...).

They share OpenRLHF's dotted style but OpenRLHF does not know them: the launcher takes them out
of the command line before OpenRLHF parses it and turns them into a :class:`RewardPlan`.
"""

from __future__ import annotations

import argparse

from openrlhf_visualprm.errors import FlagError
from openrlhf_visualprm.plugin.plan import (
    AGGREGATIONS,
    CREDIT_MODES,
    DEFAULT_MAX_FAILED_FRACTION,
    JUDGE_BACKENDS,
    JUDGE_SCHEDULES,
    OUTCOME_CHECKERS,
    PRM_METHODS,
    JudgeConfig,
    OutcomeConfig,
    PRMConfig,
)
from openrlhf_visualprm.prm.config import DTYPES
from openrlhf_visualprm.steps import unescape_separator

# Flag defaults are the config types' defaults: one home per default.
_PRM, _JUDGE, _OUTCOME = PRMConfig(), JudgeConfig(), OutcomeConfig()




class _RaisingParser(argparse.ArgumentParser):
    def error(self, message: str):  # noqa: D102 - argparse hook
        flag = next(
            (tok.split("/")[0] for tok in message.replace(":", " ").split() if tok.startswith("--")), None
        )
        raise FlagError(f"plugin flag error: {message}", flag)


def build_parser() -> argparse.ArgumentParser:
    p = _RaisingParser(prog="openrlhf-visualprm train", add_help=False, allow_abbrev=False)
    g = p.add_argument_group("launcher")
    g.add_argument(
        "--dry-run", dest="dry_run", action="store_true", help="print the plan and the argv, then exit"
    )
    g.add_argument("--json", action="store_true", help="with --dry-run: print the plan as JSON")
    g = p.add_argument_group("VisualPRM (--reward.prm.*)")
    g.add_argument(
        "--reward.prm.aggregation",
        choices=AGGREGATIONS,
        default=_PRM.aggregation,
        help="step scores -> one reward",
    )
    g.add_argument(
        "--reward.prm.temperature", type=float, default=_PRM.temperature, help="softmin temperature"
    )
    g.add_argument(
        "--reward.prm.max_steps", type=int, default=_PRM.max_steps, help="merge steps into at most N blocks"
    )
    g.add_argument(
        "--reward.prm.splitter",
        default=_PRM.splitter.encode("unicode_escape").decode(),
        help="step separator (\\n and \\t are the only escapes), 're:PATTERN' for a regular expression taken "
        "literally, or preset:paragraphs|lines|steps|think",
    )
    g.add_argument(
        "--reward.prm.credit",
        choices=CREDIT_MODES,
        default=_PRM.credit,
        help="how step scores (and the outcome) become per-token returns: anchored (default: the PRM ranks "
        "within the outcome class), process_grpo, pure, rloo, diff, diff_group, value; off = the scalar "
        "aggregate through OpenRLHF's estimator (README: credit assignment)",
    )
    g.add_argument(
        "--reward.prm.v0",
        type=float,
        default=_PRM.v0,
        help="value before the first step (credit diff, diff_group)",
    )
    g.add_argument(
        "--reward.prm.empty_score",
        type=float,
        default=_PRM.empty_score,
        help="P(+) of the one step a stepless response counts as (credit modes)",
    )
    g.add_argument(
        "--reward.prm.value_max_steps",
        type=int,
        default=_PRM.value_max_steps,
        help="credit value: steps after this many earn nothing",
    )
    g.add_argument(
        "--reward.prm.credit_temperature",
        type=float,
        default=_PRM.credit_temperature,
        help="credit pure: temperature of the min-form softmax",
    )
    g.add_argument(
        "--reward.prm.credit_anchor",
        action="store_true",
        help="outcome-anchored option for the per-step credit modes: each response's first-token return is "
        "the anchored value, the mode keeps its step-to-step credit",
    )
    g.add_argument("--reward.prm.dense", default=None, help=argparse.SUPPRESS)  # replaced: a clear error
    g.add_argument(
        "--reward.prm.max_tiles", type=int, default=_PRM.max_tiles, help="InternVL dynamic tiles per image"
    )
    g.add_argument(
        "--reward.prm.method", choices=PRM_METHODS, default=_PRM.method, help="scoring pass layout"
    )
    g.add_argument(
        "--reward.prm.dtype",
        choices=DTYPES,
        default=_PRM.dtype,
        help="PRM weights dtype (auto: bfloat16 on GPU, float32 on CPU)",
    )
    g.add_argument(
        "--reward.prm.system_message",
        default=_PRM.system_message,
        help="prm (the data pipeline's PRM prompt), internvl2_5, config, or the text itself "
        "(default: the checkpoint config's, else InternVL2.5's; the reward actor logs which)",
    )
    g = p.add_argument_group("MR. Judge (--reward.judge.*)")
    g.add_argument(
        "--reward.judge.model", default=None, help="judge alias or path (adds the judge component)"
    )
    g.add_argument("--reward.judge.schedule", choices=JUDGE_SCHEDULES, default=_JUDGE.schedule)
    g.add_argument(
        "--reward.judge.rounds",
        type=int,
        default=_JUDGE.rounds,
        help="listwise rounds with reshuffled labels",
    )
    g.add_argument(
        "--reward.judge.group_size",
        type=int,
        default=_JUDGE.group_size,
        help="candidates per listwise call (2-4)",
    )
    g.add_argument("--reward.judge.backend", choices=JUDGE_BACKENDS, default=_JUDGE.backend)
    g.add_argument(
        "--reward.judge.max_new_tokens", type=int, default=_JUDGE.max_new_tokens, help="reasoning token cap"
    )
    g = p.add_argument_group("outcome (--reward.outcome.*)")
    g.add_argument("--reward.outcome.enable", action="store_true", help="add the math answer check component")
    g.add_argument("--reward.outcome.checker", choices=OUTCOME_CHECKERS, default=_OUTCOME.checker)
    g.add_argument(
        "--reward.outcome.timeout", type=float, default=_OUTCOME.timeout_s, help="seconds per answer check"
    )
    g.add_argument(
        "--reward.outcome.answer_key", default=_OUTCOME.answer_key, help="ground-truth key in the label dict"
    )
    g = p.add_argument_group("combination and placement")
    g.add_argument(
        "--reward.weights", default="", help="e.g. prm=0.5,outcome=1 (default 1 for each component)"
    )
    g.add_argument("--reward.image_roots", default="", help="comma-separated folders image paths must lie in")
    g.add_argument(
        "--reward.pool", default=None, help="name of a running RewardPool to send PRM/judge work to"
    )
    g.add_argument("--reward.device", default="auto", help="reward actor device: auto, cuda or cpu")
    g.add_argument(
        "--reward.max_failed_fraction",
        type=float,
        default=DEFAULT_MAX_FAILED_FRACTION,
        help="stop the run when a step has more than this fraction of prompt groups with a bad sample "
        "(neutral rewards); 1 disables the guard",
    )
    return p


def plugin_option_strings() -> set[str]:
    return {opt for action in build_parser()._actions for opt in action.option_strings}


def parse_plugin_flags(argv: list[str]) -> tuple[argparse.Namespace, list[str]]:
    """Take the plugin's flags out of ``argv``; return them and the rest in order."""
    parser = build_parser()
    ns, rest = parser.parse_known_args(argv)
    ns = argparse.Namespace(**{k.replace(".", "_"): v for k, v in vars(ns).items()})
    ns.reward_prm_splitter = unescape_separator(ns.reward_prm_splitter)  # only \\n, \\t; re: as typed
    if ns.reward_prm_dense is not None:
        raise FlagError(
            f"--reward.prm.dense was replaced by --reward.prm.credit (modes {', '.join(CREDIT_MODES)}); "
            f"--reward.prm.dense {ns.reward_prm_dense} is --reward.prm.credit {ns.reward_prm_dense} with "
            "--reward.prm.v0 0.5 (diff); the default, anchored, is the mode no probed hack pays under",
            "--reward.prm.dense",
        )
    del ns.reward_prm_dense
    for name, low in (
        ("reward_prm_max_steps", 1),
        ("reward_judge_rounds", 1),
        ("reward_prm_max_tiles", 1),
        ("reward_prm_value_max_steps", 1),
    ):
        value = getattr(ns, name)
        if value is not None and value < low:
            flag = "--" + name.replace("_", ".", 2)
            raise FlagError(f"{flag} must be >= {low}, got {value}", flag)
    if not 2 <= ns.reward_judge_group_size <= 4:
        raise FlagError(
            f"--reward.judge.group_size must be 2-4, got {ns.reward_judge_group_size}",
            "--reward.judge.group_size",
        )
    if not 0.0 <= ns.reward_max_failed_fraction <= 1.0:
        raise FlagError(
            f"--reward.max_failed_fraction must be in [0, 1], got {ns.reward_max_failed_fraction}",
            "--reward.max_failed_fraction",
        )
    if ns.reward_outcome_timeout <= 0:
        raise FlagError("--reward.outcome.timeout must be > 0", "--reward.outcome.timeout")
    return ns, rest
