"""Real-size forwards on a GPU (marker ``gpu``): skipped where no CUDA device is visible.

Written without a GPU to run them on (none was lent when they were added): they check that the
VisualPRM-8B-v1.1 architecture with random bf16 weights gives the same step scores on the shared
and the single (released) paths, and that batched and per-group scoring agree at that size.
"""

from __future__ import annotations

import importlib.util
import random
from pathlib import Path

import pytest
import torch

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU"),
]

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


def _benchmark(name: str):
    spec = importlib.util.spec_from_file_location(name, BENCHMARKS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def real_prm():
    return _benchmark("prm_throughput").build_real_architecture("cuda")


def test_real_size_prm_shared_path_equals_the_released_single_path(real_prm):
    bench = _benchmark("prm_throughput")
    image = bench.image_for_tiles(7)
    group = bench.make_group(4, steps=8, tokens_per_step=60, seed=0)
    shared = real_prm.score([image], "Find x.", group, method="shared")
    single = real_prm.score([image], "Find x.", group, method="single")
    for a, b in zip(shared, single):
        assert len(a.step_scores) == len(b.step_scores) == 8
        # bf16 on different kernels: agreement to a bf16-sized tolerance
        assert max(abs(x - y) for x, y in zip(a.step_scores, b.step_scores)) < 2e-2


def test_real_size_prm_groups_batched_equal_one_by_one(real_prm):
    bench = _benchmark("prm_throughput")
    rng = random.Random(0)
    groups = [
        ([bench.image_for_tiles(t)], f"Question {t}?", bench.make_group(3, 4, 40, rng.randrange(100)))
        for t in (1, 6)
    ]
    batched = real_prm.score_groups(groups)
    for (images, question, responses), got in zip(groups, batched):
        want = real_prm.score(images, question, responses, method="shared")
        for a, b in zip(got, want):
            assert max(abs(x - y) for x, y in zip(a.step_scores, b.step_scores)) < 2e-2
