"""The full path with the real tiny judge checkpoint through the HF backend, and the CLI.

The tiny judge has random weights: its outputs are gibberish, so the parse-failure fallback is
exercised and counted. Generation is kept to a few tokens to stay fast on CPU.
"""

from __future__ import annotations

import json

import pytest
from PIL import Image

from openrlhf_visualprm.judge import CHANCE, JudgeGroup, JudgeRequest, MRJudge, aggregate
from openrlhf_visualprm.judge.aggregate import Verdict
from openrlhf_visualprm.judge.template import render_user_text


@pytest.fixture(scope="module")
def tiny_judge(tiny_judge_path):
    return MRJudge.from_pretrained(
        str(tiny_judge_path), backend="hf", dtype="float32", max_new_tokens=6, batch_size=8, rounds=2, seed=0
    )


def test_full_path_with_the_tiny_judge_counts_failures(tiny_judge, demo_data):
    items = [json.loads(line) for line in demo_data.read_text().splitlines()[:2]]
    groups = [
        JudgeGroup(
            [str(demo_data.parent / it["image"])],
            it["question"],
            [c["response"] for c in it["candidates"]][:4],
        )
        for it in items
    ]
    tiny_judge.image_roots = [demo_data.parent]
    backend = tiny_judge.backend
    before = dict(backend.stats)
    results = tiny_judge.judge_groups(groups)
    n_calls = sum(len(r.calls) for r in results)
    assert backend.stats["batches"] - before["batches"] == 1  # all groups in one generate batch
    assert backend.stats["calls"] - before["calls"] == n_calls
    assert 0 < backend.stats["generated_tokens"] - before["generated_tokens"] <= 6 * n_calls
    for group, result in zip(groups, results, strict=True):
        n = len(group.responses)
        assert len(result.rewards) == n and len(result.calls) == 2 * -(-n // 4)  # rounds x ceil(n / k)
        failures = [c for c in result.calls if c.choice is None]
        assert result.stats["parse_failures"] == len(failures)
        assert result.stats["parse_failure_rate"] == pytest.approx(len(failures) / len(result.calls))
        assert all(c.failure and c.winner is None for c in failures)
        assert all(isinstance(c.raw_output, str) and c.prompt.startswith("Question:\n") for c in result.calls)
        verdicts = [
            Verdict(c.order, None if c.choice is None else c.labels.index(c.choice)) for c in result.calls
        ]
        assert result.rewards == aggregate("listwise", n, verdicts)
        if len(failures) == len(result.calls):
            assert result.rewards == [CHANCE] * n


def test_batched_generation_matches_one_by_one(tiny_judge):
    """Left padding and per-request images are right: batching does not change greedy outputs."""
    backend = tiny_judge.backend
    imgs = [Image.new("RGB", (64, 48), "white"), Image.new("RGB", (96, 96), "navy")]
    reqs = [
        JudgeRequest(
            images=[imgs[i % 2]],
            user_text=render_user_text("Q?" * (i + 1), ["a" * (5 * i + 1), "b"]),
            labels=("A", "B"),
        )
        for i in range(3)
    ]
    batched = backend.generate(reqs)
    assert batched == [backend.generate([r])[0] for r in reqs]
    letters = backend.choose_label(reqs, batched)
    assert all(letter in ("A", "B") for letter in letters)
    assert letters == backend.choose_label(reqs, batched)


def test_reask_through_the_hf_constrained_call(tiny_judge):
    tiny_judge.reask = True
    try:
        result = tiny_judge.judge_group(
            [Image.new("RGB", (40, 40), "red")], "Which is right?", ["yes", "no", "maybe"]
        )
    finally:
        tiny_judge.reask = False
    assert result.stats["parse_failures"] == 0  # every failed call got a constrained letter
    assert result.stats["reasked"] == sum(c.reasked for c in result.calls) > 0
    assert all(c.choice in c.labels and c.winner == c.order[c.labels.index(c.choice)] for c in result.calls)
    # with every call decided, each appearance is worth 1 or 1/4 (set of 3): never exactly chance
    assert CHANCE not in result.rewards


def test_cli_judge_json_and_show_calls(tiny_judge_path, tmp_path, capsys):
    from openrlhf_visualprm.cli import main

    img = tmp_path / "fig.png"
    Image.new("RGB", (50, 40), "white").save(img)
    responses = tmp_path / "r.jsonl"
    responses.write_text('"It is 4."\n{"response": "It is 5 <answer>A</answer>"}\n\n"four"\n')
    common = [
        "judge",
        "--model",
        str(tiny_judge_path),
        "--image",
        str(img),
        "--question",
        "2+2?",
        "--responses",
        str(responses),
        "--max-new-tokens",
        "3",
        "--rounds",
        "1",
        "--device",
        "cpu",
        "--dtype",
        "float32",
    ]
    assert main(common + ["--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert len(data["rewards"]) == 3 and data["stats"]["n_calls"] == 1
    assert "‹answer›A‹/answer›" in data["calls"][0]["prompt"]
    assert main(common + ["--show-calls"]) == 0
    out = capsys.readouterr().out
    assert "=== call 0" in out and "--- raw output ---" in out and "reward=" in out


def test_cli_errors_name_the_bad_input(tmp_path, capsys):
    from openrlhf_visualprm.cli import main

    bad = tmp_path / "bad.jsonl"
    bad.write_text('"ok"\n{"text": 3}\n')
    assert main(["judge", "--model", str(tmp_path), "--question", "q", "--responses", str(bad)]) == 2
    assert "bad.jsonl:2" in capsys.readouterr().err
    assert main(["judge", "--question", "q", "--responses", str(tmp_path / "missing.jsonl")]) == 2
    assert "does not exist" in capsys.readouterr().err


def test_constrained_letter_scores_the_tokens_the_judge_would_emit(tiny_judge):
    """Qwen's BPE merges '>A' into one token: the forced prompt stops before it and scores '>A'..'>D'."""
    backend = tiny_judge.backend
    prefix, ids = backend.label_continuations(("A", "B", "C", "D"))
    assert prefix == "\n</think>\n<answer"
    assert [backend.tokenizer.decode([i]) for i in ids] == [">A", ">B", ">C", ">D"]


def test_image_feature_cache_gives_identical_inputs(tiny_judge_path):
    """Each distinct image is preprocessed once per batch, with exactly the processor's tensors."""
    import torch
    from transformers import AutoProcessor

    from openrlhf_visualprm.judge.backends import _ImageFeatureCache

    plain, cached = (AutoProcessor.from_pretrained(str(tiny_judge_path)) for _ in range(2))
    cached.image_processor = _ImageFeatureCache(cached.image_processor)
    calls = []

    class Counting:
        def __init__(self, inner):
            self.inner = inner

        def __getattr__(self, name):
            return getattr(self.inner, name)

        def __call__(self, images, **kwargs):
            calls.append(len(images))
            return self.inner(images, **kwargs)

    cached.image_processor._inner = Counting(cached.image_processor._inner)
    imgs = [Image.new("RGB", (64, 48), "white"), Image.new("RGB", (120, 90), "navy")]
    order = [imgs[0], imgs[1], imgs[0], imgs[0], imgs[1]]
    texts = [f"<|vision_start|><|image_pad|><|vision_end|>call {i}" for i in range(len(order))]
    a = plain(text=texts, images=order, padding=True, return_tensors="pt")
    b = cached(text=texts, images=order, padding=True, return_tensors="pt")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert calls == [1, 1]  # two distinct images, one preprocessing each
