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

from openrlhf_visualprm.images import DEFAULT_MAX_TILES
from openrlhf_visualprm.prm.template import add_system_message_argument


def add_load_arguments(parser: argparse.ArgumentParser, tiles: bool = True) -> None:
    """``--device``, ``--dtype``, ``--system-message`` and (with ``tiles``) ``--max-tiles``."""
    parser.add_argument(
        "--device",
        default="auto",
        help="torch device: auto (cuda when a GPU is visible, else cpu), cpu, cuda[:N]",
    )
    parser.add_argument(
        "--dtype",
        default="auto",
        help="auto (bfloat16 on a GPU, float32 on the CPU) | float32 | bfloat16 | float16",
    )
    if tiles:
        parser.add_argument(
            "--max-tiles",
            type=int,
            default=DEFAULT_MAX_TILES,
            help=f"InternVL tiles per image (default {DEFAULT_MAX_TILES}, the model card's)",
        )
    add_system_message_argument(parser)


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
