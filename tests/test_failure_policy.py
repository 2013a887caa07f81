"""No silent zero rewards: only a bad sample becomes a neutral reward (for the components it
breaks, counted); everything else stops the run; too many failed groups stop it too; the same
image sample gets the same PRM scores from the reward actor, a reward_fns file and the HTTP
protocol."""

from __future__ import annotations

import json
from types import SimpleNamespace

import cpu_stubs  # tests/support/, on sys.path through tests/conftest.py
import pytest
import torch
from PIL import Image

from openrlhf_visualprm.errors import HostError, ModelError, RewardFailureError
from openrlhf_visualprm.plugin.plan import OutcomeConfig, PRMConfig, RewardPlan
from openrlhf_visualprm.rewards.groups import prepare_group
from openrlhf_visualprm.rewards.guard import check_failed_fraction
from openrlhf_visualprm.rewards.runtime import RewardRuntime

cpu_stubs.install()


class _ScriptedPRM:
    """A PRM component stand-in: score = number of characters of the response (content-aware)."""

    name, needs, neutral = "prm", ("label", "image", "response"), 0.0

    def __init__(self, error: Exception | None = None) -> None:
        self.error = error

    def score_groups(self, groups):
        if self.error is not None:
            raise self.error
        return [[{"score": float(len(r)), "detail": None} for r in g.responses] for g in groups]


def _outcome():
    from openrlhf_visualprm.rewards.components import OutcomeComponent

    return OutcomeComponent("exact")


def _group(label, images=None, responses=("The answer is 72.", "The answer is 5.")):
    return {
        "prompt": "<|im_start|>user\nQ?<|im_end|>\n",
        "label": label,
        "images": images,
        "responses": list(responses),
    }


# ----------------------------------------------------------------------------- the runtime's policy
def test_a_broken_image_neutralises_the_prm_only_and_is_counted(tmp_path):
    from openrlhf_visualprm.images import ImageRoots

    Image.new("RGB", (8, 8)).save(tmp_path / "ok.png")
    roots = ImageRoots.of([tmp_path])
    runtime = RewardRuntime({"prm": _ScriptedPRM(), "outcome": _outcome()})
    groups = [
        prepare_group(_group({"answer": "72", "image": "ok.png"}), roots),
        prepare_group(_group({"answer": "72", "image": "missing.png"}), roots),
        prepare_group(_group({"answer": "72", "image": "http://example.com/a.png"}), roots),
    ]
    good, missing, url = runtime.score_groups(groups)
    assert [r["components"] for r in good] == [{"prm": 17.0, "outcome": 1.0}, {"prm": 16.0, "outcome": 0.0}]
    # the outcome check needs no image: it still scores the broken groups
    assert [r["components"] for r in missing] == [{"prm": 0.0, "outcome": 1.0}, {"prm": 0.0, "outcome": 0.0}]
    assert missing[0]["failed"] == ["prm"] and missing[0]["reasons"] == ["bad_image"]
    assert url[0]["reasons"] == ["image_url"] and "never fetch" in url[0]["error"]
    assert good[0]["error"] is None and runtime.failed_groups == 2


def test_a_malformed_label_neutralises_every_component():
    runtime = RewardRuntime({"prm": _ScriptedPRM(), "outcome": _outcome()})
    (rows,) = runtime.score_groups([prepare_group(_group("{bad json", images=[Image.new("RGB", (8, 8))]))])
    assert rows[0]["components"] == {"prm": 0.0, "outcome": 0.0} and rows[0]["reasons"] == ["bad_label_json"]


@pytest.mark.parametrize("error", [ValueError("template broken"), RuntimeError("CUDA error"), KeyError("x")])
def test_any_other_error_in_scoring_propagates(error):
    runtime = RewardRuntime({"prm": _ScriptedPRM(error)})
    group = prepare_group(_group({"answer": "72"}, images=[Image.new("RGB", (8, 8))]))
    with pytest.raises(type(error)):
        runtime.score_groups([group])


def test_an_image_loader_bug_is_not_a_bad_sample(monkeypatch):
    import openrlhf_visualprm.images as images

    def broken(ref, roots=None):
        raise ValueError("a bug, not a bad image")

    monkeypatch.setattr(images, "load_image", broken)
    with pytest.raises(ValueError, match="a bug"):
        prepare_group(_group({"answer": "72", "image": "x.png"}))


# ----------------------------------------------------------------------------- the guard
def _rows(error: str | None, reasons=()):
    return [{"error": error, "reasons": list(reasons)}]


def test_guard_stops_a_step_with_too_many_failed_groups():
    results = [_rows("bad_image: a", ["bad_image"])] * 3 + [_rows(None)] + [None]  # None: actor padding
    with pytest.raises(RewardFailureError, match=r"3 of 4 prompt groups .*bad_image \(3\)"):
        check_failed_fraction(results, 0.5)
    assert check_failed_fraction(results[2:], 0.5) == (1, 2)  # exactly half is not more than half
    assert check_failed_fraction(results, 1.0) == (3, 4)  # 1 disables the guard
    with pytest.raises(RewardFailureError):
        check_failed_fraction([_rows("no_truth: x", ["no_truth"]), _rows(None)], 0.0)


def test_the_experience_hook_runs_the_guard(monkeypatch):
    from openrlhf_visualprm.plugin.experience import PluginExperienceMaker

    maker = PluginExperienceMaker.__new__(PluginExperienceMaker)
    maker.reward_plan = RewardPlan(outcome=OutcomeConfig(), weights={"outcome": 1.0}, max_failed_fraction=0.5)
    row = {"components": {"outcome": 0.0}, "error": "no_truth: label has none", "reasons": ["no_truth"]}
    monkeypatch.setattr(maker, "collect_rewards", lambda refs, n: [[dict(row)], [dict(row)]])
    monkeypatch.setattr(maker, "attach_rewards", lambda *a: pytest.fail("rewards attached despite the guard"))
    with pytest.raises(RewardFailureError, match="no_truth"):
        maker.collect_plugin_rewards([], (None, 2, []))


# ----------------------------------------------------------------------------- the reward actor
def test_a_model_error_in_the_reward_actor_stops_the_run(tmp_path):
    from openrlhf_visualprm.plugin.reward_actor import RewardActor

    actor = RewardActor.__new__(RewardActor)
    plan = RewardPlan(prm=PRMConfig(model="prm", path=str(tmp_path / "nope")), weights={"prm": 1.0})
    with pytest.raises(FileNotFoundError, match="nope"):
        actor.init_model_from_pretrained(SimpleNamespace(), plan=plan)
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "config.json").write_text(json.dumps({"model_type": "llama"}))
    plan = RewardPlan(prm=PRMConfig(model="prm", path=str(tmp_path / "bad")), weights={"prm": 1.0})
    with pytest.raises(ModelError, match="VisualPRM needs 'internvl'"):
        actor.init_model_from_pretrained(SimpleNamespace(), plan=plan)


def test_a_scoring_error_in_the_reward_actor_propagates(tiny_models, monkeypatch):
    from openrlhf_visualprm.plugin.reward_actor import RewardActor
    from openrlhf_visualprm.rewards.components import PRMComponent

    actor = RewardActor.__new__(RewardActor)
    plan = RewardPlan(
        prm=PRMConfig(path=str(tiny_models["visualprm-tiny"])), weights={"prm": 1.0}, device="cpu"
    )
    actor.init_model_from_pretrained(SimpleNamespace(), plan=plan)

    def boom(self, groups):
        raise ValueError("tokenizer and checkpoint do not belong together")

    monkeypatch.setattr(PRMComponent, "score_groups", boom)
    with pytest.raises(ValueError, match="do not belong together"):
        actor.score_payloads([_group({"answer": "1"}, images=[Image.new("RGB", (8, 8))])])


# ----------------------------------------------------------------------------- host guards
def test_host_guard_refuses_an_unsupported_openrlhf(monkeypatch):
    import importlib.metadata

    from openrlhf_visualprm.plugin import worker_hook

    worker_hook.check_host("driver")
    worker_hook.check_host("trainer")
    monkeypatch.setattr(importlib.metadata, "version", lambda name: "0.12.0")
    with pytest.raises(HostError, match=r"OpenRLHF 0.12.0 is installed.*>=0.11.2,<0.12"):
        worker_hook.check_host("driver")


def test_host_guard_names_a_missing_or_changed_attribute(monkeypatch):
    from openrlhf.trainer.ppo_utils.experience_maker import RemoteExperienceMaker

    from openrlhf_visualprm.plugin import worker_hook

    monkeypatch.delattr(RemoteExperienceMaker, "get_cumulative_returns")
    with pytest.raises(HostError, match="RemoteExperienceMaker.get_cumulative_returns is missing"):
        worker_hook.check_host("trainer")
    monkeypatch.setattr(
        RemoteExperienceMaker, "get_cumulative_returns", lambda self, rewards, mask: None, raising=False
    )
    with pytest.raises(HostError, match="lacks the parameters"):
        worker_hook.check_host("trainer")


def test_dense_step_rewards_not_consumed_by_openrlhf_stop_the_run(monkeypatch):
    from openrlhf.trainer.ppo_utils.experience import Experience
    from openrlhf.trainer.ppo_utils.experience_maker import RemoteExperienceMaker

    from openrlhf_visualprm.plugin.experience import STEP_REWARDS_ATTR, PluginExperienceMaker

    def make():
        maker = PluginExperienceMaker.__new__(PluginExperienceMaker)
        args = SimpleNamespace(
            rollout=SimpleNamespace(n_samples_per_prompt=2),
            reward=SimpleNamespace(
                clip_range=(-10.0, 10.0), overlong_buffer_len=None, stop_properly_penalty_coef=None
            ),
            algo=SimpleNamespace(
                advantage=SimpleNamespace(estimator="rloo", gamma=1.0, lambd=0.95, no_std_norm=False)
            ),
        )
        maker.strategy, maker.advantage_estimator = SimpleNamespace(args=args), "rloo"
        maker.kl_ctl, maker._dense_by_mask = SimpleNamespace(value=0.0), {}
        maker.reward_plan = RewardPlan(prm=PRMConfig(model="prm", credit="diff"), weights={"prm": 1.0})
        mask = torch.ones(2, 3, dtype=torch.bool)
        exp = Experience(
            index=[0, 1],
            action_mask=mask,
            rewards=torch.tensor([1.0, 0.0]),
            kl=torch.zeros(2, 3),
            info={"response_length": torch.tensor([3.0, 3.0])},
        )
        setattr(exp, STEP_REWARDS_ATTR, torch.tensor([[0.0, 0.5, 0.0], [0.0, 0.0, -0.5]]))
        return maker, exp

    maker, exp = make()
    maker.compute_advantages_and_returns([exp])  # the stock path consumes them: fine
    # an OpenRLHF whose advantage code bypasses the hooks that add the step rewards:
    monkeypatch.setattr(
        PluginExperienceMaker, "get_cumulative_returns", RemoteExperienceMaker.get_cumulative_returns
    )
    maker, exp = make()
    with pytest.raises(HostError, match="never passed them through"):
        maker.compute_advantages_and_returns([exp])


# ----------------------------------------------------------------------------- one sample, one reward
def test_same_image_sample_same_prm_scores_on_actor_reward_fn_and_http(tiny_models, demo_data, monkeypatch):
    """A sample built with the real Qwen2.5-VL processor (the policy's), scored by one runtime
    through three transports: the reward actor (what the experience hook sends),
    reward_fns/visualprm.py (what OpenRLHF's executor sends) and the HTTP service's OpenRLHF
    endpoint (protocol -> the one preparation -> a pool worker's runtime -> reply)."""
    import importlib.util

    from transformers import AutoProcessor

    from openrlhf_visualprm.images import ImageRoots
    from openrlhf_visualprm.plugin.reward_actor import RewardActor
    from openrlhf_visualprm.prm.scorer import VisualPRM
    from openrlhf_visualprm.rewards.combine import sample_logs
    from openrlhf_visualprm.workers.config import WorkerConfig
    from openrlhf_visualprm.workers.protocol import openrlhf_reply, openrlhf_samples, score_openrlhf
    from openrlhf_visualprm.workers.worker import PRMWorkerImpl

    item = json.loads(demo_data.read_text().splitlines()[0])
    response = item["candidates"][0]["response"]
    processor = AutoProcessor.from_pretrained(str(tiny_models["judge-tiny"]))
    messages = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": item["question"]}]}]
    prompt = processor.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    label = {"answer": item["answer"], "images": [item["image"]]}
    from openrlhf.utils.vlm_utils import process_prompt_with_images

    image = Image.open(demo_data.parent / item["image"])
    prompt_ids, _, _ = process_prompt_with_images(processor, prompt, [image])
    response_ids = processor.tokenizer(response, add_special_tokens=False)["input_ids"]
    query = processor.decode(
        prompt_ids + response_ids + [processor.tokenizer.convert_tokens_to_ids("<|im_end|>")]
    )
    assert "<|image_pad|><|image_pad|>" in query
    prm_path, roots = str(tiny_models["visualprm-tiny"]), str(demo_data.parent)

    # 1. the reward actor class, as the experience hook calls it
    actor = RewardActor.__new__(RewardActor)
    plan = RewardPlan(prm=PRMConfig(path=prm_path), weights={"prm": 1.0}, device="cpu", image_roots=[roots])
    actor.init_model_from_pretrained(SimpleNamespace(), plan=plan)
    decoded = processor.tokenizer.decode(response_ids, skip_special_tokens=True)
    (rows,) = actor.score_payloads(
        [{"prompt": prompt, "label": label, "images": [item["image"]], "responses": [decoded]}]
    )
    by_actor = rows[0]["prm"]["step_scores"]
    # 2. reward_fns/visualprm.py loaded as OpenRLHF loads it
    monkeypatch.setenv("OPENRLHF_VISUALPRM_PRM_MODEL", prm_path)
    monkeypatch.setenv("OPENRLHF_VISUALPRM_IMAGE_ROOTS", roots)
    monkeypatch.setenv("OPENRLHF_VISUALPRM_DEVICE", "cpu")
    monkeypatch.delenv("OPENRLHF_VISUALPRM_POOL", raising=False)
    from pathlib import Path

    spec = importlib.util.spec_from_file_location(
        "reward_func", Path(__file__).parents[1] / "reward_fns/visualprm.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    by_fn = module.reward_func([query], [prompt], [label])
    # 3. the HTTP service's OpenRLHF endpoint: protocol -> preparation -> a pool worker's runtime -> reply
    samples = openrlhf_samples({"query": [query], "prompts": [prompt], "labels": [label]}, 1 << 24)
    worker = PRMWorkerImpl(WorkerConfig(plan.prm, num_gpus=0, device="cpu"))
    rows = score_openrlhf(samples, worker.runtime, ImageRoots.of([roots]), "prm")
    by_http = openrlhf_reply(rows, worker.runtime.names)
    # the reference: the scorer called directly on the dataset's image and question
    direct = VisualPRM.from_pretrained(prm_path, device="cpu", dtype="float32")
    expected = direct.score([image.convert("RGB")], item["question"], responses=[response])[0]
    assert len(by_actor) == len(expected.step_scores) == len(item["candidates"][0]["steps"])
    assert by_actor == pytest.approx(expected.step_scores, abs=1e-6)
    assert rows[0]["prm"]["step_scores"] == pytest.approx(expected.step_scores, abs=1e-6)
    assert set(by_fn["extra_logs"]) == set(by_http["extra_logs"]) == set(sample_logs(rows[0]))  # one schema
    for reply in (by_fn, by_http):
        logs = reply["extra_logs"]
        assert float(reply["rewards"][0]) == pytest.approx(expected.score, abs=1e-6)
        assert float(logs["prm/min_step_score"][0]) == pytest.approx(min(expected.step_scores), abs=1e-6)
        assert float(logs["prm/num_steps"][0]) == len(expected.step_scores)
        assert float(logs["reward/failed_group"][0]) == 0.0
