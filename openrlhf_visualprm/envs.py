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
from openrlhf_visualprm.config_fields import env_name, markdown_cell, options
from openrlhf_visualprm.errors import ConfigError

MAX_FAILURE_WINDOW = 100_000  # samples a reward_fns process remembers (memory grows with it)


@dataclass(frozen=True)
class EnvVar:
    name: str
    default: str | None
    help: str
    # bounds of a numeric variable read with :func:`number` (see bounds.number); a variable that
    # fills a config field gets its range from the config type instead
    bounds: dict[str, Any] = field(default_factory=dict)
    # a variable generated from a config field: unset means the field's default, shown here
    default_text: str | None = None


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


# ----------------------------------------------------------------------------- config fields
def config_vars(component: str, config_type: type) -> list[EnvVar]:
    """The ``OPENRLHF_VISUALPRM_<COMPONENT>_<FIELD>`` variables generated from ``config_type``'s
    described fields (config_fields.option): unset means the field's default."""
    return [
        EnvVar(name, None, f"reward_fns: {opt.help}", default_text=_shown(opt))
        for opt in options(config_type)
        if (name := env_name(component, opt)) is not None
    ]


def _shown(opt) -> str:
    return opt.default_text() if opt.default is None else f"`{opt.default_text()}`"


def config_from_env(component: str, config_type: type, **fixed: Any) -> Any:
    """``config_type(**fixed)`` overridden by its set ``OPENRLHF_VISUALPRM_<COMPONENT>_*`` variables,
    checked as flags are; an error names the variables that were set."""
    values, given = {}, []
    for opt in options(config_type):
        name = env_name(component, opt)
        raw = os.environ.get(name) if name else None
        if raw not in (None, ""):
            values[opt.name] = opt.from_text(raw, name)  # not a number / not a choice: names it
            given.append(f"{name}={raw!r}")
    try:
        return config_type(**{**fixed, **values})
    except ConfigError as exc:  # out of range
        raise ConfigError(f"{exc} (from {', '.join(given) or 'no variable set'})") from None


def snapshot(names: list[str]) -> str:
    """The values of ``names`` as one string: a cache key that changes when a setting does."""
    return "|".join(f"{name}={os.environ.get(name)}" for name in sorted(names))


def markdown_table(configs: dict[str, type] | None = None) -> str:
    """The README's table of every variable, those generated from ``configs`` (component -> config
    type) after the fixed ones (a test keeps the README equal to it)."""
    generated = [v for name, cls in (configs or {}).items() for v in config_vars(name, cls)]
    rows = ["| variable | default | meaning |", "|---|---|---|"]
    for var in (*_VARS, *generated):
        if var.default_text is not None:
            default = f"unset: {var.default_text}"
        else:
            default = "unset" if var.default is None else f"`{var.default}`" if var.default else "empty"
        rows.append(f"| `{var.name}` | {markdown_cell(default)} | {markdown_cell(var.help)} |")
    return "\n".join(rows)
