"""OpenRLHF's own argument parser and checks, run without starting anything.

``openrlhf.cli.train_ppo_ray`` builds its parser inline under ``if __name__ == "__main__":`` and
then validates the namespace with asserts before calling ``train(args)``; there is no function to
import. To check a command line against *the installed* OpenRLHF (not a copy that drifts), we
read that block from the installed file, and execute it with ``train`` replaced by a function
that captures the namespace. The module's top-level imports (Ray, vLLM, flash-attn) are not
executed, so this works on a machine without GPUs, vLLM or a compiled flash-attn.
"""

from __future__ import annotations

import argparse
import ast
import contextlib
import importlib.util
import io
import os
import sys
from datetime import datetime
from functools import lru_cache
from types import SimpleNamespace

from openrlhf_visualprm.errors import FlagError

MODULE = "openrlhf.cli.train_ppo_ray"


# OpenRLHF rejected the command line; ``flag`` names the offending flag when known.


class _Captured(Exception):
    def __init__(self, args: SimpleNamespace) -> None:
        super().__init__("train() reached")
        self.namespace = args


def _source_path() -> str:
    spec = importlib.util.find_spec(MODULE)
    if spec is None or not spec.origin:
        raise ImportError(f"{MODULE} is not installed: pip install 'openrlhf>=0.11.2,<0.12'")
    return spec.origin


def _is_main_guard(node: ast.stmt) -> bool:
    return (
        isinstance(node, ast.If)
        and isinstance(node.test, ast.Compare)
        and isinstance(node.test.left, ast.Name)
        and node.test.left.id == "__name__"
    )


@lru_cache(maxsize=1)
def _main_block() -> tuple:
    """Compile (parser-building statements, the rest up to and including ``train(args)``)."""
    path = _source_path()
    with open(path, encoding="utf-8") as f:
        tree = ast.parse(f.read(), filename=path)
    guards = [node for node in tree.body if _is_main_guard(node)]
    if len(guards) != 1:
        raise RuntimeError(f"{path}: expected one `if __name__ == '__main__':` block; OpenRLHF changed shape")
    body = guards[0].body
    split = next(
        (
            i
            for i, node in enumerate(body)
            if isinstance(node, ast.Assign)
            and isinstance(node.value, ast.Call)
            and getattr(node.value.func, "attr", None) == "parse_args"
        ),
        None,
    )
    if split is None:
        raise RuntimeError(f"{path}: no `args = parser.parse_args()` found; OpenRLHF changed shape")
    build = ast.Module(body=body[:split], type_ignores=[])
    rest = ast.Module(body=body[split:], type_ignores=[])
    return compile(build, path, "exec"), compile(rest, path, "exec")


def build_parser() -> argparse.ArgumentParser:
    """A fresh instance of OpenRLHF's real ``train_ppo_ray`` parser."""
    build, _ = _main_block()
    namespace = {"argparse": argparse, "datetime": datetime, "__name__": "__openrlhf_parser__"}
    exec(build, namespace)
    return namespace["parser"]


def option_strings(parser: argparse.ArgumentParser | None = None) -> set[str]:
    parser = parser or build_parser()
    return {opt for action in parser._actions for opt in action.option_strings}


def _unrecognized_flag(message: str) -> str | None:
    marker = "unrecognized arguments:"
    if marker in message:
        rest = message.split(marker, 1)[1].split()
        flags = [tok for tok in rest if tok.startswith("-")]
        return (flags or rest or [None])[0]
    for token in message.replace(":", " ").split():
        if token.startswith("--"):
            return token.split("/")[0]
    return None


@lru_cache(maxsize=1)
def _config_module():
    """``openrlhf/utils/config.py`` loaded on its own: importing ``openrlhf.utils`` would pull in
    torch, transformers and DeepSpeed (~4 s) only to get the 20-line ``hierarchize``."""
    path = os.path.join(os.path.dirname(os.path.dirname(_source_path())), "utils", "config.py")
    spec = importlib.util.spec_from_file_location("_openrlhf_utils_config", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@contextlib.contextmanager
def _light_config_import():
    name = "openrlhf.utils.config"
    if name in sys.modules:
        yield
        return
    sys.modules[name] = _config_module()
    try:
        yield
    finally:
        sys.modules.pop(name, None)


@contextlib.contextmanager
def _argv(argv: list[str]):
    saved = sys.argv
    sys.argv = ["train_ppo_ray", *argv]
    try:
        yield
    finally:
        sys.argv = saved


def parse_and_validate(argv: list[str]) -> SimpleNamespace:
    """Run OpenRLHF's parser and its post-parse checks; return the namespace ``train()`` would get.

    Raises :class:`FlagError` with OpenRLHF's message (and the flag, when it names one).
    """
    build, rest = _main_block()

    def capture(args):
        raise _Captured(args)

    namespace = {
        "argparse": argparse,
        "datetime": datetime,
        "__name__": "__openrlhf_parser__",
        "train": capture,
    }
    err = io.StringIO()
    out = io.StringIO()
    with (
        _argv(argv),
        _light_config_import(),
        contextlib.redirect_stderr(err),
        contextlib.redirect_stdout(out),
    ):
        try:
            exec(build, namespace)
            exec(rest, namespace)
        except _Captured as captured:
            return captured.namespace
        except SystemExit as exc:
            message = err.getvalue().strip().splitlines()
            text = message[-1] if message else f"argument parsing failed (exit {exc.code})"
            raise FlagError(f"OpenRLHF rejected the arguments: {text}", _unrecognized_flag(text)) from None
        except AssertionError as exc:
            raise FlagError(f"OpenRLHF rejected the combination: {exc}") from None
        except Exception as exc:  # OpenRLHF's checks crash on some inputs instead of asserting
            raise FlagError(f"OpenRLHF's argument checks failed with {type(exc).__name__}: {exc}") from None
    raise RuntimeError("OpenRLHF's main block finished without calling train(); OpenRLHF changed shape")
