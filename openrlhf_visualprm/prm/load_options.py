"""The options of every command that loads a VisualPRM, and the one loader those commands call.

``score``, ``check-model``, ``eval-prm`` and ``eval-bon`` load the same model the same way: one
definition of ``--device``, ``--dtype``, ``--max-tiles`` and ``--system-message`` (so a flag means
the same in each command) and one loader that reports which system message was chosen. The
training routes load through :func:`openrlhf_visualprm.rewards.components.load_prm_component`
from a :class:`~openrlhf_visualprm.prm.config.PRMConfig` instead. Torch-free until a model loads.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from openrlhf_visualprm.config_fields import add_flags
from openrlhf_visualprm.prm.config import LOAD_FIELDS, PRMConfig
from openrlhf_visualprm.torch_names import add_device_arguments


def add_load_arguments(parser: argparse.ArgumentParser, tiles: bool = True) -> None:
    """``--device`` and the PRMConfig load fields as flags: ``--dtype``, ``--system-message`` and
    (with ``tiles``) ``--max-tiles``, their defaults and help the config's."""
    add_device_arguments(parser, dtype=False)
    add_flags(parser, PRMConfig, only=[f for f in LOAD_FIELDS if tiles or f != "max_tiles"])


def load_prm(model: str, args: argparse.Namespace, image_roots: Any = None):
    """The VisualPRM ``model`` names, loaded with the options of :func:`add_load_arguments`; says
    on stderr which device and system message it uses (the latter changes every score)."""
    from openrlhf_visualprm.prm.scorer import VisualPRM
    from openrlhf_visualprm.torch_names import auto_dtype, cli_device, describe_device

    device = cli_device(args.device)
    print(describe_device(args.device, device), file=sys.stderr)
    prm = VisualPRM.from_pretrained(
        model,
        device=device,
        dtype=auto_dtype(args.dtype, device),
        max_tiles=args.max_tiles,
        system_message=args.system_message,
        image_roots=image_roots,
    )
    print(prm.describe_system_message(), file=sys.stderr)
    return prm
