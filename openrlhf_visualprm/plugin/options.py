"""The plugin's own flags (``--reward.prm.*``, ``--reward.judge.*``, ``--reward.outcome.*``, ...).

They share OpenRLHF's dotted style but OpenRLHF does not know them: the launcher takes them out
of the command line before OpenRLHF parses it and turns them into a :class:`RewardPlan`.
"""

from __future__ import annotations

import argparse

from openrlhf_visualprm.config_fields import add_flags, config_from_flags, markdown_cell
from openrlhf_visualprm.errors import FlagError
from openrlhf_visualprm.plugin.plan import JudgeConfig, OutcomeConfig, PRMConfig, RewardPlan
from openrlhf_visualprm.prm.aggregate import CREDIT_MODES

PRM_PREFIX, JUDGE_PREFIX, OUTCOME_PREFIX = "--reward.prm.", "--reward.judge.", "--reward.outcome."


class _RaisingParser(argparse.ArgumentParser):
    def error(self, message: str):  # noqa: D102 - argparse hook
        flag = next(
            (tok.split("/")[0] for tok in message.replace(":", " ").split() if tok.startswith("--")), None
        )
        raise FlagError(f"plugin flag error: {message}", flag)


def build_parser() -> argparse.ArgumentParser:
    """The plugin's flags. Component flags are generated from the config types' fields
    (config_fields.add_flags): name, default, choices and help have one home, the field."""
    p = _RaisingParser(prog="openrlhf-visualprm train", add_help=False, allow_abbrev=False)
    g = p.add_argument_group("launcher")
    g.add_argument(
        "--dry-run", dest="dry_run", action="store_true", help="print the plan and the argv, then exit"
    )
    g.add_argument("--json", action="store_true", help="with --dry-run: print the plan as JSON")
    g = p.add_argument_group("VisualPRM (--reward.prm.*)")
    add_flags(g, PRMConfig, prefix=PRM_PREFIX, dest_prefix="reward_prm_")
    g.add_argument("--reward.prm.dense", default=None, help=argparse.SUPPRESS)  # replaced: a clear error
    g = p.add_argument_group("MR. Judge (--reward.judge.*)")
    g.add_argument(
        "--reward.judge.model",
        default=None,
        help="judge alias or path; adds the judge component (default: unset, or mr-judge when it is in "
        "the model list)",
    )
    add_flags(g, JudgeConfig, prefix=JUDGE_PREFIX, dest_prefix="reward_judge_")
    g = p.add_argument_group("outcome (--reward.outcome.*)")
    g.add_argument(
        "--reward.outcome.enable",
        action="store_true",
        help="add the math answer check component (default: off)",
    )
    add_flags(g, OutcomeConfig, prefix=OUTCOME_PREFIX, dest_prefix="reward_outcome_")
    g = p.add_argument_group("combination and placement")
    g.add_argument(
        "--reward.weights",
        default="",
        help="e.g. prm=0.5,judge=0.3,outcome=1: reward = sum of weight x component (default: 1 each)",
    )
    g.add_argument(
        "--reward.image_roots",
        default="",
        help="comma-separated folders image paths must resolve into (paths elsewhere are refused); relative "
        "ones are taken from the launch directory (default: none)",
    )
    add_flags(g, RewardPlan, prefix="--reward.", dest_prefix="reward_")
    return p


def markdown_table() -> str:
    """The README's table of the plugin flags, from the parser (so from the config fields)."""
    rows = ["| plugin flag | default | meaning |", "|---|---|---|"]
    for action in build_parser()._actions:
        if not action.option_strings[0].startswith("--reward.") or action.help == argparse.SUPPRESS:
            continue
        meaning, _, default = action.help.rpartition(" (default: ")
        default = default[:-1]
        if " " not in default:  # a value, not a phrase
            default = f"`{default}`"
        if action.choices:
            meaning += "; one of " + ", ".join(f"`{c}`" for c in action.choices)
        rows.append(f"| `{action.option_strings[0]}` | {markdown_cell(default)} | {markdown_cell(meaning)} |")
    return "\n".join(rows)


def plugin_option_strings() -> set[str]:
    return {opt for action in build_parser()._actions for opt in action.option_strings}


def parse_plugin_flags(argv: list[str]) -> tuple[argparse.Namespace, list[str]]:
    """Take the plugin's flags out of ``argv``; return them and the rest in order."""
    parser = build_parser()
    ns, rest = parser.parse_known_args(argv)
    ns = argparse.Namespace(**{k.replace(".", "_"): v for k, v in vars(ns).items()})
    if ns.reward_prm_dense is not None:
        raise FlagError(
            f"--reward.prm.dense was replaced by --reward.prm.credit (modes {', '.join(CREDIT_MODES)}); "
            f"--reward.prm.dense {ns.reward_prm_dense} is --reward.prm.credit {ns.reward_prm_dense} with "
            "--reward.prm.v0 0.5 (diff); the default, anchored, is the mode no probed hack pays under",
            "--reward.prm.dense",
        )
    del ns.reward_prm_dense
    # every value checked by its config type now, named by its flag, whether or not the component runs
    config_from_flags(ns, PRMConfig, prefix=PRM_PREFIX, dest_prefix="reward_prm_")
    config_from_flags(ns, JudgeConfig, prefix=JUDGE_PREFIX, dest_prefix="reward_judge_")
    config_from_flags(ns, OutcomeConfig, prefix=OUTCOME_PREFIX, dest_prefix="reward_outcome_")
    config_from_flags(ns, RewardPlan, prefix="--reward.", dest_prefix="reward_")
    return ns, rest
