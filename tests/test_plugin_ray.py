"""The plugin reward actor as a real Ray actor (CPU, tiny models), driven by OpenRLHF's experience maker.

The session's Ray (``tests/conftest.py``): workers start with ``cpu_stubs.setup_worker_cpu`` (import
stand-ins for flash-attn / vLLM, then the plugin's own ``setup_worker`` hook, which acts only where
the reward plan is in the worker's environment).
"""

from __future__ import annotations

import json
import os
from types import SimpleNamespace

import cpu_stubs  # tests/support/, on sys.path through tests/conftest.py
import pytest
import torch

from openrlhf_visualprm.plugin.plan import PLAN_ENV, JudgeConfig, OutcomeConfig, PRMConfig, RewardPlan

cpu_stubs.install()
import ray  # noqa: E402
from openrlhf.trainer.ppo_utils.samples_generator import SamplesGenerator  # noqa: E402
from openrlhf.trainer.ray.launcher import RayActorGroup  # noqa: E402
from scripted_actor import ScriptedJudgeRewardActor  # noqa: E402 - tests/support/

from openrlhf_visualprm.plugin.experience import PluginExperienceMaker, build_groups  # noqa: E402

N = 4


@pytest.fixture(scope="module")
def plan(tiny_models, demo_data) -> RewardPlan:
    return RewardPlan(
        prm=PRMConfig(
            "visualprm-tiny", str(tiny_models["visualprm-tiny"]), aggregation="min", credit="diff", v0=0.5
        ),
        judge=JudgeConfig(
            "judge-tiny", str(tiny_models["judge-tiny"]), schedule="listwise", rounds=1, max_new_tokens=4
        ),
        outcome=OutcomeConfig(),
        weights={"prm": 1.0, "judge": 0.5, "outcome": 1.0},
        estimator="reinforce_baseline",
        n_samples_per_prompt=N,
        image_roots=[str(demo_data.parent)],
        device="cpu",
    )


@pytest.fixture(scope="module")
def ray_session(ray_cluster, plan):
    """The session's Ray (tests/conftest.py) with the plan in this driver, as the launcher exports it."""
    os.environ[PLAN_ENV] = plan.to_json()
    yield
    os.environ.pop(PLAN_ENV, None)


@pytest.fixture(scope="module")
def reward_group(ray_session, plan):
    # the plugin's actor; its judge generates with the scripted content-aware rule (tests/support/)
    group = RayActorGroup(1, 1, ray.remote(num_gpus=1)(ScriptedJudgeRewardActor), num_gpus_per_actor=0)
    strategy = SimpleNamespace(is_rank_0=lambda: True)
    # the launcher hands the plan to workers through the job's env; one shared Ray job here
    assert ray.get(group.async_init_model_from_pretrained(strategy, "unused", plan=plan)) == [
        ["prm", "judge", "outcome"]
    ]
    return group


@pytest.fixture(scope="module")
def tokenizer():
    from transformers import AutoTokenizer

    from openrlhf_visualprm.tiny_models import qwen2_tokenizer_dir

    return AutoTokenizer.from_pretrained(str(qwen2_tokenizer_dir()))


class FakePolicyGroup:
    """The actor model group: log-probs of zeros, returned through Ray like the real one."""

    def async_run_method_batch(self, method_name, **kwargs):
        assert method_name == "forward"
        return [ray.put([torch.zeros(m.shape) for m in kwargs["action_mask"]])]


def _args(micro_batch_size: int):
    return SimpleNamespace(
        rollout=SimpleNamespace(
            n_samples_per_prompt=N, micro_batch_size=micro_batch_size, max_new_tokens=None
        ),
        train=SimpleNamespace(
            dynamic_batch_enable=False,
            colocate_all=False,
            colocate_actor_ref=False,
            colocate_critic_reward=False,
        ),
        ds=SimpleNamespace(ring_attn_size=1, tensor_parallel_size=1),
        algo=SimpleNamespace(
            kl=SimpleNamespace(use_loss=False, estimator="k1"),
            advantage=SimpleNamespace(
                estimator="reinforce_baseline", gamma=1.0, lambd=1.0, no_std_norm=False
            ),
        ),
        reward=SimpleNamespace(
            clip_range=(-10, 10), overlong_buffer_len=None, stop_properly_penalty_coef=None
        ),
        data=SimpleNamespace(max_len=4096),
    )


def _rollout(tokenizer, demo_data):
    """2 prompts x 4 responses, converted by OpenRLHF's own SamplesGenerator code."""
    items = [json.loads(line) for line in demo_data.read_text().splitlines()[:2]]
    eos = tokenizer.convert_tokens_to_ids("<|im_end|>")
    generator = SamplesGenerator.__new__(SamplesGenerator)
    samples, meta = [], []
    for item in items:
        prompt = f"<|im_start|>user\n<image>{item['question']}<|im_end|>\n<|im_start|>assistant\n"
        prompt_ids = tokenizer(prompt, add_special_tokens=False)["input_ids"]
        for cand in (item["candidates"] * N)[:N]:
            obs = prompt_ids + tokenizer(cand["response"], add_special_tokens=False)["input_ids"] + [eos]
            response = {
                "prompt": prompt, "label": {"answer": item["answer"], "question": item["question"]},
                "images": [item["image"]], "observation_tokens": obs, "action_ranges": [(len(prompt_ids), len(obs))],
                "rollout_log_probs": None, "truncated": False, "reward": None, "scores": None, "extra_logs": {},
            }  # fmt: skip
            samples.append(generator._process_response_into_experience(response, max_len=4096))
            meta.append((item, cand))
    return samples, meta


def _judge_directly(plan, meta, demo_data) -> dict[int, float]:
    """MR. Judge with the same scripted backend, called here on each prompt group of the rollout."""
    from PIL import Image
    from scorer_wrappers import scripted_backend

    from openrlhf_visualprm.judge import MRJudge

    judge = MRJudge(scripted_backend(), **plan.judge.judge_kwargs())
    out = {}
    for start in range(0, len(meta), N):
        item = meta[start][0]
        image = Image.open(demo_data.parent / item["image"]).convert("RGB")
        responses = [cand["response"] for _, cand in meta[start : start + N]]
        for j, reward in enumerate(judge.judge_group([image], item["question"], responses).rewards):
            out[start + j] = reward
    return out


def test_reward_actor_scores_groups_through_openrlhf_experience_maker(
    reward_group, tokenizer, demo_data, plan
):
    samples, meta = _rollout(tokenizer, demo_data)
    args = _args(micro_batch_size=3)  # micro-batches of 3 cut across the prompt groups of 4
    maker = PluginExperienceMaker(
        FakePolicyGroup(), None, reward_group, None, SimpleNamespace(value=0.0),
        SimpleNamespace(args=args), tokenizer,
    )  # fmt: skip
    assert maker.reward_plan.to_dict() == plan.to_dict()  # read from the environment, like in a worker

    micro = maker.split_rollout_samples(samples)
    groups, _ = build_groups(micro, tokenizer, N, need_offsets=False)
    assert [len(g["responses"]) for g in groups] == [N, N]
    assert [g["label"]["answer"] for g in groups] == [meta[0][0]["answer"], meta[N][0]["answer"]]

    experiences = maker.make_experience_batch(samples)  # OpenRLHF's flow: split, forward, rewards, advantages
    info = {
        k: torch.cat([e.info[k] for e in experiences]) for k in experiences[0].info if e_all(experiences, k)
    }
    rewards = torch.cat([e.rewards for e in experiences])
    order = torch.cat([torch.tensor(e.index) for e in experiences])
    expected_outcome = torch.tensor([float(meta[i][1]["correct"]) for i in order.tolist()])
    assert torch.equal(info["reward/outcome"], expected_outcome)
    assert torch.all(info["judge/parse_failure_rate"] == 0.0)
    expected_judge = _judge_directly(plan, meta, demo_data)
    assert torch.allclose(info["reward/judge"], torch.tensor([expected_judge[i] for i in order.tolist()]))
    assert len(set(expected_judge.values())) > 1  # not constant: a misrouted group would show
    # credit mode: the scalar reward leaves the PRM and the outcome out (they are credited) ...
    assert torch.allclose(rewards, 0.5 * info["reward/judge"])
    # ... the score keeps them; diff credit: (last step - v0) + (outcome - its group mean)
    assert torch.allclose(info["score"], rewards + info["reward/prm"] + expected_outcome)
    outcome_by_index = dict(zip(order.tolist(), expected_outcome.tolist()))
    centred = torch.tensor(
        [
            o - sum(outcome_by_index[g] for g in range(i // N * N, i // N * N + N)) / N
            for i, o in outcome_by_index.items()
        ]
    )
    assert torch.allclose(
        info["reward/credit_return"], info["prm/last_step_score"] - 0.5 + centred, atol=1e-6
    )
    assert info["prm/num_steps"].tolist() == [float(len(meta[i][1]["steps"])) for i in order.tolist()]
    # OpenRLHF's returns: group-centred scalar on the last token plus the step rewards (kl off)
    by_index = dict(zip(order.tolist(), rewards.tolist()))
    for e in experiences:
        for row, idx in enumerate(e.index):
            group = [by_index[g] for g in range(idx // N * N, idx // N * N + N)]
            first = int(torch.nonzero(e.action_mask[row])[0])
            dense_sum = float(e.info["reward/credit_return"][row])
            assert float(e.returns[row, first]) == pytest.approx(
                by_index[idx] - sum(group) / N + dense_sum, abs=1e-5
            )
    assert all(not hasattr(e, "plugin_step_rewards") for e in experiences)


def e_all(experiences, key) -> bool:
    return all(key in e.info for e in experiences)


def test_token_only_forward_fails_with_a_pointer_to_the_hook(reward_group):
    with pytest.raises(ray.exceptions.RayTaskError, match="experience hook is not installed"):
        ray.get(reward_group.async_run_method(method_name="forward")[0])


@ray.remote(num_cpus=0)
def _experience_maker_seen_by_a_worker() -> str:
    import openrlhf.trainer.ppo_trainer as trainer_module

    cls = trainer_module.RemoteExperienceMaker
    return f"{cls.__module__}.{cls.__name__}"


def test_worker_setup_hook_swaps_the_experience_maker_in_trainer_workers(ray_session, plan):
    """PPOTrainer (and async training's nested actors) build RemoteExperienceMaker by this name."""
    with_plan = {"env_vars": {PLAN_ENV: plan.to_json()}}  # as the launcher's job env gives it
    assert ray.get(_experience_maker_seen_by_a_worker.options(runtime_env=with_plan).remote()) == (
        "openrlhf_visualprm.plugin.experience.PluginExperienceMaker"
    )


def test_reward_plan_with_a_pool_scores_the_prm_through_the_named_pool(
    reward_group, tiny_models, demo_data, plan
):
    """``--reward.pool NAME``: PRM work goes to an issue-5 RewardPool; same model, same step scores."""
    from openrlhf_visualprm.plugin.reward_host import PluginRewards
    from openrlhf_visualprm.workers.config import PoolConfig, WorkerConfig
    from openrlhf_visualprm.workers.pool import RewardPool

    worker = WorkerConfig(plan.prm, device="cpu", num_gpus=0, num_cpus=0)  # the plan's config, whole
    pool = RewardPool.start(PoolConfig(worker=worker, name="plugin-test-pool", cache_size=0))
    try:
        item = json.loads(demo_data.read_text().splitlines()[0])
        group = {
            "prompt": "p",
            "label": {"answer": item["answer"], "question": item["question"]},
            "images": [item["image"]],
            "responses": [c["response"] for c in item["candidates"][:2]],
        }
        pooled_plan = RewardPlan.from_dict({**plan.to_dict(), "judge": None, "pool": "plugin-test-pool"})
        (via_pool,) = PluginRewards(pooled_plan).score_payloads([group])
        (via_actor,) = ray.get(
            reward_group.async_run_method_batch(method_name="score_payloads", groups=[[group]])
        )
        for a, b in zip(via_pool, via_actor[0][0]):
            assert a["prm"]["step_scores"] == pytest.approx(b["prm"]["step_scores"], abs=1e-5)
            assert a["components"]["prm"] == pytest.approx(b["components"]["prm"], abs=1e-5)
            assert a["components"]["outcome"] == b["components"]["outcome"]
    finally:
        pool.shutdown()


class _Recording:
    """A model group proxy that records what the experience maker asks of it, in order."""

    def __init__(self, inner, name: str, events: list[str]) -> None:
        self._inner, self._name, self._events = inner, name, events

    def async_run_method_batch(self, method_name, **kwargs):
        self._events.append(f"{self._name}.{method_name}")
        return self._inner.async_run_method_batch(method_name=method_name, **kwargs)

    def async_run_method(self, method_name, *args, **kwargs):
        self._events.append(f"{self._name}.{method_name}")
        if self._inner is None:
            return [ray.put(None)]
        return self._inner.async_run_method(method_name, *args, **kwargs)

    def __getattr__(self, name):
        return getattr(self._inner, name)


class _Policy(FakePolicyGroup):
    def async_run_method(self, method_name, *args, **kwargs):
        return [ray.put(None)]


@pytest.mark.parametrize("colocate_all", [False, True])
def test_rewards_are_submitted_before_the_forward_passes_and_collected_after(
    reward_group, tokenizer, demo_data, colocate_all
):
    """Overlap: the reward actors work while OpenRLHF runs its policy forward. Colocated (like
    OpenRLHF's own reward model): rewards first, then the actors' CUDA cache is emptied."""
    samples, meta = _rollout(tokenizer, demo_data)
    args = _args(micro_batch_size=4)
    args.train.colocate_all = colocate_all
    events: list[str] = []
    maker = PluginExperienceMaker(
        _Recording(_Policy(), "policy", events), None, _Recording(reward_group, "reward", events), None,
        SimpleNamespace(value=0.0), SimpleNamespace(args=args), tokenizer,
    )  # fmt: skip
    collect = maker.collect_rewards
    maker.collect_rewards = lambda refs, n: events.append("collect") or collect(refs, n)
    experiences = maker.make_experience_batch(samples)
    if colocate_all:
        assert events == [
            "reward.score_payloads",
            "reward.empty_cache",
            "policy.forward",
            "policy.empty_cache",
            "collect",
        ]
    else:
        assert events == ["reward.score_payloads", "policy.forward", "collect"]
    rewards = torch.cat([e.rewards for e in experiences])
    assert torch.isfinite(rewards).all()  # the NaN placeholders were all replaced
    order = torch.cat([torch.tensor(e.index) for e in experiences]).tolist()
    outcome = torch.cat([e.info["reward/outcome"] for e in experiences])
    assert outcome.tolist() == [float(meta[i][1]["correct"]) for i in order]


def test_reward_actor_batched_call_equals_one_call_per_group(reward_group, demo_data):
    """The actor host: all groups in one call (batched runtime) = one call per group."""
    items = [json.loads(line) for line in demo_data.read_text().splitlines()[:3]]
    groups = [
        {
            "prompt": "p",
            "label": {"answer": it["answer"], "question": it["question"]},
            "images": [it["image"]],
            "responses": [c["response"] for c in it["candidates"][:3]],
        }
        for it in items
    ]
    (batched,) = ray.get(reward_group.async_run_method_batch(method_name="score_payloads", groups=[groups]))
    per_group = [
        ray.get(reward_group.async_run_method_batch(method_name="score_payloads", groups=[[g]]))[0][0][0]
        for g in groups
    ]
    assert len(batched[0]) == len(groups)
    for rows_b, rows_p, item in zip(batched[0], per_group, items):
        for b, p, cand in zip(rows_b, rows_p, item["candidates"]):
            assert b["components"]["prm"] == pytest.approx(p["components"]["prm"], abs=1e-5)
            assert b["prm"]["step_scores"] == pytest.approx(p["prm"]["step_scores"], abs=1e-5)
            assert b["components"]["outcome"] == p["components"]["outcome"] == float(cand["correct"])
            assert b["components"]["judge"] == p["components"]["judge"]


def test_a_pool_loaded_with_a_system_message_serves_the_plan_that_asks_for_it(
    ray_session, tiny_models, demo_data, plan
):
    """``serve --system-message prm`` / the pool's ``PRMConfig.system_message``: the pool's PRM reads that
    system message, a plan asking for it is served with the scores of a PRM loaded that way, and a
    plan asking for another one is refused by name (it would change every step score)."""
    from dataclasses import replace

    from PIL import Image

    from openrlhf_visualprm.errors import ConfigError
    from openrlhf_visualprm.plugin.reward_host import PluginRewards
    from openrlhf_visualprm.prm.scorer import VisualPRM
    from openrlhf_visualprm.workers.config import PoolConfig, WorkerConfig
    from openrlhf_visualprm.workers.pool import RewardPool

    path = str(tiny_models["visualprm-tiny"])
    worker = WorkerConfig(replace(plan.prm, system_message="prm"), device="cpu", num_gpus=0, num_cpus=0)
    pool = RewardPool.start(PoolConfig(worker=worker, name="plugin-system-message-pool", cache_size=0))
    try:
        item = json.loads(demo_data.read_text().splitlines()[1])
        responses = [c["response"] for c in item["candidates"][:2]]
        group = {
            "prompt": "p",
            "label": {"answer": item["answer"], "question": item["question"]},
            "images": [item["image"]],
            "responses": responses,
        }
        base = {**plan.to_dict(), "judge": None, "pool": "plugin-system-message-pool"}
        asks_prm = RewardPlan.from_dict({**base, "prm": {**plan.prm.to_dict(), "system_message": "prm"}})
        (rows,) = PluginRewards(asks_prm).score_payloads([group])
        image = Image.open(demo_data.parent / item["image"]).convert("RGB")
        prm = VisualPRM.from_pretrained(path, device="cpu", dtype="float32", system_message="prm")
        direct = prm.score([image], item["question"], responses, aggregation=plan.prm.aggregation)
        default = VisualPRM.from_pretrained(path, device="cpu", dtype="float32").score(
            [image], item["question"], responses
        )
        for row, want, other in zip(rows, direct, default):
            assert row["prm"]["step_scores"] == pytest.approx(want.step_scores, abs=1e-4)
            assert row["prm"]["step_scores"] != pytest.approx(other.step_scores, abs=1e-4)
        with pytest.raises(ConfigError, match=r"system_message 'prm' \(asked None\)"):
            PluginRewards(RewardPlan.from_dict(base))
    finally:
        pool.shutdown()
