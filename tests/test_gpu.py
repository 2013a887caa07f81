"""Real-size forwards on a GPU (marker ``gpu``): skipped where no CUDA device is visible.

Written without a GPU to run them on (none was lent when they were added): they check that the
VisualPRM-8B-v1.1 architecture with random bf16 weights gives the same step scores on the shared
and the single (released) paths, and that batched and per-group scoring agree at that size; that
the Qwen2.5-VL-7B judge architecture (MR. Judge's base) with random weights runs a batched judging
round and its constrained label call; and, where vLLM is installed and a judge checkpoint is named
by ``OPENRLHF_VISUALPRM_JUDGE_MODEL``, that the vLLM backend judges a group.
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
    batched = real_prm.score_many(groups)
    for (images, question, responses), got in zip(groups, batched):
        want = real_prm.score(images, question, responses, method="shared")
        for a, b in zip(got, want):
            assert max(abs(x - y) for x, y in zip(a.step_scores, b.step_scores)) < 2e-2


@pytest.fixture(scope="module")
def real_judge_backend(tmp_path_factory):
    from openrlhf_visualprm.judge import HFBackend

    model, processor = _benchmark("judge_throughput").build_7b_hf(tmp_path_factory.mktemp("judge-7b"), "cuda")
    return HFBackend(model, processor, model_id="qwen2.5-vl-7b-random", max_new_tokens=16, batch_size=8)


def _judge_groups():
    from PIL import Image

    from openrlhf_visualprm.judge import JudgeGroup

    return [
        JudgeGroup(
            [Image.new("RGB", size, color)], f"Find x ({color}).", [f"Step 1.\n\nx = {i}." for i in range(4)]
        )
        for size, color in (((448, 448), "white"), ((896, 448), "navy"))
    ]


def test_real_size_judge_runs_a_batched_round(real_judge_backend):
    """Random weights never write a verdict: the round must still run batched and give each
    response the neutral-or-better reward the failure policy defines, one per response."""
    from openrlhf_visualprm.judge import MRJudge

    judge = MRJudge(real_judge_backend, schedule="listwise", k=4, rounds=2)
    results = judge.judge_groups(_judge_groups())
    assert [len(r.rewards) for r in results] == [4, 4]
    assert all(0.0 <= x <= 1.0 for r in results for x in r.rewards)
    assert real_judge_backend.stats["batches"] >= 1 and real_judge_backend.stats["calls"] >= 4


def test_real_size_judge_constrained_call_always_gives_an_allowed_label(real_judge_backend):
    from openrlhf_visualprm.judge.template import JudgeRequest

    requests = [
        JudgeRequest(images=g.images, user_text=g.question, labels=("A", "B", "C", "D"))
        for g in _judge_groups()
    ]
    labels = real_judge_backend.choose_label(requests, ["<think>compared</think>\n<answer>"] * len(requests))
    assert [label in r.labels for label, r in zip(labels, requests)] == [True, True]


def test_vllm_judge_backend_judges_a_group():
    pytest.importorskip("vllm")
    from openrlhf_visualprm import envs

    path = envs.get("OPENRLHF_VISUALPRM_JUDGE_MODEL")
    if not path or not Path(path).is_dir():
        pytest.skip("set OPENRLHF_VISUALPRM_JUDGE_MODEL to a local judge checkpoint folder")
    from openrlhf_visualprm.judge import MRJudge

    judge = MRJudge.from_pretrained(path, backend="vllm", max_new_tokens=256, schedule="listwise", rounds=1)
    (result,) = judge.judge_groups(_judge_groups()[:1])
    assert len(result.rewards) == 4 and all(0.0 <= x <= 1.0 for x in result.rewards)
