"""Every ``OPENRLHF_VISUALPRM_*`` environment variable: name, default, meaning; read here only.

Environment variables are how settings reach code OpenRLHF starts for us (the ``reward_fns/``
files run inside vLLM engine actors; the reward plan travels to every Ray worker). One table
keeps their names and defaults from drifting between the modules that read them.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any

from openrlhf_visualprm.bounds import parse_number

MAX_FAILURE_WINDOW = 100_000  # samples a reward_fns process remembers (memory grows with it)


@dataclass(frozen=True)
class EnvVar:
    name: str
    default: str | None
    help: str
    # bounds of a numeric variable read with :func:`number` (see bounds.number); a variable that
    # fills a config field gets its range from the config type instead
    bounds: dict[str, Any] = field(default_factory=dict)


_VARS = (
    EnvVar(
        "OPENRLHF_VISUALPRM_PLAN", None, "the reward plan (JSON) the launcher exports to every Ray worker"
    ),
    EnvVar(
        "OPENRLHF_VISUALPRM_SKIP_MODEL_CHECK",
        None,
        "1: launch although a registered reward model is not on this machine (weights on reward nodes only)",
    ),
    EnvVar("OPENRLHF_VISUALPRM_JUDGE_MODEL", None, "what the mr-judge alias stands for (hub id or folder)"),
    EnvVar(
        "OPENRLHF_VISUALPRM_IMAGE_ROOTS",
        "",
        "reward_fns: absolute folders image paths must lie in (os.pathsep)",
    ),
    EnvVar(
        "OPENRLHF_VISUALPRM_DEVICE",
        None,
        "reward_fns: device for models loaded in-process (default cuda/cpu)",
    ),
    EnvVar("OPENRLHF_VISUALPRM_POOL", None, "reward_fns/visualprm.py: name of a running reward pool"),
    EnvVar(
        "OPENRLHF_VISUALPRM_PRM_MODEL", None, "reward_fns/visualprm.py: PRM alias or folder loaded in-process"
    ),
    EnvVar("OPENRLHF_VISUALPRM_PRM_AGGREGATION", None, "reward_fns: PRM aggregation (default: PRMConfig's)"),
    EnvVar("OPENRLHF_VISUALPRM_PRM_METHOD", None, "reward_fns: PRM scoring pass layout"),
    EnvVar("OPENRLHF_VISUALPRM_PRM_MAX_STEPS", None, "reward_fns: merge steps into at most N blocks"),
    EnvVar("OPENRLHF_VISUALPRM_PRM_SPLITTER", None, "reward_fns: step separator ('re:' prefix: a regex)"),
    EnvVar("OPENRLHF_VISUALPRM_PRM_TEMPERATURE", None, "reward_fns: softmin temperature"),
    EnvVar("OPENRLHF_VISUALPRM_PRM_MAX_TILES", None, "reward_fns: InternVL tiles per image"),
    EnvVar(
        "OPENRLHF_VISUALPRM_PRM_DTYPE", None, "reward_fns: PRM dtype (auto: bfloat16 on GPU, float32 on CPU)"
    ),
    EnvVar(
        "OPENRLHF_VISUALPRM_PRM_SYSTEM_MESSAGE",
        None,
        "reward_fns: PRM system message (prm, internvl2_5, config or the text)",
    ),
    EnvVar("OPENRLHF_VISUALPRM_JUDGE_BACKEND", None, "reward_fns/mr_judge.py: hf or vllm"),
    EnvVar("OPENRLHF_VISUALPRM_JUDGE_MAX_NEW_TOKENS", None, "reward_fns/mr_judge.py: reasoning token cap"),
    EnvVar("OPENRLHF_VISUALPRM_OUTCOME_CHECKER", None, "reward_fns/outcome.py: math-verify or exact"),
    EnvVar("OPENRLHF_VISUALPRM_ANSWER_KEY", None, "reward_fns/outcome.py: ground-truth key in the label"),
    EnvVar("OPENRLHF_VISUALPRM_ANSWER_TIMEOUT", None, "reward_fns/outcome.py: seconds per answer check"),
    EnvVar(
        "OPENRLHF_VISUALPRM_MAX_FAILED_FRACTION",
        None,
        "reward_fns: stop when more of the last window's samples were bad samples (default 0.5; 1: never)",
        {"low": 0, "high": 1},
    ),
    EnvVar(
        "OPENRLHF_VISUALPRM_FAILURE_WINDOW",
        None,
        "reward_fns: samples per process the failed fraction is taken over (default 64)",
        {"low": 1, "high": MAX_FAILURE_WINDOW},
    ),
)
VARS = {v.name: v for v in _VARS}


def get(name: str) -> str | None:
    """The variable's value, or its default when unset or blank. Unknown names are a bug."""
    var = VARS[name]
    value = os.environ.get(name)
    return value if value not in (None, "") else var.default


def number(name: str, integer: bool = False) -> int | float | None:
    """The variable as a finite number within its declared bounds, or None when unset; anything
    else is a :class:`~openrlhf_visualprm.errors.ConfigError` naming the variable."""
    value = get(name)
    if value is None:
        return None
    return parse_number(value, name, integer=integer, **VARS[name].bounds)


def is_set(name: str) -> bool:
    return get(name) not in (None, "", "0", "false", "False")


def markdown_table() -> str:
    """The README's table of every variable (a test keeps the two equal)."""
    rows = ["| variable | default | meaning |", "|---|---|---|"]
    for var in _VARS:
        default = "unset" if var.default is None else f"`{var.default}`" if var.default else "empty"
        rows.append(f"| `{var.name}` | {default} | {var.help} |")
    return "\n".join(rows)
