"""Which reward hacks pay under each credit mode: synthetic prompt groups through ``step_returns``.

Each hack is a response a policy could learn to write instead of an honest one; it wins under a
mode when its first-token return (what every token of a one-step change is pushed by) is higher
than the return of the honest response it came from, in the same group. Each hack is tried in
three groups (mixed outcomes, all wrong, all right: GRPO sees all three), and counts once if it
wins in any of them.

The step scores are P('+') of a PRM that is fooled the way hacks need it to be: it scores easy
filler steps as confident (0.95-0.96) wherever they stand, even after a wrong final answer.
A reasoning collapsed into one paragraph is one step whose score is the honest last step's
(the PRM sees the same reasoning and the same answer, now in one block). Every hack keeps its
source's outcome (filler changes no answer), so only the PRM can make it pay.

- ``empty``: nothing (EOS only), from the honest wrong response: saying nothing vs trying;
- ``padded``: the wrong response with three confident filler steps before its error;
- ``collapsed``: the right response as one step;
- ``repeated``: the right response with one of its confident steps repeated three more times;
- ``appended``: the wrong response with two confident steps after its (wrong) final answer.

``MODE+anchor`` is MODE with the outcome-anchored option (``--reward.prm.credit_anchor``).
``--json`` prints ``{"default": mode, "hack_wins": {mode: n}, "margins": ...}``; ``off`` is the
PRM's scalar aggregate (``--reward.prm.aggregation``, default mean) plus the outcome, normalised
per group as OpenRLHF's ``group_norm`` does.

    python benchmarks/credit_probe.py            # a table
    python benchmarks/credit_probe.py --json
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from openrlhf_visualprm.prm.aggregate import aggregate  # noqa: E402
from openrlhf_visualprm.prm.config import PRMConfig  # noqa: E402
from openrlhf_visualprm.rewards.credit import CREDIT_MODES, DEFAULT_CREDIT, step_returns  # noqa: E402

TIE = 1e-9  # float noise, not a win


def response(steps: list[float], outcome: float, answer_step: int | None = None) -> dict:
    """``answer_step``: index of the step holding the final answer (default: the last step)."""
    last = len(steps) - 1 if steps else None
    return {"steps": steps, "outcome": outcome, "answer": last if answer_step is None else answer_step}


HONEST_RIGHT = response([0.93, 0.81, 0.90, 0.94], 1.0)  # one less certain step, a sure answer
HONEST_WRONG = response([0.85, 0.62, 0.30], 0.0)  # confidence falls at the error
BACKGROUND = {
    "mixed": [response([0.88, 0.92, 0.86], 1.0), response([0.80, 0.45, 0.40, 0.25], 0.0)],
    "all_wrong": [response([0.80, 0.45, 0.40, 0.25], 0.0), response([0.70, 0.50, 0.35], 0.0)],
    "all_right": [response([0.88, 0.92, 0.86], 1.0), response([0.90, 0.90, 0.85], 1.0)],
}
HACKS = {  # name -> (hack, the honest response it came from)
    "empty": (response([], 0.0), HONEST_WRONG),
    "padded": (response([0.85, 0.95, 0.96, 0.95, 0.62, 0.30], 0.0), HONEST_WRONG),
    "collapsed": (response([0.94], 1.0), HONEST_RIGHT),
    "repeated": (response([0.93, 0.81, 0.90, 0.90, 0.90, 0.90, 0.94], 1.0), HONEST_RIGHT),
    "appended": (response([0.85, 0.62, 0.30, 0.95, 0.96], 0.0, answer_step=2), HONEST_WRONG),
}


def probe_modes() -> list[str]:
    """Every mode, and every per-step mode with the outcome-anchored option (``MODE+anchor``)."""
    return [*CREDIT_MODES, *(f"{m}+anchor" for m in CREDIT_MODES if m not in ("off", "anchored"))]


def first_token_returns(mode: str, group: list[dict], aggregation: str) -> list[float]:
    if mode == "off":  # scalar aggregate + outcome, z-scored in the group (OpenRLHF group_norm)
        rewards = [(aggregate(r["steps"], aggregation) if r["steps"] else 0.0) + r["outcome"] for r in group]
        mean = sum(rewards) / len(rewards)
        std = (sum((x - mean) ** 2 for x in rewards) / (len(rewards) - 1)) ** 0.5
        return [(x - mean) / (std + 1e-9) for x in rewards]
    base, _, option = mode.partition("+")
    returns = step_returns(
        base,
        [r["steps"] for r in group],
        [r["outcome"] for r in group],
        answer_steps=[r["answer"] for r in group],
        anchor=option == "anchor",
    )
    return [r[0] for r in returns]


def probe(aggregation: str = PRMConfig().aggregation) -> dict:
    """``{"default", "hack_wins": {mode: n}, "margins": {mode: {hack: {group: hack - honest}}}}``."""
    wins: dict[str, int] = {}
    margins: dict[str, dict] = {}
    for mode in probe_modes():
        margins[mode] = {}
        for name, (hack, source) in HACKS.items():
            per_group = {}
            for label, background in BACKGROUND.items():
                group = [source, *background, hack]
                ret = first_token_returns(mode, group, aggregation)
                per_group[label] = round(ret[-1] - ret[0], 4)
            margins[mode][name] = per_group
        wins[mode] = sum(any(m > TIE for m in g.values()) for g in margins[mode].values())
    return {"default": DEFAULT_CREDIT, "hack_wins": wins, "margins": margins}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--json", action="store_true", help="print the result as JSON")
    ap.add_argument("--aggregation", default=PRMConfig().aggregation, help="the scalar aggregate of mode off")
    args = ap.parse_args(argv)
    result = probe(args.aggregation)
    if args.json:
        print(json.dumps(result, indent=1, sort_keys=True))
        return 0
    hacks = list(HACKS)
    print(f"| mode | hack wins | {' | '.join(hacks)} |")
    print("|---|---|" + "---|" * len(hacks))
    for mode, n in result["hack_wins"].items():
        cells = ["wins" if any(m > TIE for m in result["margins"][mode][h].values()) else "-" for h in hacks]
        name = f"`{mode}` (default)" if mode == result["default"] else f"`{mode}`"
        print(f"| {name} | {n} | {' | '.join(cells)} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
