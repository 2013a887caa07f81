"""OpenRLHF's own bundled test suite still passes with the plugin's hooks installed.

The wheel installs its tests as a top-level ``tests`` package. They run in a subprocess (their
module stubs must not leak into ours) after the plugin installed exactly what the launcher and
the worker hook install: the driver's reward actor swap and the trainer's experience-maker swap.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import openrlhf

BUNDLED_TESTS = Path(openrlhf.__file__).resolve().parents[1] / "tests"

SCRIPT = r"""
import json, os, sys
import cpu_stubs  # tests/support/, on sys.path through tests/conftest.py
cpu_stubs.install()
from openrlhf_visualprm.plugin.plan import PLAN_ENV, PRMConfig, RewardPlan
plan = RewardPlan(prm=PRMConfig("visualprm", None, dense="diff"), weights={"prm": 1.0}, estimator="reinforce")
os.environ[PLAN_ENV] = plan.to_json()
from openrlhf_visualprm.plugin.worker_hook import install_driver_hooks, setup_worker
setup_worker()
install_driver_hooks(plan)
from openrlhf_visualprm.plugin.reward_actor import PluginRewardActor
import pytest
rc = pytest.main(["-q", "-p", "no:cacheprovider", "-o", "addopts=", "-W", "ignore::DeprecationWarning", sys.argv[1]])
import openrlhf.trainer.ppo_trainer as trainer, openrlhf.trainer.ray.launcher as launcher
print("PLUGIN-CHECK " + json.dumps({
    "rc": int(rc),
    "reward_actor_is_plugin": launcher.RewardModelActor is PluginRewardActor,
    "experience_maker": trainer.RemoteExperienceMaker.__module__ + "." + trainer.RemoteExperienceMaker.__name__,
}))
"""


def test_openrlhf_bundled_suite_passes_with_plugin_hooks(tmp_path):
    assert (BUNDLED_TESTS / "test_reward_shaping.py").is_file()
    support = str(Path(__file__).resolve().parent / "support")  # cpu_stubs, for the subprocess too
    pythonpath = os.pathsep.join(p for p in (support, os.environ.get("PYTHONPATH", "")) if p)
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONDONTWRITEBYTECODE": "1", "PYTHONPATH": pythonpath}
    proc = subprocess.run(
        [sys.executable, "-c", SCRIPT, str(BUNDLED_TESTS)],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    lines = [line for line in proc.stdout.splitlines() if line.startswith("PLUGIN-CHECK ")]
    assert lines, proc.stdout[-3000:] + proc.stderr[-3000:]
    check = json.loads(lines[-1].split(" ", 1)[1])
    summary = [line for line in proc.stdout.splitlines() if " passed" in line or " failed" in line]
    assert check["rc"] == 0, "\n".join(proc.stdout.splitlines()[-40:])
    assert summary and "failed" not in summary[-1] and "error" not in summary[-1], summary
    assert check["experience_maker"] == "openrlhf_visualprm.plugin.experience.PluginExperienceMaker"
    assert check["reward_actor_is_plugin"] is True
