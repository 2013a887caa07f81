"""Config fields that describe themselves: help, choices, flag and env names live in the field.

Each component has one frozen config type (``PRMConfig``, ``JudgeConfig``, ``OutcomeConfig``)
whose fields are declared with :func:`option`. The launcher's ``--reward.prm.*`` flags, the
``score`` / ``serve`` / ``judge`` flags, the ``reward_fns`` environment variables and the README's
tables are generated from those declarations (the ``HfArgumentParser`` / vLLM ``EngineArgs``
pattern), so an option has one name, one default and one help text wherever it is typed.
Bottom layer: argparse and dataclasses only.
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import typing
from collections.abc import Callable, Iterable, Mapping
from dataclasses import MISSING, dataclass, field
from typing import Any

from openrlhf_visualprm.bounds import parse_number
from openrlhf_visualprm.errors import ConfigError, FlagError

ENV_PREFIX = "OPENRLHF_VISUALPRM_"


def option(
    default: Any = MISSING,
    help: str = "",
    *,
    choices: Iterable[Any] = (),
    flag: bool | str = True,
    env: bool | str = True,
    parse: Callable[[str], Any] | None = None,
    show: Callable[[Any], str] | None = None,
    unset: str | None = None,
) -> Any:
    """A dataclass field that carries its own command-line and environment description.

    ``flag`` / ``env``: False for none, True for the field's own name, a string for another name
    (a flag's stem such as ``timeout``; an env name after ``OPENRLHF_VISUALPRM_``). ``parse`` turns
    typed text into the value (e.g. ``\\n`` escapes); ``show`` the default back into text;
    ``unset`` says what a ``None`` default means."""
    metadata = {
        "help": help,
        "choices": tuple(choices),
        "flag": flag,
        "env": env,
        "parse": parse,
        "show": show,
        "unset": unset,
    }
    return field(default=default, metadata=metadata)


@dataclass(frozen=True)
class Option:
    """One described field, resolved: its value type and how it is typed."""

    name: str
    kind: type  # int, float, str or bool (the non-None member of an Optional)
    default: Any
    help: str
    choices: tuple
    flag: str | None  # the flag's stem, or None: not a flag
    env: str | None  # the env name's tail after ENV_PREFIX and the component, or a full tail
    env_is_full: bool
    parse: Callable[[str], Any] | None
    show: Callable[[Any], str] | None
    unset: str | None

    def default_text(self) -> str:
        """The default as a person reads it in ``--help`` and the README."""
        if self.default is None:
            return self.unset or "unset"
        if self.kind is bool:
            return "on" if self.default else "off"
        return self.show(self.default) if self.show else str(self.default)

    def from_text(self, text: str, where: str) -> Any:
        """``text`` (a flag's or an env var's value) as this option's value; errors name ``where``."""
        if self.kind is bool:
            lowered = text.strip().lower()
            if lowered in ("1", "true", "yes", "on"):
                return True
            if lowered in ("0", "false", "no", "off"):
                return False
            raise ConfigError(f"{where} must be 1/true or 0/false, got {text!r}")
        if self.kind in (int, float):
            return parse_number(text, where, integer=self.kind is int)
        value = self.parse(text) if self.parse else text
        if self.choices and value not in self.choices:
            raise ConfigError(f"{where} must be one of {', '.join(map(str, self.choices))}, got {text!r}")
        return value


@functools.cache  # fixed per class; reward_fns reads the variable list on every call
def options(cls: type) -> tuple[Option, ...]:
    """The described fields of config type ``cls``, in declaration order."""
    hints = typing.get_type_hints(cls)
    out = []
    for f in dataclasses.fields(cls):
        meta = f.metadata
        if "help" not in meta:
            continue
        kind = hints[f.name]
        members = [a for a in typing.get_args(kind) if a is not type(None)]
        if members:  # Optional[X] / X | None
            kind = members[0]
        flag, env = meta["flag"], meta["env"]
        out.append(
            Option(
                name=f.name,
                kind=kind,
                default=f.default,
                help=meta["help"],
                choices=meta["choices"],
                flag=(f.name if flag is True else flag) or None,
                env=(f.name.upper() if env is True else env) or None,
                env_is_full=isinstance(env, str),
                parse=meta["parse"],
                show=meta["show"],
                unset=meta["unset"],
            )
        )
    return tuple(out)


def env_name(component: str, opt: Option) -> str | None:
    """``OPENRLHF_VISUALPRM_<COMPONENT>_<FIELD>``, or the name the field gives; None: no env var."""
    if opt.env is None:
        return None
    return ENV_PREFIX + (opt.env if opt.env_is_full else f"{component.upper()}_{opt.env}")


# ----------------------------------------------------------------------------- flags
def flag_name(opt: Option, prefix: str) -> str:
    """``--reward.prm.max_steps`` with a dotted ``prefix`` (``--reward.prm.``), else ``--max-steps``."""
    if prefix.endswith("."):
        return prefix + opt.flag
    return prefix + opt.flag.replace("_", "-")


def markdown_cell(text: str) -> str:
    """Text for a cell of the README's generated tables: a ``|`` would end the cell."""
    return text.replace("|", "\\|")


def flag_help(opt: Option) -> str:
    return f"{opt.help} (default: {opt.default_text()})"


def add_flags(
    parser: argparse.ArgumentParser | argparse._ArgumentGroup,
    cls: type,
    *,
    prefix: str = "--",
    dest_prefix: str = "",
    only: Iterable[str] | None = None,
    skip: Iterable[str] = (),
    aliases: Mapping[str, Iterable[str]] | None = None,
) -> list[str]:
    """One flag per described field of ``cls`` (default, choices and help from the field).

    ``dest`` is ``dest_prefix + field name`` so :func:`flag_values` maps the namespace back to
    fields. Returns the flags added."""
    wanted = None if only is None else set(only)
    skipped = set(skip)
    added = []
    for opt in options(cls):
        if opt.flag is None or opt.name in skipped or (wanted is not None and opt.name not in wanted):
            continue
        names = [flag_name(opt, prefix), *((aliases or {}).get(opt.name, ()))]
        kwargs: dict[str, Any] = {"dest": dest_prefix + opt.name, "help": flag_help(opt)}
        if opt.kind is bool:
            kwargs["action"] = argparse.BooleanOptionalAction if opt.default else "store_true"
            kwargs["default"] = bool(opt.default)
        else:
            kwargs["default"] = opt.default
            kwargs["type"] = opt.parse or opt.kind
            if opt.choices:
                kwargs["choices"] = opt.choices
            else:
                kwargs["metavar"] = opt.flag.upper()
        parser.add_argument(*names, **kwargs)
        added.append(names[0])
    return added


def flag_values(ns: argparse.Namespace, cls: type, dest_prefix: str = "") -> dict[str, Any]:
    """The values of :func:`add_flags`' flags in ``ns``, by field name (only those present)."""
    return {
        opt.name: getattr(ns, dest_prefix + opt.name)
        for opt in options(cls)
        if hasattr(ns, dest_prefix + opt.name)
    }


def changed_flags(ns: argparse.Namespace, cls: type, prefix: str = "--", dest_prefix: str = "") -> list[str]:
    """The flags of ``cls`` in ``ns`` whose value is not the field's default (set by the user)."""
    return [
        flag_name(opt, prefix)
        for opt in options(cls)
        if opt.flag
        and hasattr(ns, dest_prefix + opt.name)
        and getattr(ns, dest_prefix + opt.name) != opt.default
    ]


def config_from_flags(
    ns: argparse.Namespace, cls: type, *, prefix: str = "--", dest_prefix: str = "", **fixed: Any
) -> Any:
    """``cls(**fixed, **flag values)``; a value the config type refuses is a
    :class:`~openrlhf_visualprm.errors.FlagError` naming the flag that set it."""
    values = flag_values(ns, cls, dest_prefix)
    try:
        return cls(**fixed, **values)
    except ConfigError as exc:
        by_name = {opt.name: opt for opt in options(cls)}
        for name, value in values.items():  # which flag: the first whose value alone is refused
            try:
                cls(**fixed, **{name: value})
            except ConfigError:
                flag = flag_name(by_name[name], prefix)
                raise FlagError(f"{flag} {_shown(value)}: {exc}", flag) from None
        raise FlagError(f"{prefix.rstrip('.')}*: {exc}", None) from None


def _shown(value: Any) -> str:
    text = repr(value) if isinstance(value, str) else str(value)
    return text if len(text) <= 60 else text[:57] + "..."
