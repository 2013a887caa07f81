"""The README's generated tables: the plugin flags and the environment variables.

Both come from the config types' fields (config_fields): the flags through the launcher's parser,
the variables through :mod:`openrlhf_visualprm.envs`. ``python -m
openrlhf_visualprm.plugin.readme_tables`` (``make readme-tables``) rewrites them between their
markers; ``--check`` only compares and exits 1 on a difference (a test runs the comparison).
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

README = Path(__file__).resolve().parents[2] / "README.md"


def tables() -> dict[str, str]:
    """Marker name -> the table text."""
    from openrlhf_visualprm import envs
    from openrlhf_visualprm.plugin.options import markdown_table
    from openrlhf_visualprm.workers.reward_func import env_configs

    return {"plugin flags": markdown_table(), "environment variables": envs.markdown_table(env_configs())}


def _block(name: str) -> re.Pattern[str]:
    return re.compile(
        rf"(<!-- generated: {re.escape(name)} [^\n]*-->\n)(.*?)(<!-- end generated: {re.escape(name)} -->)",
        re.S,
    )


def render(text: str) -> str:
    """``text`` (the README) with every generated table replaced by its current version."""
    for name, table in tables().items():
        pattern = _block(name)
        if not pattern.search(text):
            raise ValueError(f"README has no '<!-- generated: {name} ... -->' block")
        text = pattern.sub(lambda m, t=table: m.group(1) + t + "\n" + m.group(3), text)
    return text


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m openrlhf_visualprm.plugin.readme_tables", description=__doc__
    )
    parser.add_argument("--check", action="store_true", help="compare only; exit 1 when the README differs")
    parser.add_argument(
        "--readme", type=Path, default=README, help="the file (default: the repo's README.md)"
    )
    args = parser.parse_args(argv)
    text = args.readme.read_text(encoding="utf-8")
    new = render(text)
    if args.check:
        if new != text:
            print(f"{args.readme}: generated tables are stale; run make readme-tables", file=sys.stderr)
            return 1
        return 0
    if new != text:
        args.readme.write_text(new, encoding="utf-8")
        print(f"{args.readme}: tables rewritten")
    return 0


if __name__ == "__main__":
    sys.exit(main())
