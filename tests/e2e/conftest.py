"""Session fixtures of the end-to-end tests: one local Ray cluster with logical GPUs, the tiny
models, the demo data and the prompts built from it, shared by every launch.

The cluster runs from its own folder (``cluster-cwd``), so a path that a Ray worker resolves in
its working directory instead of the launcher's does not find the data by accident.
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))  # e2e_harness (tests/ is not a package)

from e2e_harness import RayCluster, python_path  # noqa: E402


@dataclass(frozen=True)
class E2EWork:
    root: Path  # the launcher's working directory in every case
    demo: Path  # demo.jsonl and images/ (copied under root)
    prompts: Path  # convert-data math output: absolute image paths
    policy: Path  # judge-tiny: a Qwen2.5-VL with its processor
    prm: Path
    judge: Path
    cluster_cwd: Path


@pytest.fixture(scope="session")
def e2e_work(tmp_path_factory, tiny_models, demo_data) -> E2EWork:
    from openrlhf_visualprm import cli

    root = tmp_path_factory.mktemp("e2e")
    demo = root / "demo"
    shutil.copytree(demo_data.parent, demo)
    prompts = root / "data" / "prompts.jsonl"
    rc = cli.main(
        [
            "convert-data",
            "math",
            "--input",
            str(demo / "demo.jsonl"),
            "--dataset",
            "mathvista",
            "--image-root",
            str(demo),
            "--out",
            str(prompts),
        ]
    )
    assert rc == 0 and prompts.exists()
    cluster_cwd = root / "cluster-cwd"
    cluster_cwd.mkdir()
    return E2EWork(
        root=root,
        demo=demo,
        prompts=prompts,
        policy=tiny_models["judge-tiny"],
        prm=tiny_models["visualprm-tiny"],
        judge=tiny_models["judge-tiny"],
        cluster_cwd=cluster_cwd,
    )


@pytest.fixture(scope="session")
def ray_cluster(e2e_work: E2EWork):
    """``ray start --head --num-cpus=8 --num-gpus=4`` in a private temp dir; stopped at the end."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_")}
    env.update(
        PYTHONPATH=python_path(),
        E2E_RESPONSE_BANK=str(e2e_work.demo / "demo.jsonl"),
        HF_HUB_OFFLINE="1",
        TRANSFORMERS_OFFLINE="1",
        TOKENIZERS_PARALLELISM="false",
        RAY_DEDUP_LOGS="0",
        RAY_USAGE_STATS_ENABLED="0",
        RAY_prestart_worker_first_driver="0",  # no idle workers: every launch has its own runtime_env
    )
    # Short: Ray puts Unix sockets under it (107-character limit).
    temp_dir = Path(tempfile.mkdtemp(prefix="rayE2E-", dir="/tmp"))
    cluster = RayCluster(temp_dir, e2e_work.cluster_cwd, env, log_path=e2e_work.root / "ray-start.log")
    cluster.start()
    try:
        yield cluster
    finally:
        cluster.stop()
        shutil.rmtree(temp_dir, ignore_errors=True)


@pytest.fixture(scope="session")
def direct_prm(e2e_work: E2EWork):
    """The tiny VisualPRM loaded in this process, fp32 on CPU: the oracle for PRM rewards."""
    from openrlhf_visualprm.prm.scorer import VisualPRM

    return VisualPRM.from_pretrained(str(e2e_work.prm), device="cpu", dtype="float32")


@pytest.fixture(scope="session")
def policy_tokenizer(e2e_work: E2EWork):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(e2e_work.policy))
