"""Dtype and device names -> torch objects: the one table every loader (PRM, judge, workers) reads.

Bottom layer: torch is imported only when a name is turned into a torch object, so configs and
``--help`` can validate or show a name without loading torch.
"""

from __future__ import annotations

import re
from typing import Any

# name -> torch attribute; the accepted spellings users type in flags and configs.
DTYPE_NAMES: dict[str, str] = {
    "float32": "float32",
    "fp32": "float32",
    "bfloat16": "bfloat16",
    "bf16": "bfloat16",
    "float16": "float16",
    "fp16": "float16",
}


def check_dtype_name(name: str, allow_auto: bool = False) -> str:
    """``name`` if it is a known dtype name (or ``auto`` when allowed); ``ValueError`` naming the choices."""
    if allow_auto and name == "auto":
        return name
    if name not in DTYPE_NAMES:
        extra = " or 'auto'" if allow_auto else ""
        raise ValueError(f"unknown dtype {name!r}; choose one of {', '.join(DTYPE_NAMES)}{extra}")
    return name


def as_dtype(dtype: Any, allow_auto: bool = False) -> Any:
    """A ``torch.dtype`` from a dtype or its usual names; ``"auto"``/None pass through when allowed."""
    import torch

    if isinstance(dtype, torch.dtype):
        return dtype
    if allow_auto and dtype in (None, "auto"):
        return dtype
    return getattr(torch, DTYPE_NAMES[check_dtype_name(dtype)])


# Device names a flag, env var or plan may give: auto, or a torch device type with an optional index.
DEVICE_TYPES = ("cpu", "cuda", "mps", "xpu", "npu")
_DEVICE = re.compile(rf"^(?:auto|(?:{'|'.join(DEVICE_TYPES)})(?::\d{{1,4}})?)$")


def check_device_name(name: Any, where: str = "device") -> str:
    """``name`` if it is ``auto`` or a device such as ``cpu``, ``cuda``, ``cuda:1``; else a
    :class:`~openrlhf_visualprm.errors.ConfigError` naming ``where`` (a flag or variable)."""
    if not isinstance(name, str) or not _DEVICE.match(name):
        from openrlhf_visualprm.errors import ConfigError

        shown = repr(name) if len(repr(name)) <= 40 else repr(name)[:40] + "..."
        raise ConfigError(
            f"{where} must be auto or a device ({', '.join(DEVICE_TYPES)}, optionally with :INDEX such as "
            f"cuda:1), got {shown}"
        )
    return name


def resolve_device(requested: str | None = "auto") -> str:
    """``auto``/None -> ``cuda`` when a GPU is visible, else ``cpu``; any other valid name as is."""
    if requested not in (None, "auto"):
        return check_device_name(requested)
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"
