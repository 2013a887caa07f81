"""`make gpu-check` proven on CPU: every stage of the prepared GPU run starts and yields figures.

No GPU has been lent in three rounds; when one is, the run must not die on a typo. The tiny run
uses the same stage list, argument plumbing and JSON writing as the GPU run.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def test_gpu_check_tiny_runs_every_stage_and_writes_figures(tmp_path):
    out = tmp_path / "gpu-check.json"
    proc = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "gpu_check.py"), "--tiny", "--out", str(out)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert out.exists(), proc.stdout + proc.stderr
    report = json.loads(out.read_text())
    stages = report["stages"]
    assert set(stages) == {
        "gpu_tests",
        "prm_throughput",
        "judge_throughput",
        "reward_step",
        "credit",
        "pool_overhead",
    }
    for name, row in stages.items():
        assert row["status"] == "passed", (name, row)
    assert proc.returncode == 0, proc.stdout[-3000:]
    # On CPU the gpu tests are collected and skipped (not "no tests ran").
    assert "skipped" in stages["gpu_tests"]["summary"]
    methods = {r["method"]: r for r in stages["prm_throughput"]["figures"]}
    assert set(methods) == {"per-step", "single", "shared"}
    assert all(r["responses_per_s"] > 0 for r in methods.values())
    assert max(r["max_diff_vs_first"] for r in methods.values()) < 1e-4  # fp32: the paths agree
    assert stages["judge_throughput"]["figures"]["rows"][0]["calls"] >= 1
    assert stages["reward_step"]["figures"]["responses_per_s"] > 0
    credit = stages["credit"]["figures"]
    assert credit["probe"]["hack_wins"][credit["probe"]["default"]] == 0
    from openrlhf_visualprm.prm.aggregate import CREDIT_MODES

    assert set(credit["step_returns_s_per_rl_step"]) == set(CREDIT_MODES) - {"off"}
    assert stages["pool_overhead"]["figures"]["pool_median_s"] > 0


def _has_cuda() -> bool:
    import torch

    return torch.cuda.is_available()


@pytest.mark.skipif(_has_cuda(), reason="checks the refusal on a machine without CUDA")
def test_gpu_check_refuses_without_a_gpu_and_names_the_tiny_mode(tmp_path):
    proc = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "gpu_check.py"), "--out", str(tmp_path / "x.json")],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 2
    assert "--tiny" in proc.stderr and "no CUDA device" in proc.stderr
