"""Worker pieces without Ray: OOM splitting, cache, request validation, protocol parsing, metrics."""

from __future__ import annotations

import base64
import io
import json

import pytest
from PIL import Image
from scorer_wrappers import FaultInjectingScorer  # tests/support/

from openrlhf_visualprm.errors import InputError
from openrlhf_visualprm.images import ImageRoots
from openrlhf_visualprm.labels import extract_response
from openrlhf_visualprm.workers.cache import ResultCache, make_key
from openrlhf_visualprm.workers.config import PoolConfig, WorkerConfig
from openrlhf_visualprm.workers.errors import BadRequestError, RequestTooLargeError
from openrlhf_visualprm.workers.groups import ScoreGroup, prepare_group
from openrlhf_visualprm.workers.metrics import Histogram, PromText
from openrlhf_visualprm.workers.protocol import openrlhf_groups, openrlhf_reply
from openrlhf_visualprm.workers.worker import PRMWorkerImpl


class EchoScorer:
    """Scores a response by its length, so splitting can be checked against unsplit scoring."""

    model_id = "echo"
    splittable = True

    def __init__(self) -> None:
        self.calls: list[int] = []

    def score_group(self, group: ScoreGroup) -> list[dict]:
        self.calls.append(group.n_responses)
        return [
            {
                "steps": [r],
                "spans": [[0, len(r)]],
                "step_scores": [len(r) / 100],
                "score": len(r) / 100,
                "truncated": False,
                "note": None,
            }
            for r in group.responses
        ]


def _group(responses: list[str], question: str = "q?") -> ScoreGroup:
    img = Image.new("RGB", (8, 8), "white")
    return prepare_group({"images": [img], "question": question, "responses": responses}, ImageRoots())


def test_oom_splits_group_and_keeps_order_and_values():
    inner = EchoScorer()
    scorer = FaultInjectingScorer(inner, oom_above_responses=2)
    worker = PRMWorkerImpl(WorkerConfig(model="unused", num_gpus=0), scorer=scorer)
    responses = ["a", "bbbb", "cc", "dddddd", "eee"]
    out = worker.score_batch([_group(responses), _group(["x" * 7])])
    assert [r["score"] for r in out[0]["results"]] == [len(r) / 100 for r in responses]
    assert out[1]["results"][0]["score"] == 0.07
    assert scorer.injected_ooms >= 2 and worker.counters["oom_splits"] >= 2
    assert max(inner.calls) <= 2  # every call that reached the model fit under the limit


def test_oom_on_single_response_is_a_clear_per_group_error():
    scorer = FaultInjectingScorer(EchoScorer(), oom_above_responses=0)
    worker = PRMWorkerImpl(WorkerConfig(model="unused", num_gpus=0), scorer=scorer)
    out = worker.score_batch([_group(["only one"])])
    assert "error" in out[0] and "out of memory scoring one response" in out[0]["error"]


def test_cache_is_bounded_lru_and_counts():
    cache = ResultCache(2)
    k = [make_key("m", ("h",), "q", f"r{i}", "{}") for i in range(3)]
    assert cache.get(k[0]) is None
    cache.put(k[0], {"score": 0.1})
    cache.put(k[1], {"score": 0.2})
    assert cache.get(k[0]) == {"score": 0.1}  # k0 becomes most recent
    cache.put(k[2], {"score": 0.3})  # evicts k1
    assert cache.get(k[1]) is None and cache.get(k[2]) == {"score": 0.3}
    got = cache.get(k[0])
    got["score"] = 9  # a caller mutating its copy must not change the cache
    assert cache.get(k[0]) == {"score": 0.1}
    assert cache.stats() == {"entries": 2, "max_entries": 2, "hits": 4, "misses": 2, "evictions": 1}


def test_prepare_group_rejects_bad_input_with_named_fields(tmp_path):
    roots = ImageRoots.of([tmp_path])
    Image.new("RGB", (4, 4)).save(tmp_path / "ok.png")
    good = prepare_group({"image": "ok.png", "question": "q", "responses": ["a"]}, roots)
    assert good.config == {
        "method": "shared",
        "aggregation": "mean",
        "max_steps": None,
        "splitter": "\n\n",
        "temperature": 0.1,
    }
    cases = [
        ({"question": "q", "responses": ["a"]}, "has no image"),
        ({"image": "ok.png", "responses": ["a"]}, "question"),
        ({"image": "ok.png", "question": "q"}, "exactly one of"),
        ({"image": "ok.png", "question": "q", "responses": [1]}, "responses must be a list of strings"),
        ({"image": "missing.png", "question": "q", "responses": ["a"]}, "not found"),
        (
            {"image": "../../etc/passwd", "question": "q", "responses": ["a"]},
            "outside the allowed image roots",
        ),
        ({"image": "ok.png", "question": "q", "responses": ["a"], "config": {"agg": "min"}}, "unknown keys"),
        ({"image": "ok.png", "question": "q", "responses": ["a"], "config": {"method": "x"}}, "method"),
    ]
    for raw, needle in cases:
        with pytest.raises(BadRequestError, match=needle):
            prepare_group(raw, roots, where="groups[3]")
    with pytest.raises(RequestTooLargeError, match="over the limit"):
        prepare_group({"image": b"x" * 100, "question": "q", "responses": ["a"]}, roots, max_image_bytes=50)


def test_openrlhf_payload_groups_samples_and_strips_prompt():
    buf = io.BytesIO()
    Image.new("RGB", (4, 4)).save(buf, format="PNG")
    uri = "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()
    prompt = "<|im_start|>user\nWhat?<|im_end|>\n<|im_start|>assistant\n"
    payload = {
        "query": [prompt + "step A\n\nstep B<|im_end|>", prompt + "other<|endoftext|>", "P2 resp"],
        "prompts": [prompt, prompt, "P2 "],
        "labels": [
            {"image": uri, "question": "What?"},
            json.dumps({"image": uri, "question": "What?"}),
            {"images": ["x.png"]},
        ],
    }
    groups, where_of, failed = openrlhf_groups(payload, 10_000)
    assert len(groups) == 2 and groups[0]["responses"] == ["step A\n\nstep B", "other"]
    assert groups[1]["question"] == "P2" and groups[1]["responses"] == ["resp"]
    assert where_of == [(0, 0), (0, 1), (1, 0)] and failed == {}
    reply = openrlhf_reply(
        [
            [{"score": 0.5, "step_scores": [0.9, 0.1]}, {"score": 0.2, "step_scores": [0.2]}],
            [{"score": 0.7, "step_scores": [0.7]}],
        ],
        where_of,
    )
    assert reply["rewards"] == [0.5, 0.2, 0.7] and reply["extra_logs"]["prm_min_step"] == [0.1, 0.2, 0.7]
    assert reply["extra_logs"]["reward_fn/failed"] == [0.0, 0.0, 0.0]
    # bad samples get the neutral reward and are counted; the request itself is fine
    bad = {
        "query": ["pq", "pq", "abc", "pq"],
        "prompts": ["p", "p", "zzz", "p"],
        "labels": ["plain text", {"image": uri}, {"image": "x.png"}, {"image": "https://example.com/a.png"}],
    }
    groups, where_of, failed = openrlhf_groups(bad, 10)
    assert groups == [] and where_of == [None] * 4
    assert [failed[i].split(":")[0] for i in range(4)] == [
        "no_image",
        "too_large",
        "query_without_prompt",
        "image_url",
    ]
    reply = openrlhf_reply([], where_of, failed)
    assert reply["rewards"] == [0.0] * 4 and reply["extra_logs"]["reward_fn/failed"] == [1.0] * 4
    with pytest.raises(InputError, match="does not contain its prompt"):
        extract_response("abc", "zzz", "query[0]")
    with pytest.raises(BadRequestError, match="'labels' must be a list of 1"):
        openrlhf_groups({"query": ["pq"], "prompts": ["p"], "labels": []}, 10)


def test_prometheus_text_histogram_is_cumulative():
    h = Histogram([1, 2])
    for v in (0.5, 1.5, 1.7, 9):
        h.observe(v)
    doc = PromText()
    doc.histogram("x_seconds", "help", h, {"endpoint": "score"})
    text = doc.render()
    assert 'x_seconds_bucket{endpoint="score",le="1.0"} 1' in text
    assert 'x_seconds_bucket{endpoint="score",le="2.0"} 3' in text
    assert 'x_seconds_bucket{endpoint="score",le="+Inf"} 4' in text
    assert 'x_seconds_count{endpoint="score"} 4' in text and "# TYPE x_seconds histogram" in text


def test_config_validation_names_the_bad_value():
    with pytest.raises(ValueError, match="kind"):
        WorkerConfig(model="m", kind="critic")
    with pytest.raises(ValueError, match="strategy"):
        PoolConfig(WorkerConfig(model="m"), strategy="RANDOM")
    with pytest.raises(ValueError, match="num_workers"):
        PoolConfig(WorkerConfig(model="m"), num_workers=0)


def test_judge_worker_is_a_thin_adapter_over_mr_judge(tiny_judge_path):
    """The worker's rewards equal MR. Judge's own, group by group and response by response. The
    judge generates with the scripted content-aware backend (the tiny random judge would give 0.5
    to everyone, so swapped groups or reordered responses would pass unseen)."""
    from scorer_wrappers import scripted_backend

    from openrlhf_visualprm.judge import MRJudge
    from openrlhf_visualprm.workers.worker import JudgeWorkerImpl

    options = {"max_new_tokens": 4, "schedule": "listwise", "rounds": 1}
    # Small pictures keep the tiny judge's loading cheap; two groups exercise the batched call.
    groups = [
        prepare_group(
            {
                "images": [Image.new("RGB", (56, 56), color)],
                "question": f"Which is right? ({color})",
                "responses": [f"The answer is {n}." for n in answers],
            },
            ImageRoots(),
            kind="judge",
        )
        for color, answers in (("white", (3, 4, 5)), ("navy", (6, 7, 8, 9)))
    ]
    worker = JudgeWorkerImpl(
        WorkerConfig(
            model=str(tiny_judge_path),
            kind="judge",
            num_gpus=0,
            judge_options=options,
            scorer_wrapper="scorer_wrappers:scripted_judge",
        )
    )
    out = worker.score_batch(groups)
    direct = MRJudge(scripted_backend(), schedule="listwise", rounds=1)
    wants = []
    for got, group in zip(out, groups):
        want = direct.judge_group(group.images, group.question, group.responses).rewards
        assert [r["score"] for r in got["results"]] == pytest.approx(want)
        wants.append(want)
    assert all(len(set(w)) > 1 for w in wants)  # not constant: a reordered group fails the check
    assert [c["n_responses"] for c in worker.scorer.call_log] == [3, 4]
    assert worker.scorer.model_id.endswith(json.dumps(options, sort_keys=True))
    with pytest.raises(BadRequestError, match="whole responses"):
        prepare_group(
            {"images": [Image.new("RGB", (8, 8))], "question": "q", "steps": [["a"]]},
            ImageRoots(),
            kind="judge",
        )


def test_explicit_steps_and_a_response_that_reads_like_them_do_not_share_a_cache_entry():
    """Issue 14 item 8: steps [["a", "b"]] and the response text '["a", "b"]' are different inputs."""
    from openrlhf_visualprm.workers.pool import PoolRouter

    router = PoolRouter(PoolConfig(WorkerConfig(model="m", num_gpus=0)), None)
    router.model_id = "m"
    image = Image.new("RGB", (4, 4))
    common = dict(images=[image], image_hashes=("h",), question="q", config={"method": "shared"})
    steps = ScoreGroup(**common, steps=[["a", "b"]])
    text = ScoreGroup(**common, responses=[json.dumps(["a", "b"])])
    assert text.unit_texts() == steps.unit_texts()  # the texts coincide ...
    keys = {router._cache_key(g, t) for g in (steps, text) for t in g.unit_texts()}
    assert len(keys) == 2  # ... their keys must not


def test_prm_worker_loads_the_configured_system_message(tiny_prm_path):
    """A pool's PRM reads ``WorkerConfig.system_message`` (it changes every step score)."""
    from openrlhf_visualprm.prm.scorer import VisualPRM

    group = prepare_group(
        {
            "images": [Image.new("RGB", (56, 56), "white")],
            "question": "Find x.",
            "responses": ["x is 2.\n\nSo x = 2.", "x is 3."],
        },
        ImageRoots(),
    )
    worker = PRMWorkerImpl(WorkerConfig(model=str(tiny_prm_path), num_gpus=0, system_message="prm"))
    (out,) = worker.score_batch([group])
    direct = VisualPRM.from_pretrained(str(tiny_prm_path), dtype="float32", system_message="prm")
    default = VisualPRM.from_pretrained(str(tiny_prm_path), dtype="float32")
    want = direct.score(group.images, group.question, list(group.responses))
    other = default.score(group.images, group.question, list(group.responses))
    for got, w, o in zip(out["results"], want, other):
        assert got["step_scores"] == pytest.approx(w.step_scores, abs=1e-5)
        assert got["step_scores"] != pytest.approx(o.step_scores, abs=1e-5)
