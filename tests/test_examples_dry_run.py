"""Every example script's ``--dry-run`` passes on a CPU machine and plans what its header says."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
TRAIN_EXPECTED = {
    "grpo_visualprm_outcome.sh": {"components": ["prm", "outcome"], "estimator": "group_norm", "dense": True},
    "grpo_process_visualprm.sh": {"components": ["prm", "outcome"], "estimator": "group_norm", "dense": True},
    "reinforce_pp_dense_visualprm.sh": {"components": ["prm", "outcome"], "estimator": "reinforce_baseline",
                                        "dense": True},
    "grpo_mr_judge_listwise.sh": {"components": ["judge"], "estimator": "group_norm", "dense": False},
}  # fmt: skip


@pytest.fixture(scope="module", autouse=True)
def example_data(tmp_path_factory):
    """DATA / IMAGE_ROOT as the headers describe them (a dry run that would refuse exits 2)."""
    root = tmp_path_factory.mktemp("geo3k")
    (root / "train").mkdir()
    row = {
        "prompt": "<image>Find x.",
        "images": [str(root / "train" / "0001.png")],
        "label": {"answer": "12"},
    }
    (root / "train.jsonl").write_text(json.dumps(row) + "\n")
    os.environ["DATA"], os.environ["IMAGE_ROOT"] = str(root / "train.jsonl"), str(root)
    yield root
    del os.environ["DATA"], os.environ["IMAGE_ROOT"]


def _run(script: str, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHON": sys.executable, "HF_HUB_OFFLINE": "1"}
    return subprocess.run(
        ["bash", str(EXAMPLES / script), *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=180,
        cwd=EXAMPLES.parent,
    )


def test_every_example_is_covered():
    assert sorted(p.name for p in EXAMPLES.glob("*.sh")) == sorted([*TRAIN_EXPECTED, "best_of_n_eval.sh"])


@pytest.mark.parametrize("script", sorted(TRAIN_EXPECTED))
def test_training_example_dry_run(script):
    proc = _run(script, "--dry-run", "--json")
    assert proc.returncode == 0, proc.stderr[-2000:]
    out = json.loads(proc.stdout)
    expected = TRAIN_EXPECTED[script]
    plan = out["reward_plan"]
    assert plan["components"] == expected["components"]
    assert plan["estimator"] == expected["estimator"] and plan["dense_active"] is expected["dense"]
    assert out["gpu_plan"]["total_gpus"] == 8  # the layout each header explains: one node of 8 GPUs
    assert out["would_refuse"] == []
    argv = out["openrlhf_argv"]
    assert out["renamed_flags"] == []  # the examples use OpenRLHF 0.11's own names, as the README does
    assert "--data.max_images_per_prompt" in argv and not any(a.startswith("--reward.prm") for a in argv)


def test_training_example_passes_extra_flags_through_and_rejects_typos():
    proc = _run("grpo_visualprm_outcome.sh", "--dry-run", "--json", "--reward.prm.aggregation", "softmin")
    assert proc.returncode == 0 and json.loads(proc.stdout)["reward_plan"]["prm"]["aggregation"] == "softmin"
    proc = _run("grpo_visualprm_outcome.sh", "--dry-run", "--rollout.batchsize", "8")
    assert proc.returncode == 2 and "--rollout.batchsize" in proc.stderr


def test_best_of_n_dry_run_checks_arguments_against_eval_bon():
    proc = _run("best_of_n_eval.sh", "--dry-run")
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "eval-bon arguments OK: prm=visualprm judge=mr-judge" in proc.stdout
    proc = _run("best_of_n_eval.sh", "--dry-run", "--no-such-flag")
    assert proc.returncode != 0 and "--no-such-flag" in proc.stderr
