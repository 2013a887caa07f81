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


# What a --dtype flag or a config's dtype field offers: auto is bfloat16 on a GPU, float32 on the CPU.
DTYPE_CHOICES = ("auto", "bfloat16", "float16", "float32")


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


DEVICE_HELP = "torch device: auto (cuda when a GPU is visible, else cpu), cpu, cuda[:N]"
DTYPE_HELP = "weights dtype: auto (bfloat16 on a GPU, float32 on the CPU), bfloat16, float16, float32"


def add_device_arguments(parser: Any, dtype: bool = True) -> None:
    """``--device`` (and ``--dtype``) as every command that loads a model takes them: one default
    (``auto``), one help text."""
    parser.add_argument("--device", default="auto", help=f"{DEVICE_HELP} (default: auto)")
    if dtype:
        parser.add_argument(
            "--dtype", default="auto", choices=DTYPE_CHOICES, help=f"{DTYPE_HELP} (default: auto)"
        )


def cli_device(requested: str | None = "auto", flag: str = "--device") -> str:
    """A command's ``--device``: ``auto`` is :func:`resolve_device`; a CUDA device asked for where
    none is visible is a :class:`~openrlhf_visualprm.errors.ConfigError` naming ``flag`` (one line
    from the CLI, not a traceback from deep inside the model load)."""
    device = resolve_device(requested)
    if device.startswith("cuda"):
        import torch

        if not torch.cuda.is_available():
            from openrlhf_visualprm.errors import ConfigError

            raise ConfigError(f"{flag} {requested}: no CUDA GPU is visible here; use {flag} cpu (or auto)")
    return device


def describe_device(requested: str | None, device: str) -> str:
    """The line commands print: which device runs the model, and why."""
    why = " (auto: a GPU is visible)" if device.startswith("cuda") else " (auto: no GPU visible)"
    return f"device: {device}{why if requested in (None, 'auto') else ''}"


def auto_dtype(dtype: str | None, device: str) -> str:
    """``auto``/None -> ``bfloat16`` on a GPU, ``float32`` on the CPU; a name is returned as is."""
    if dtype in (None, "auto"):
        return "bfloat16" if str(device).startswith("cuda") else "float32"
    return dtype
