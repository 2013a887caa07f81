"""Lazy package exports (PEP 562): ``__getattr__ = lazy_exports(__name__, {"Name": "submodule"})``.

Package ``__init__``s name their public API without importing the submodules behind it (and the
torch or Ray those load) until a name is used, so ``--help`` and the torch-free modules stay light.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from typing import Any


def lazy_exports(package: str, exports: Mapping[str, str]) -> Callable[[str], Any]:
    """A module ``__getattr__`` that imports ``package.<exports[name]>`` when ``name`` is first used."""

    def __getattr__(name: str) -> Any:
        if name not in exports:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        return getattr(importlib.import_module(f"{package}.{exports[name]}"), name)

    return __getattr__
