"""The reward runtime (``openrlhf_visualprm.rewards``): batched over a step's groups = per group.

Every host reaches the same components, so equality is checked here on the runtime, then on the
worker host (``RewardWorkerImpl``) and on the reward actor host (``PluginRewards``). The judge
runs on a content-aware scripted backend: each response carries a value ``[[vN]]`` and the
backend picks the candidate with the largest one, so a misrouted, reordered or mixed-up group
changes the rewards (a random tiny judge never parses and would give 0.5 everywhere).
"""

from __future__ import annotations

import re

import pytest
from PIL import Image

from openrlhf_visualprm.judge.backends import ScriptedBackend
from openrlhf_visualprm.judge.judge import MRJudge
from openrlhf_visualprm.labels import Label
from openrlhf_visualprm.rewards.components import JudgeComponent, OutcomeComponent, PRMComponent
from openrlhf_visualprm.rewards.groups import RewardGroup, prepare_group
from openrlhf_visualprm.rewards.runtime import RewardRuntime

_VALUE = re.compile(r"\[\[v(\d+)\]\]")


def pick_largest(request) -> str:
    """The label of the candidate with the largest ``[[vN]]`` (candidates appear in label order)."""
    values = [int(v) for v in _VALUE.findall(request.user_text)]
    assert len(values) == len(request.labels), request.user_text
    return f"<answer>{request.labels[values.index(max(values))]}</answer>"


def scripted_judge(**kw) -> tuple[MRJudge, ScriptedBackend]:
    backend = ScriptedBackend(pick_largest)
    return MRJudge(backend, schedule="listwise", k=4, rounds=kw.pop("rounds", 2), **kw), backend


def image(color: tuple[int, int, int]) -> Image.Image:
    return Image.new("RGB", (64, 48), color)


def judge_groups(n_groups: int = 3, n: int = 5) -> list[RewardGroup]:
    groups = []
    for g in range(n_groups):
        values = [(7 * g + 3 * j) % 11 + j for j in range(n)]  # distinct per response
        responses = [f"Step one.\n\nSo the answer is [[v{v}]] \\boxed{{{v}}}." for v in values]
        groups.append(
            RewardGroup(
                f"question {g}?", responses, [image((g * 40, 0, 0))], Label({"answer": str(values[0])})
            )
        )
    return groups


def hand_win_rates(group: RewardGroup, judge: MRJudge) -> list[float]:
    """Expected judge rewards, computed from the plan and the values (not by the runtime)."""
    import random

    from openrlhf_visualprm.judge.judge import _State, group_seed
    from openrlhf_visualprm.judge.schedule import plan

    values = [int(_VALUE.search(r).group(1)) for r in group.responses]
    st = _State(None, [], random.Random(group_seed(judge.seed, _as_judge_group(group))))
    totals, shown = [0.0] * group.n, [0] * group.n
    for m in plan("listwise", group.n, k=judge.k, rounds=judge.rounds, rng=st.rng):
        best, size = max(m.order, key=lambda i: values[i]), len(m.order)
        for i in m.order:  # per appearance: 1 for the pick, (k - 2) / (2 (k - 1)) for the others
            shown[i] += 1
            totals[i] += 1.0 if i == best else (size - 2) / (2 * (size - 1))
    return [t / s if s else 0.5 for t, s in zip(totals, shown)]


def _as_judge_group(group: RewardGroup):
    from openrlhf_visualprm.judge.judge import JudgeGroup

    return JudgeGroup(group.images, group.question, list(group.responses), group.reference)


# ----------------------------------------------------------------------------- judge
def test_judge_batched_step_equals_per_group_and_uses_one_backend_batch_per_round():
    judge, backend = scripted_judge(rounds=2)
    runtime = RewardRuntime({"judge": JudgeComponent(judge)})
    groups = judge_groups()
    batched = runtime.score_groups(groups)
    batches_batched = backend.stats["batches"]
    per_group = runtime.score_groups(groups, batched=False)
    assert batches_batched == 1  # listwise: every call of every group and round in one batch
    assert backend.stats["batches"] - batches_batched == len(groups)
    for g, rows_b, rows_p in zip(groups, batched, per_group):
        got_b = [r["components"]["judge"] for r in rows_b]
        assert got_b == [r["components"]["judge"] for r in rows_p]
        assert got_b == pytest.approx(hand_win_rates(g, judge))
    # content-aware: the best response of each group wins every call it is in
    for g, rows in zip(groups, batched):
        values = [int(_VALUE.search(r).group(1)) for r in g.responses]
        assert rows[values.index(max(values))]["components"]["judge"] == 1.0


# ----------------------------------------------------------------------------- outcome
def test_outcome_batched_is_one_verification_batch_with_per_group_results(monkeypatch):
    import openrlhf_visualprm.answers as answers

    calls = []
    real = answers.verify_answers

    def counting(preds, truths, timeout_s=5.0, choices=None):
        calls.append(len(preds))
        return real(preds, truths, timeout_s=timeout_s, choices=choices)

    monkeypatch.setattr(answers, "verify_answers", counting)
    groups = judge_groups(n_groups=3, n=4)
    no_truth = {"prompt": "q?", "label": {}, "images": None, "responses": ["\\boxed{1}"]}
    groups.append(prepare_group(no_truth))  # no ground truth: a bad sample for the outcome
    runtime = RewardRuntime({"outcome": OutcomeComponent()})
    batched = runtime.score_groups(groups)
    assert calls == [12]
    per_group = runtime.score_groups(groups, batched=False)
    assert calls[1:] == [4, 4, 4]
    expected = [[1.0, 0.0, 0.0, 0.0]] * 3 + [[0.0]]  # the first response carries the truth
    assert [[r["components"]["outcome"] for r in rows] for rows in batched] == expected
    assert [[r["components"]["outcome"] for r in rows] for rows in per_group] == expected
    assert batched[3][0]["failed"] == ["outcome"] and batched[3][0]["reasons"] == ["no_truth"]


# ----------------------------------------------------------------------------- error policy
class Boom:
    name, needs, neutral = "prm", ("label", "image"), 0.0

    def score_groups(self, groups):
        raise RuntimeError("CUDA error: an illegal memory access (a model fault, not a sample)")


def test_bad_image_neutralises_only_image_components_and_bad_label_everything(tmp_path, caplog):
    judge, backend = scripted_judge(rounds=1)
    runtime = RewardRuntime({"judge": JudgeComponent(judge), "outcome": OutcomeComponent("exact")})
    good = {"prompt": "q?", "label": {"answer": "3"}, "images": [image((1, 2, 3))],
            "responses": ["[[v3]] \\boxed{3}", "[[v1]] \\boxed{1}"]}  # fmt: skip
    bad_image = dict(good, images=[str(tmp_path / "missing.png")])
    bad_label = dict(good, label='{"answer": ')
    groups = [prepare_group(g, roots=[str(tmp_path)]) for g in (good, bad_image, bad_label)]
    with caplog.at_level("ERROR", logger="openrlhf_visualprm.rewards"):
        out = runtime.score_groups(groups)
    assert [r["components"] for r in out[0]] == [
        {"judge": 1.0, "outcome": 1.0},
        {"judge": 0.0, "outcome": 0.0},
    ]
    assert out[0][0]["error"] is None and out[0][0]["failed"] == []
    # the image is unreadable: the judge gives its neutral value, the outcome still checks
    assert [r["components"] for r in out[1]] == [
        {"judge": 0.0, "outcome": 1.0},
        {"judge": 0.0, "outcome": 0.0},
    ]
    assert out[1][0]["failed"] == ["judge"] and "missing.png" in out[1][0]["error"]
    assert [r["components"] for r in out[2]] == [{"judge": 0.0, "outcome": 0.0}] * 2
    assert out[2][0]["failed"] == ["judge", "outcome"] and "not valid JSON" in out[2][0]["error"]
    assert out[1][0]["reasons"] == ["bad_image"] and out[2][0]["reasons"] == ["bad_label_json"]
    assert runtime.failed_groups == 2 and caplog.text.count("bad sample") == 2
    assert len(backend.requests) == 1  # only the good group reached the judge


def test_any_other_exception_stops_the_step():
    runtime = RewardRuntime({"prm": Boom(), "outcome": OutcomeComponent()})
    with pytest.raises(RuntimeError, match="illegal memory access"):
        runtime.score_groups(judge_groups(n_groups=1, n=2))


def test_padding_groups_pass_through_as_none():
    runtime = RewardRuntime({"outcome": OutcomeComponent("exact")})
    out = runtime.score_groups([None, *judge_groups(n_groups=1, n=2), None])
    assert out[0] is None and out[2] is None and len(out[1]) == 2


# ----------------------------------------------------------------------------- PRM (tiny model)
@pytest.fixture(scope="module")
def tiny_prm(tiny_prm_path):
    from openrlhf_visualprm.prm.scorer import VisualPRM

    return VisualPRM.from_pretrained(str(tiny_prm_path))


def prm_groups() -> list[RewardGroup]:
    texts = [
        ["First add 3 and 4.\n\nThat is 7.", "Multiply.\n\nThen 12 square units, so \\boxed{12}."],
        ["Width 5.\n\nHeight 2.\n\nArea 10.", "The bars sum to 9."],
    ]
    # Prefixes of different lengths, so one suffix batch pads a shorter prefix (masked slots).
    questions = ["What is the area?", "Which value does the bar chart show for March, in thousands?"]
    return [
        RewardGroup(q, r, [image((30 * g, 90, 120))], Label({"answer": "12"}))
        for g, (q, r) in enumerate(zip(questions, texts))
    ]


def test_prm_batches_suffixes_of_several_groups_and_equals_per_group(tiny_prm, monkeypatch):
    chunks = []
    real = type(tiny_prm)._run_suffixes

    def spy(self, chunk, *args):
        chunks.append(sorted({gi for gi, _ in chunk}))
        return real(self, chunk, *args)

    monkeypatch.setattr(type(tiny_prm), "_run_suffixes", spy)
    component = PRMComponent(tiny_prm, aggregation="min", max_batch_tokens=1 << 20)
    runtime = RewardRuntime({"prm": component})
    groups = prm_groups()
    batched = runtime.score_groups(groups)
    assert chunks == [[0, 1]]  # one suffix batch holds both groups' responses
    per_group = runtime.score_groups(groups, batched=False)
    assert chunks[1:] == [[0], [0]]
    direct = [tiny_prm.score(g.images, g.question, responses=g.responses, aggregation="min") for g in groups]
    for rows_b, rows_p, rows_d in zip(batched, per_group, direct):
        for b, p, d in zip(rows_b, rows_p, rows_d):
            assert b["prm"]["step_scores"] == pytest.approx(d.step_scores, abs=1e-5)
            assert b["components"]["prm"] == pytest.approx(p["components"]["prm"], abs=1e-5)
            assert b["components"]["prm"] == pytest.approx(min(d.step_scores), abs=1e-5)
            assert b["prm"]["spans"] == [list(s) for s in d.spans]
    # a small budget splits the step into several batches, same scores
    chunks.clear()
    small = RewardRuntime({"prm": PRMComponent(tiny_prm, aggregation="min", max_batch_tokens=1)})
    again = small.score_groups(groups)
    assert len(chunks) == 4
    for rows_a, rows_b in zip(again, batched):
        assert [r["components"]["prm"] for r in rows_a] == pytest.approx(
            [r["components"]["prm"] for r in rows_b], abs=1e-5
        )


# ----------------------------------------------------------------------------- worker host
def _score_groups_for_pool(groups: list[RewardGroup], kind: str):
    """The groups as a pool receives them: the one preparation, strict (a pool answers 4xx)."""
    from openrlhf_visualprm.rewards.groups import prepare_groups

    raws = [{"images": g.images, "question": g.question, "responses": g.responses} for g in groups]
    return prepare_groups(raws, kind=kind, strict=True)


def test_judge_worker_batch_equals_group_by_group_and_the_runtime():
    """The worker hosts the same runtime and component the actor hosts: the same rows."""
    from openrlhf_visualprm.judge.config import JudgeConfig
    from openrlhf_visualprm.workers.config import WorkerConfig
    from openrlhf_visualprm.workers.worker import JudgeWorkerImpl

    judge, backend = scripted_judge(rounds=2)
    config = WorkerConfig(JudgeConfig(model="scripted", rounds=2), num_gpus=0)
    worker = JudgeWorkerImpl(config, component=JudgeComponent(judge))
    groups = judge_groups()
    batch = worker.score_batch(_score_groups_for_pool(groups, "judge"))
    assert backend.stats["batches"] == 1  # the worker's batch is one runtime call
    one_by_one = [worker.score_batch(_score_groups_for_pool([g], "judge"))[0] for g in groups]
    direct = RewardRuntime({"judge": JudgeComponent(judge)}).score_groups(groups, batched=False)
    for b, o, d, g in zip(batch, one_by_one, direct, groups):
        scores = [r["components"]["judge"] for r in b["results"]]
        assert scores == [r["components"]["judge"] for r in o["results"]]
        assert scores == [r["components"]["judge"] for r in d]
        assert scores == pytest.approx(hand_win_rates(g, judge))
        assert [r["judge"] for r in b["results"]] == [r["judge"] for r in d]  # judge logs survive the pool
        best = [r["judge"]["best"] for r in b["results"]].index(True)
        assert scores[best] == 1.0


def test_prm_worker_batch_equals_group_by_group(tiny_prm):
    from openrlhf_visualprm.prm.config import PRMConfig
    from openrlhf_visualprm.workers.config import WorkerConfig
    from openrlhf_visualprm.workers.worker import PRMWorkerImpl

    worker = PRMWorkerImpl(
        WorkerConfig(PRMConfig(model="tiny"), num_gpus=0), component=PRMComponent(tiny_prm)
    )
    groups = prm_groups()
    pool_groups = _score_groups_for_pool(groups, "prm")
    batch = worker.score_batch(pool_groups)
    one_by_one = [worker.score_batch([g])[0] for g in pool_groups]
    for b, o, g in zip(batch, one_by_one, groups):
        direct = tiny_prm.score(g.images, g.question, responses=g.responses)
        scores = [r["components"]["prm"] for r in b["results"]]
        assert scores == pytest.approx([r["components"]["prm"] for r in o["results"]], abs=1e-5)
        assert scores == pytest.approx([d.score for d in direct], abs=1e-5)
        assert [r["prm"]["steps"] for r in b["results"]] == [d.steps for d in direct]


def test_prm_component_honours_request_options_and_explicit_steps(tiny_prm):
    """A request's options (``RewardGroup.options``) and step lists reach the one PRM component."""
    (group,) = prm_groups()[:1]
    component = PRMComponent(tiny_prm)
    asked = RewardGroup(group.question, group.responses, group.images, options={"aggregation": "min"})
    stepped = RewardGroup(group.question, [], group.images, steps=[["First add 3 and 4.", "That is 7."]])
    (mins, steps) = component.score_groups([asked, stepped])
    direct = tiny_prm.score(group.images, group.question, responses=group.responses, aggregation="min")
    assert [r["score"] for r in mins] == pytest.approx([d.score for d in direct], abs=1e-5)
    assert [r["score"] for r in mins] == pytest.approx([min(d.step_scores) for d in direct], abs=1e-5)
    (by_steps,) = tiny_prm.score(group.images, group.question, steps=[["First add 3 and 4.", "That is 7."]])
    assert steps[0]["detail"]["steps"] == ["First add 3 and 4.", "That is 7."]
    assert steps[0]["detail"]["step_scores"] == pytest.approx(by_steps.step_scores, abs=1e-6)


def test_prm_placeholder_mismatch_is_a_counted_bad_sample_and_the_batch_scores_on(tiny_prm, caplog):
    """Issue 23: two <image> placeholders for one image: the PRM's neutral value, counted with its
    reason tag; the outcome check and the other group of the same batch still score."""
    runtime = RewardRuntime({"prm": PRMComponent(tiny_prm), "outcome": OutcomeComponent("exact")})
    good, bad = prm_groups()
    bad.question = "<image> left and <image> right: which is larger?"
    bad.responses = ["So \\boxed{12}.", "It is 3."]
    with caplog.at_level("ERROR", logger="openrlhf_visualprm.rewards"):
        out = runtime.score_groups([good, bad])
    alone = RewardRuntime({"prm": PRMComponent(tiny_prm)}).score_groups([good])[0]
    assert [r["components"]["prm"] for r in out[0]] == pytest.approx(
        [r["components"]["prm"] for r in alone], abs=1e-6
    )
    assert [r["components"] for r in out[1]] == [{"prm": 0.0, "outcome": 1.0}, {"prm": 0.0, "outcome": 0.0}]
    assert out[1][0]["failed"] == ["prm"] and out[1][0]["reasons"] == ["image_placeholders"]
    assert "2 <image> placeholder(s) but 1 image(s)" in out[1][0]["error"]
    assert runtime.failed_groups == 1 and "image_placeholders" in caplog.text


def test_the_scorer_raises_input_error_naming_the_question(tiny_prm):
    from openrlhf_visualprm.errors import InputError

    with pytest.raises(InputError, match="2 <image> placeholder") as info:
        tiny_prm.score([image((1, 2, 3))], "<image> and <image>", responses=["a"])
    assert info.value.part == "question" and info.value.reason == "image_placeholders"


def test_a_group_whose_every_judge_verdict_fails_to_parse_is_a_counted_failure(caplog):
    """Issue 19 item 7: such a group used to get equal judge rewards (zero advantage) silently,
    outside the failure guard. Now: the judge's neutral value, the group counted and named, the
    outcome still scored, the other groups untouched; the step guard sees it."""
    from openrlhf_visualprm.errors import RewardFailureError
    from openrlhf_visualprm.rewards.guard import check_failed_fraction

    def rambling_on_group_0(request) -> str:
        if "question 0?" in request.user_text:
            return "<think>I cannot decide.</think> Both look fine."  # no <answer>: unparseable
        return pick_largest(request)

    judge = MRJudge(ScriptedBackend(rambling_on_group_0), schedule="listwise", k=4, rounds=2)
    runtime = RewardRuntime({"judge": JudgeComponent(judge), "outcome": OutcomeComponent("exact")})
    groups = judge_groups(n_groups=2, n=4)
    with caplog.at_level("ERROR", logger="openrlhf_visualprm.rewards"):
        out = runtime.score_groups(groups)
    assert [r["components"]["judge"] for r in out[0]] == [0.0] * 4
    assert [r["components"]["outcome"] for r in out[0]] == [1.0, 0.0, 0.0, 0.0]
    assert out[0][0]["failed"] == ["judge"] and out[0][0]["reasons"] == ["judge_unparsed"]
    assert "judge_unparsed" in caplog.text
    assert out[1][0]["error"] is None
    assert [r["components"]["judge"] for r in out[1]] == pytest.approx(hand_win_rates(groups[1], judge))
    assert runtime.failed_groups == 1
    assert check_failed_fraction(out, 0.5) == (1, 2)
    with pytest.raises(RewardFailureError, match="judge_unparsed"):
        check_failed_fraction(out, 0.25)


def test_an_unparsed_judge_group_stays_a_counted_failure_through_a_pool_host():
    """The pool's workers run the same runtime; the host's pool component keeps their verdict that
    a group's judge result was unusable (a stand-in pool object: the transport is not the point)."""
    from types import SimpleNamespace

    from openrlhf_visualprm.judge.config import JudgeConfig
    from openrlhf_visualprm.workers.component import PoolComponent

    def rambling(request) -> str:
        return "no verdict" if "question 0?" in request.user_text else pick_largest(request)

    judge = MRJudge(ScriptedBackend(rambling), schedule="listwise", k=4, rounds=2)
    worker_runtime = RewardRuntime({"judge": JudgeComponent(judge)})
    pool = SimpleNamespace(
        config=SimpleNamespace(worker=SimpleNamespace(kind="judge", component=JudgeConfig())),
        score_rows=lambda groups: worker_runtime.score_groups(groups),
    )
    host = RewardRuntime({"judge": PoolComponent(pool), "outcome": OutcomeComponent("exact")})
    out = host.score_groups(judge_groups(n_groups=2, n=4))
    assert out[0][0]["failed"] == ["judge"] and out[0][0]["reasons"] == ["judge_unparsed"]
    assert [r["components"]["outcome"] for r in out[0]] == [1.0, 0.0, 0.0, 0.0]
    assert out[1][0]["error"] is None and host.failed_groups == 1
