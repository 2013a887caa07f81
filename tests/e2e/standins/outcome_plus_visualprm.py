"""``--reward.remote_url`` file for the stock e2e case: the project's ``reward_fns/outcome.py`` and
``reward_fns/visualprm.py``, loaded from their files the way OpenRLHF loads a reward file, called
on the same samples in one launch (OpenRLHF takes one reward file per run).

reward = outcome + visualprm; each file's own reward and logs are kept apart in ``extra_logs``
(``outcome.py/reward``, ``visualprm.py/reward/failed_group``, ...) so a test can check each one.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

REWARD_FNS = Path(__file__).resolve().parents[3] / "reward_fns"


def _load(name: str):
    spec = importlib.util.spec_from_file_location(f"reward_fns_{name}", REWARD_FNS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.reward_func


FILES = {"outcome.py": _load("outcome"), "visualprm.py": _load("visualprm")}


def reward_func(queries, prompts, labels, **kwargs):
    total, extra = None, {}
    for name, func in FILES.items():
        out = func(queries, prompts, labels, **kwargs)
        total = out["rewards"] if total is None else total + out["rewards"]
        extra[f"{name}/reward"] = out["rewards"]
        extra.update({f"{name}/{key}": value for key, value in out["extra_logs"].items()})
    return {"rewards": total, "scores": total.clone(), "extra_logs": extra}
