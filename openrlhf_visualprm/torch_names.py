"""Dtype and device names -> torch objects: the one table every loader (PRM, judge, workers) reads.

Bottom layer: torch is imported only when a name is turned into a torch object, so configs and
``--help`` can validate or show a name without loading torch.
"""

from __future__ import annotations

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


def resolve_device(requested: str | None = "auto") -> str:
    """``auto``/None -> ``cuda`` when a GPU is visible, else ``cpu``; anything else is returned as is."""
    if requested not in (None, "auto"):
        return str(requested)
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"
