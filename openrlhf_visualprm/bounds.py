"""One check for every numeric setting: a number, finite, in range, bounded where cost grows.

Flags, environment variables, service requests and reward plans all end in the config types
(``PRMConfig``, ``JudgeConfig``, ``OutcomeConfig``, the reward plan), which call :func:`number`;
strings (an env var, a flag) go through :func:`parse_number` first. So ``nan``, ``inf``, a JSON
``1e400`` or a 5,000-digit integer is refused with a message naming the setting, on every route,
instead of becoming a NaN reward or a tile search that never ends. Bottom layer: no imports but
the package's errors.
"""

from __future__ import annotations

import math
from typing import Any

from openrlhf_visualprm.errors import ConfigError


def _describe(low: float | None, high: float | None, low_open: bool, integer: bool) -> str:
    kind = "an integer" if integer else "a finite number"
    if low is not None and high is not None:
        return f"{kind} in {'(' if low_open else '['}{low:g}, {high:g}]"
    if low is not None:
        return f"{kind} {'>' if low_open else '>='} {low:g}"
    if high is not None:
        return f"{kind} <= {high:g}"
    return kind


def number(
    value: Any,
    name: str,
    *,
    low: float | None = None,
    high: float | None = None,
    low_open: bool = False,
    integer: bool = False,
) -> Any:
    """``value`` when it is a finite number within the bounds, else :class:`ConfigError` naming ``name``.

    Args:
        value: the setting (bools are refused: ``True`` is not a temperature).
        name: what the user set (a flag, a variable, a config key) for the message.
        low, high: inclusive bounds (``low_open``: ``low`` excluded); None for no bound.
        integer: an ``int`` is required (a float such as ``2.0`` is refused too).
    """
    want = _describe(low, high, low_open, integer)
    ok_type = isinstance(value, int) if integer else isinstance(value, (int, float))
    if not ok_type or isinstance(value, bool):
        raise ConfigError(f"{name} must be {want}, got {_short(value)}")
    if isinstance(value, float) and not math.isfinite(value):
        raise ConfigError(f"{name} must be {want}, got {value!r}")
    try:
        below = low is not None and (value <= low if low_open else value < low)
        above = high is not None and value > high
    except OverflowError:  # an int too large to compare with a float bound
        below, above = False, True
    if below or above:
        raise ConfigError(f"{name} must be {want}, got {_short(value)}")
    return value


def parse_number(text: Any, name: str, **bounds: Any) -> Any:
    """A string setting (env var, flag) -> :func:`number`; ``integer=True`` parses an int."""
    if not isinstance(text, str):
        return number(text, name, **bounds)
    cast = int if bounds.get("integer") else float
    try:
        value = cast(text.strip())
    except ValueError:
        raise ConfigError(
            f"{name}={_short(text)} is not {'an integer' if cast is int else 'a number'}"
        ) from None
    return number(value, name, **bounds)


def _short(value: Any) -> str:
    if isinstance(value, int) and value.bit_length() > 128:  # repr() refuses over 4,300 digits
        return f"an integer of about {int(value.bit_length() * 0.30103) + 1} digits"
    text = repr(value)
    return text if len(text) <= 40 else f"{text[:20]}... ({len(text)} characters)"
