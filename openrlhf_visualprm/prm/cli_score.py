"""Subcommand module for ``score`` (see ``prm/cli.py``)."""

from openrlhf_visualprm.prm.cli import add_score_arguments as add_arguments  # noqa: F401
from openrlhf_visualprm.prm.cli import run_score as run  # noqa: F401
