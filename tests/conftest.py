"""Shared fixtures: tiny random models and the generated demo data, built once per test run.

The folder is not a package (no ``__init__.py``) and pytest runs in importlib mode: the openrlhf
wheel installs a top-level ``tests`` package that ours must not collide with.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

# Helper modules of the tests (CPU stand-ins) live in tests/support/, outside the package.
SUPPORT = Path(__file__).resolve().parent / "support"
if str(SUPPORT) not in sys.path:
    sys.path.insert(0, str(SUPPORT))

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


# The longest test files, run first: `make test` hands whole files to two pytest workers in this
# order (--dist loadfile --no-loadscope-reorder), so the e2e launches start at once on one worker
# and short files fill in at the end instead of one long file running alone.
LONGEST_FIRST = (
    "tests/e2e/",
    "tests/test_workers_pool.py",
    "tests/test_service_http.py",
    "tests/test_serve_loopback.py",
    "tests/test_plugin_ray.py",
)


# Marked `slow` here (one list, not markers scattered over files): the Ray-pool and service files
# and single tests over ~8 s on 2 cores (`--durations`). `make test-fast` leaves them and e2e out.
SLOW = (
    "tests/e2e/",
    "tests/test_workers_pool.py",
    "tests/test_service_http.py",
    "tests/test_serve_loopback.py",
    "tests/test_plugin_ray.py",
    "tests/test_gpu_check.py",
    "tests/test_prm_scorer.py::test_three_paths_agree",
    "tests/test_prm_scorer.py::test_bfloat16_paths_run_and_agree",
    "tests/test_prm_cli.py::test_demo_writes_report_with_prm_and_judge",
    "tests/test_failure_policy.py::test_same_image_sample_same_prm_scores_on_actor_reward_fn_and_http",
    "tests/test_workers_units.py::test_prm_worker_loads_the_configured_system_message",
    "tests/test_rewards_runtime.py::test_prm_batches_suffixes_of_several_groups_and_equals_per_group",
    "tests/test_judge_hf.py::test_batched_generation_matches_one_by_one",
)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    def rank(item: pytest.Item) -> int:
        return next((i for i, p in enumerate(LONGEST_FIRST) if item.nodeid.startswith(p)), len(LONGEST_FIRST))

    for item in items:
        if item.nodeid.startswith(SLOW):
            item.add_marker(pytest.mark.slow)
    items.sort(key=rank)  # stable: each file keeps its own order


def _cache_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    # OPENRLHF_VISUALPRM_TEST_CACHE lets a developer keep the tiny models between runs.
    env = os.environ.get("OPENRLHF_VISUALPRM_TEST_CACHE")
    return Path(env) if env else tmp_path_factory.getbasetemp() / "shared-cache"


@pytest.fixture(scope="session")
def ray_cluster():
    """The one Ray instance of the unit tests (``ray.init(num_cpus=2)``), shared by every module.

    Its workers get ``tests/support/`` on ``PYTHONPATH`` (scorer wrappers, CPU import stand-ins)
    and the stand-ins installed by the setup hook, so OpenRLHF's modules import on CPU. Modules
    that need something else per actor pass it to the actor (e.g. the reward plan). The e2e tests
    run their own ``ray start`` cluster: launches are separate processes joining it
    (``tests/e2e/conftest.py``).
    """
    import ray

    if ray.is_initialized():  # pragma: no cover - someone else's instance: do not reconfigure it
        yield
        return
    # `make test` runs two pytest workers, each with its own instance: OS-assigned worker ports,
    # not the shared default range 10002-19999 where one instance's driver can take another's port.
    os.environ.setdefault("RAY_USE_RANDOM_PORTS", "1")
    ray.init(
        num_cpus=2,
        include_dashboard=False,
        log_to_driver=False,
        runtime_env={
            "worker_process_setup_hook": "cpu_stubs.setup_worker_cpu",
            "env_vars": {
                "PYTHONPATH": os.pathsep.join(p for p in (str(SUPPORT), os.environ.get("PYTHONPATH")) if p),
                "HF_HUB_OFFLINE": "1",
                "TRANSFORMERS_OFFLINE": "1",
                "TOKENIZERS_PARALLELISM": "false",
            },
        },
    )
    yield
    ray.shutdown()


@pytest.fixture(scope="session")
def tiny_models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """``{"visualprm-tiny": Path, "judge-tiny": Path}``, built once per session."""
    from openrlhf_visualprm.tiny_models import make_tiny_models

    return make_tiny_models(_cache_root(tmp_path_factory) / "tiny-models")


@pytest.fixture(scope="session")
def tiny_prm_path(tiny_models) -> Path:
    return tiny_models["visualprm-tiny"]


@pytest.fixture(scope="session")
def tiny_judge_path(tiny_models) -> Path:
    return tiny_models["judge-tiny"]


@pytest.fixture(scope="session")
def demo_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Path of the generated ``demo.jsonl`` (images beside it under ``images/``)."""
    from openrlhf_visualprm.data.demo_data import make_demo_data

    return make_demo_data(_cache_root(tmp_path_factory) / "demo-data")
