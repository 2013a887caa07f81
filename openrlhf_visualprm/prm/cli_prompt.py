"""Subcommand module for ``prm-prompt`` (see ``prm/cli.py``)."""

from openrlhf_visualprm.prm.cli import add_prompt_arguments as add_arguments  # noqa: F401
from openrlhf_visualprm.prm.cli import run_prompt as run  # noqa: F401
