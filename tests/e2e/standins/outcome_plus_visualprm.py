"""``--reward.remote_url`` file for the stock e2e case: the project's ``reward_fns/outcome.py`` and
``reward_fns/visualprm.py``, loaded from their files the way OpenRLHF loads a reward file, called
on the same samples in one launch (OpenRLHF takes one reward file per run).

reward = outcome + visualprm; each file's own reward and logs are kept apart in ``extra_logs``
(``outcome.py/reward``, ``visualprm.py/reward/failed_group``, ...) so a test can check each one.

Fault injection (``E2E_ONE_BAD_SAMPLE_PER_GROUP=1``): the first sample of each prompt this process
sees gets a label with no answer and an image outside the roots, a bad sample for both files, so
every micro-batch mixes bad and good samples (OpenRLHF calls the file in threads of one process).
"""

from __future__ import annotations

import importlib.util
import json
import os
import threading
from pathlib import Path

REWARD_FNS = Path(__file__).resolve().parents[3] / "reward_fns"


def _load(name: str):
    spec = importlib.util.spec_from_file_location(f"reward_fns_{name}", REWARD_FNS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.reward_func


FILES = {"outcome.py": _load("outcome"), "visualprm.py": _load("visualprm")}
BAD_LABEL = json.dumps({"images": ["/nonexistent-e2e-root/outside.png"], "id": "bad"})
_seen: set[str] = set()
_lock = threading.Lock()


def _inject_faults(prompts: list, labels: list) -> list:
    if os.environ.get("E2E_ONE_BAD_SAMPLE_PER_GROUP") != "1":
        return labels
    out = []
    with _lock:
        for prompt, label in zip(prompts, labels):
            first = prompt not in _seen
            _seen.add(prompt)
            out.append(BAD_LABEL if first else label)
    return out


def reward_func(queries, prompts, labels, **kwargs):
    labels = _inject_faults(prompts, labels)
    total, extra = None, {}
    for name, func in FILES.items():
        out = func(queries, prompts, labels, **kwargs)
        total = out["rewards"] if total is None else total + out["rewards"]
        extra[f"{name}/reward"] = out["rewards"]
        extra.update({f"{name}/{key}": value for key, value in out["extra_logs"].items()})
    return {"rewards": total, "scores": total.clone(), "extra_logs": extra}
