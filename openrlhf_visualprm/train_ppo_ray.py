"""``python -m openrlhf_visualprm.train_ppo_ray ARGS``: the launcher, also ``openrlhf-visualprm train``.

A drop-in for ``python -m openrlhf.cli.train_ppo_ray``: same flags (legacy flat names too), plus
the plugin's ``--reward.prm.*`` / ``--reward.judge.*`` / ``--reward.outcome.*`` /
``--reward.weights`` and ``--dry-run [--json]``. See :mod:`openrlhf_visualprm.plugin.launcher`.
"""

from __future__ import annotations

import argparse
import sys


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Take the command line verbatim: the launcher parses it itself (OpenRLHF's real parser + ours).

    argparse cannot collect unknown ``--flags`` into a positional (``REMAINDER`` refuses a
    leading option), so this subcommand's parser hands its input through untouched; ``--help``
    is the launcher's.
    """

    def pass_through(args=None, namespace=None):
        return argparse.Namespace(argv=list(sys.argv[2:] if args is None else args))

    parser.parse_args = pass_through


def run(args: argparse.Namespace) -> int:
    from openrlhf_visualprm.plugin.launcher import main as launcher_main

    return launcher_main(list(args.argv))


def main() -> int:
    from openrlhf_visualprm.plugin.launcher import main as launcher_main

    return launcher_main(sys.argv[1:])


if __name__ == "__main__":
    sys.exit(main())
