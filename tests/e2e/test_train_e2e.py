"""The plugin inside OpenRLHF 0.11.2's real ``train()``, one training step per case, on CPU.

Real: the plugin's launcher, worker hook and reward actor (tiny VisualPRM, tiny judge,
math-verify), OpenRLHF's ``train()``, ``RayActorGroup``, ``PPOTrainer`` / ``PPOTrainerAsync``,
``SamplesGenerator``, the agent executor with the Qwen2.5-VL processor and image prompts,
``compute_advantages_and_returns``, the TensorBoard logger, ``reward_fns/`` files, the HTTP
service. Stand-ins (``standins/``): vLLM generation, flash-attn imports, the DeepSpeed policy
actor. Each case is one launch; its checks compare what reached the policy with expectations
computed here: the PRM called directly, outcomes from the demo set's ``correct`` flags, and
OpenRLHF's advantage formulas by hand.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
import torch
from e2e_harness import (  # noqa: I001 - on sys.path through tests/e2e/conftest.py
    N_SAMPLES,
    STANDINS,
    Launch,
    batch_whiten,
    cumulative_returns,
    free_port,
    groups,
    image_md5,
    launch,
    question_of,
    samples,
    tensorboard_scalars,
    token_end_positions,
)

# a launch takes 1-3 minutes on 2 busy cores; the session cluster starts with the first case
pytestmark = [pytest.mark.e2e, pytest.mark.slow, pytest.mark.timeout(1200)]
TOL = 1e-6  # fp32 PRM on CPU, same weights on both sides


# ----------------------------------------------------------------------------- argv
def plugin_argv(work, case_dir: Path, estimator: str, image_root: str, *extra: str) -> list[str]:
    return [
        "--pretrain", str(work.policy), "--reward_pretrain", str(work.prm),
        "--advantage_estimator", estimator, "--n_samples_per_prompt", str(N_SAMPLES),
        "--prompt_data", str(work.prompts), "--input_key", "prompt", "--label_key", "label",
        "--image_key", "images", "--apply_chat_template", "--max_images_per_prompt", "1",
        "--actor_num_nodes", "1", "--actor_num_gpus_per_node", "1", "--init_kl_coef", "0",
        "--vllm_num_engines", "1", "--reward_num_nodes", "1", "--reward_num_gpus_per_node", "1",
        # micro-batches of 3 over groups of 4: groups reach the reward side split across them
        "--rollout_batch_size", "2", "--micro_rollout_batch_size", "3",
        "--train_batch_size", "8", "--micro_train_batch_size", "2",
        "--data.max_samples", "2", "--max_len", "2048", "--max_new_tokens", "256",
        "--logger.tensorboard_dir", str(case_dir / "tb"), "--logging_steps", "1",
        "--ckpt.output_dir", str(case_dir / "ckpt"), "--ckpt.path", str(case_dir / "ckpt"),
        "--reward.image_roots", image_root, "--reward.device", "cpu",
        *extra,
    ]  # fmt: skip


def stock_argv(work, case_dir: Path, remote_url: str) -> list[str]:
    return [
        "--actor.model_name_or_path", str(work.policy), "--reward.remote_url", remote_url,
        "--algo.advantage.estimator", "group_norm", "--rollout.n_samples_per_prompt", str(N_SAMPLES),
        "--data.prompt_dataset", str(work.prompts), "--data.input_key", "prompt",
        "--data.label_key", "label", "--data.image_key", "images", "--data.apply_chat_template",
        "--data.max_images_per_prompt", "1",
        "--actor.num_nodes", "1", "--actor.num_gpus_per_node", "1", "--algo.kl.init_coef", "0",
        "--vllm.num_engines", "1",
        "--rollout.batch_size", "2", "--rollout.micro_batch_size", "3",
        "--train.batch_size", "8", "--train.micro_batch_size", "2",
        "--data.max_samples", "2", "--data.max_len", "2048", "--rollout.max_new_tokens", "256",
        "--logger.tensorboard_dir", str(case_dir / "tb"), "--logger.logging_steps", "1",
        "--ckpt.output_dir", str(case_dir / "ckpt"), "--ckpt.path", str(case_dir / "ckpt"),
    ]  # fmt: skip


# ----------------------------------------------------------------------------- shared checks
def read_jsonl(path: Path) -> list[dict]:
    assert path.exists(), f"{path.name} was not written"
    return [json.loads(line) for line in path.read_text().splitlines()]


def dataset(work) -> dict[str, dict]:
    rows = [json.loads(line) for line in work.prompts.read_text().splitlines()]
    return {json.loads(r["label"])["id"]: r for r in rows}


def demo_candidates(work) -> dict[str, bool]:
    """Every canned response of the demo set -> whether its final answer is right."""
    out = {}
    for line in (work.demo / "demo.jsonl").read_text().splitlines():
        for cand in json.loads(line)["candidates"]:
            out[cand["response"]] = bool(cand["correct"])
    return out


def assert_trained(run: Launch) -> list:
    assert run.returncode == 0, f"launch failed (exit {run.returncode}):\n{run.tail()}"
    rows = samples(run.records())
    by_group = groups(rows)
    assert len(by_group) == 2, f"expected 2 prompt groups, got {sorted(by_group)}"
    for gid, members in by_group.items():
        assert [s.slot for s in members] == list(range(N_SAMPLES)), (gid, [s.index for s in members])
        assert len({s.prompt for s in members}) == 1, f"group {gid} mixes prompts"
    return rows


def assert_none_failed(run: Launch, rows: list, key: str) -> None:
    """No sample was given a neutral reward; on failure, quote the reasons the run logged."""
    failed = [s.index for s in rows if s.info.get(key) != 0.0]
    if failed:
        reasons = sorted({line.strip()[-300:] for line in run.output.splitlines() if "neutral" in line})
        raise AssertionError(f"{key} != 0 for samples {failed}; the run logged:\n" + "\n".join(reasons[:8]))


def decode(tokenizer, s) -> str:
    return tokenizer.decode(s.response_ids, skip_special_tokens=True)


def assert_vllm_saw_dataset_images(run: Launch, rows: list, work) -> None:
    """Each sample carries its dataset row's image, and the engine got exactly those images."""
    data = dataset(work)
    want: list[str] = []
    for s in rows:
        row = data[s.label["id"]]
        assert s.images == row["images"], (s.label["id"], s.images, row["images"])
        want += [image_md5(p) for p in row["images"]]
    seen = [im["md5"] for req in run.vllm_requests() for im in req["images"]]
    assert sorted(seen) == sorted(want), (
        f"vLLM saw {sorted(seen)}, the samples' dataset images are {sorted(want)}"
    )


def assert_outcomes(rows: list, tokenizer, work, key: str) -> dict[int, float]:
    """``info[key]`` is 1 exactly for the responses the demo set marks correct; returns them."""
    truth = demo_candidates(work)
    out = {}
    for s in rows:
        text = decode(tokenizer, s)
        assert text in truth, f"sample {s.index}: response not from the demo set: {text[:80]!r}"
        out[s.index] = 1.0 if truth[text] else 0.0
        assert s.info[key] == out[s.index], (s.index, key, s.info[key], text[-40:])
    assert len(set(out.values())) == 2, (
        f"the step had only {set(out.values())} outcomes: the check cannot fail"
    )
    return out


def direct_prm_results(rows: list, tokenizer, work, prm, aggregation: str) -> dict[int, dict]:
    """The PRM on each decoded response alone, with its dataset image and question ("single":
    one forward per response, the released method; the reward actor uses the shared prefix)."""
    from PIL import Image

    data = dataset(work)
    out = {}
    for s in rows:
        row = data[s.label["id"]]
        with Image.open(row["images"][0]) as image:
            res = prm.score(
                [image.convert("RGB")],
                question_of(row),
                [decode(tokenizer, s)],
                method="single",
                aggregation=aggregation,
            )[0]
        out[s.index] = res.to_dict()
    return out


def direct_judge_rewards(rows: list, tokenizer, work) -> dict[int, float]:
    """MR. Judge called directly on each group (dataset image and question, responses in slot
    order) with the stand-in's verdict rule as its backend; listwise, 4 candidates, one round."""
    import importlib.util

    from PIL import Image

    from openrlhf_visualprm.judge.backends import ScriptedBackend
    from openrlhf_visualprm.judge.judge import MRJudge

    spec = importlib.util.spec_from_file_location("e2e_judge_rule", STANDINS / "e2e_judge_rule.py")
    rule = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(rule)
    data = dataset(work)
    demo = {
        json.loads(line)["image"]: json.loads(line)
        for line in (work.demo / "demo.jsonl").read_text().splitlines()
    }
    out = {}
    for members in groups(rows).values():
        row = data[members[0].label["id"]]
        item = demo[members[0].label["images"][0]]
        correct = {c["response"].strip() for c in item["candidates"] if c["correct"]}
        judge = MRJudge(
            ScriptedBackend(lambda req, correct=correct: rule.verdict(req.user_text, correct)),
            schedule="listwise",
            k=4,
            rounds=4,
        )
        with Image.open(row["images"][0]) as image:
            result = judge.judge_group(
                [image.convert("RGB")], question_of(row), [decode(tokenizer, s) for s in members]
            )
        out.update({s.index: float(r) for s, r in zip(members, result.rewards)})
    return out


def assert_steps_match(rows: list, prm_res: dict[int, dict]) -> None:
    """The per-sample PRM step logs equal the direct step scores (more telling than a min near 0)."""
    for key, pick in (
        ("prm/num_steps", lambda r: float(len(r["step_scores"]))),
        ("prm/first_step_score", lambda r: r["step_scores"][0]),
        ("prm/last_step_score", lambda r: r["step_scores"][-1]),
    ):
        assert_close({s.index: s.info[key] for s in rows}, {i: pick(r) for i, r in prm_res.items()}, key)


def assert_close(got: dict[int, float], want: dict[int, float], what: str, tol: float = TOL) -> None:
    worst = max(abs(got[i] - want[i]) for i in want)
    assert worst <= tol, f"{what}: max |run - direct| = {worst:.3g}\n run:    {got}\n direct: {want}"


def assert_logged(run: Launch, rows: list, keys: list[str]) -> dict[str, list[float]]:
    """The keys reach TensorBoard, each with the step's mean over the samples."""
    scalars = tensorboard_scalars(run.case_dir / "tb")
    for key in keys:
        tags = [t for t in scalars if t.split("/", 1)[-1] == key or t == key]
        assert tags, f"{key} not in TensorBoard: {sorted(scalars)}"
        mean = sum(s.info[key] for s in rows) / len(rows)
        assert any(abs(scalars[t][-1] - mean) < 1e-5 for t in tags), (
            key,
            {t: scalars[t] for t in tags},
            mean,
        )
    return scalars


def assert_group_norm(rows: list) -> None:
    """group_norm: every action token's advantage and return is (r - mean) / (std + 1e-9) of its
    group's rewards (unbiased std), computed by hand in fp32 from the run's rewards (already
    checked against direct scoring; a group of near-equal rewards makes this ill-conditioned in
    anything but the precision OpenRLHF uses)."""
    for members in groups(rows).values():
        r = torch.tensor([s.reward for s in members], dtype=torch.float32)
        for s, value in zip(members, (r - r.mean()) / (r.std() + 1e-9)):
            for name, got in (("advantages", s.advantages), ("returns", s.returns)):
                assert torch.allclose(got, torch.full_like(got, float(value)), atol=1e-5), (
                    f"sample {s.index} {name}: {got[:4].tolist()}..., by hand {float(value)}"
                )


def credit_by_hand(members: list, prm_res: dict, outcome: dict, credit: str, w_prm, w_outcome, v0) -> dict:
    """Per sample, the return of each step under ``credit``, from the published formulas:
    process_grpo (DeepSeekMath 4.1.3): r~ = (p - mean) / std over every step of the group (unbiased
    std, as torch), R_k = w_prm * sum_{j >= k} r~_j + w_outcome * z-score of the outcome;
    diff: R_k = w_prm * (p_last - p_{k-1}) (p_{-1} = v0) + w_outcome * (o - group mean)."""
    o = torch.tensor([outcome[s.index] for s in members], dtype=torch.float64)
    if credit == "process_grpo":
        pooled = torch.tensor(
            [p for s in members for p in prm_res[s.index]["step_scores"]], dtype=torch.float64
        )
        mean, std = pooled.mean(), pooled.std()
        o_term = (o - o.mean()) / o.std() if float(o.std()) > 1e-8 else torch.zeros_like(o)
        out = {}
        for s, ot in zip(members, o_term):
            z = [(p - mean) / std for p in prm_res[s.index]["step_scores"]]
            out[s.index] = [float(w_prm * sum(z[k:]) + w_outcome * ot) for k in range(len(z))]
        return out
    assert credit == "diff"
    out = {}
    for s, oi in zip(members, o):
        scores = prm_res[s.index]["step_scores"]
        prev = [v0, *scores[:-1]]
        out[s.index] = [
            float(w_prm * (scores[-1] - prev[k]) + w_outcome * (oi - o.mean())) for k in range(len(scores))
        ]
    return out


def assert_credit_returns(
    rows: list, outcome: dict, prm_res: dict, tokenizer, credit: str, estimator: str, w_prm, w_outcome, v0
):
    """Credit returns R_k on the tokens of step k: per-token rewards R_k - R_{k+1} on the token
    ending step k and R_last on the response's last token; OpenRLHF's returns are their reverse
    cumsum (kl off, no judge: the scalar left to OpenRLHF is 0); advantages are the returns for
    group_norm and the batch-whitened returns for reinforce_baseline."""
    want_returns = {}
    for members in groups(rows).values():
        by_hand = credit_by_hand(members, prm_res, outcome, credit, w_prm, w_outcome, v0)
        for s in members:
            res = prm_res[s.index]
            ret = by_hand[s.index]
            assert len(ret) >= 3, (
                f"sample {s.index}: {len(ret)} steps, expected the demo's multi-step responses"
            )
            ends = token_end_positions(tokenizer, s.response_ids, [span[1] for span in res["spans"]])
            token_rewards = torch.zeros(len(s.response_ids), dtype=torch.float64)
            for pos, (a, b) in zip(ends, zip(ret, ret[1:])):
                token_rewards[pos] += a - b
            token_rewards[-1] += ret[-1]
            want_returns[s.index] = cumulative_returns(token_rewards)
            got = s.returns.double()
            worst = float((got - want_returns[s.index]).abs().max())
            assert worst < 1e-5, (
                f"sample {s.index}: returns differ from the hand computation by {worst:.3g}\n"
                f" per-token rewards in the run: {(got - torch.cat([got[1:], got.new_zeros(1)])).nonzero().flatten().tolist()}"
                f"\n by hand at: {token_rewards.nonzero().flatten().tolist()}"
            )
            assert s.info["reward/credit_return"] == pytest.approx(ret[0], abs=1e-5)
    order = sorted(want_returns)
    if estimator == "group_norm":  # no whitening: the advantages are the returns
        wanted = [want_returns[i].float() for i in order]
    else:
        wanted = batch_whiten([want_returns[i].float() for i in order])
    for i, adv in zip(order, wanted):
        got = next(s for s in rows if s.index == i).advantages
        assert torch.allclose(got, adv, atol=1e-4), (i, got[:4].tolist(), adv[:4].tolist())


# ----------------------------------------------------------------------------- cases
def test_grpo_prm_min_outcome_judge_relative_roots(
    e2e_work, ray_cluster, direct_prm, policy_tokenizer, tmp_path
):
    """GRPO (group_norm): PRM min + outcome + judge; ``--reward.image_roots demo`` typed in the
    launcher's folder, which is not the cluster's."""
    weights = {"prm": 0.5, "outcome": 1.0, "judge": 0.25}
    run = launch(
        "plugin",
        plugin_argv(
            e2e_work,
            tmp_path,
            "group_norm",
            "demo",  # relative: the launcher runs in e2e_work.root, the cluster elsewhere
            *"--reward.prm.aggregation min --reward.outcome.enable --reward.judge.backend vllm".split(),
            *"--reward.prm.credit off --reward.judge.rounds 4 --reward.judge.group_size 4".split(),
            *["--reward.judge.model", str(e2e_work.judge)],
            *["--reward.weights", ",".join(f"{k}={v:g}" for k, v in weights.items())],
        ),
        tmp_path,
        ray_cluster,
        cwd=e2e_work.root,
    )
    print(f"launch took {run.seconds:.0f}s")
    rows = assert_trained(run)
    assert_none_failed(run, rows, "reward/failed_group")
    assert_vllm_saw_dataset_images(run, rows, e2e_work)
    outcome = assert_outcomes(rows, policy_tokenizer, e2e_work, "reward/outcome")
    prm_res = direct_prm_results(rows, policy_tokenizer, e2e_work, direct_prm, "min")
    prm = {i: r["score"] for i, r in prm_res.items()}
    assert_close({s.index: s.info["reward/prm"] for s in rows}, prm, "reward/prm (min)")
    assert_steps_match(rows, prm_res)
    judged = direct_judge_rewards(rows, policy_tokenizer, e2e_work)
    seen = sorted(md5 for req in read_jsonl(run.case_dir / "vllm-judge.jsonl") for md5 in req["images"])
    group_images = sorted(image_md5(g[0].images[0]) for g in groups(rows).values())
    assert sorted(set(seen)) == group_images, f"the judge saw {seen}, the groups' images are {group_images}"
    assert len(set(judged.values())) > 1, f"constant judge rewards {judged}: the routing check cannot fail"
    assert_close({s.index: s.info["reward/judge"] for s in rows}, judged, "reward/judge")
    want = {
        i: weights["prm"] * prm[i] + weights["outcome"] * outcome[i] + weights["judge"] * judged[i]
        for i in prm
    }
    assert_close({s.index: s.reward for s in rows}, want, "reward")
    assert_group_norm(rows)
    assert_logged(
        run, rows, ["reward/prm", "reward/outcome", "reward/judge", "reward/failed_group", "prm/num_steps"]
    )


@pytest.mark.parametrize(
    "mode, estimator, credit",
    [("sync", "group_norm", "process_grpo"), ("async", "reinforce_baseline", "diff")],
)
def test_credit_returns_reach_the_advantages(
    mode, estimator, credit, e2e_work, ray_cluster, direct_prm, policy_tokenizer, tmp_path
):
    """Process-supervised GRPO (``--reward.prm.credit process_grpo`` under group_norm) and ``diff``
    under REINFORCE++-baseline with ``--train.async_enable`` (the experience hook runs in the nested
    training actor): per-token returns and advantages equal the published formulas by hand, and
    the hacking diagnostics reach TensorBoard."""
    v0, w_prm, w_outcome = 0.5, 1.0, 1.0
    extra = ["--train.async_enable"] if mode == "async" else []
    run = launch(
        "plugin",
        plugin_argv(
            e2e_work,
            tmp_path,
            estimator,
            str(e2e_work.demo),
            *f"--reward.prm.aggregation min --reward.prm.credit {credit} --reward.prm.v0 {v0}".split(),
            *f"--reward.outcome.enable --reward.weights prm={w_prm:g},outcome={w_outcome:g}".split(),
            *extra,
        ),
        tmp_path,
        ray_cluster,
        cwd=e2e_work.root,
    )
    print(f"launch took {run.seconds:.0f}s")
    rows = assert_trained(run)
    assert_none_failed(run, rows, "reward/failed_group")
    assert_vllm_saw_dataset_images(run, rows, e2e_work)
    outcome = assert_outcomes(rows, policy_tokenizer, e2e_work, "reward/outcome")
    prm_res = direct_prm_results(rows, policy_tokenizer, e2e_work, direct_prm, "min")
    assert_close(
        {s.index: s.info["reward/prm"] for s in rows},
        {i: r["score"] for i, r in prm_res.items()},
        "reward/prm",
    )
    assert_steps_match(rows, prm_res)
    # credit mode: PRM and outcome arrive as credit returns; no judge, so OpenRLHF's scalar is 0
    assert_close({s.index: s.reward for s in rows}, {i: 0.0 for i in outcome}, "scalar reward")
    assert_credit_returns(rows, outcome, prm_res, policy_tokenizer, credit, estimator, w_prm, w_outcome, v0)
    assert_logged(
        run,
        rows,
        ["reward/prm", "reward/outcome", "reward/failed_group", "reward/credit_return", "diag/steps_p50",
         "diag/zero_var_outcome", "diag/prm_empty_rate"],
    )  # fmt: skip


def test_stock_train_ppo_ray_with_reward_fns(e2e_work, ray_cluster, direct_prm, policy_tokenizer, tmp_path):
    """Stock ``python -m openrlhf.cli.train_ppo_ray --reward.remote_url`` with the project's
    ``reward_fns/outcome.py`` and ``reward_fns/visualprm.py`` (both, in one launch) on image prompts,
    with one bad sample per group and ``--rollout.micro_batch_size`` 8 over groups of 4: every
    micro-batch mixes bad and good samples, and OpenRLHF's replay buffer
    (``split_experience_batch``, run by the policy stand-in) needs the same ``extra_logs`` keys
    from every sample (issue 20 item 1)."""
    argv = stock_argv(e2e_work, tmp_path, str(STANDINS / "outcome_plus_visualprm.py"))
    argv[argv.index("--rollout.micro_batch_size") + 1] = str(2 * N_SAMPLES)
    run = launch(
        "stock",
        argv,
        tmp_path,
        ray_cluster,
        cwd=e2e_work.root,
        env={
            "OPENRLHF_VISUALPRM_PRM_MODEL": str(e2e_work.prm),
            "OPENRLHF_VISUALPRM_PRM_AGGREGATION": "min",
            "OPENRLHF_VISUALPRM_DEVICE": "cpu",
            "OPENRLHF_VISUALPRM_IMAGE_ROOTS": str(e2e_work.demo),
            "E2E_ONE_BAD_SAMPLE_PER_GROUP": "1",
        },
    )
    print(f"launch took {run.seconds:.0f}s")
    rows = assert_trained(run)
    bad = {s.index for s in rows if s.info["visualprm.py/reward/failed_group"] == 1.0}
    for members in groups(rows).values():  # exactly the injected sample of each group, in both files
        assert len(bad & {s.index for s in members}) == 1, (sorted(bad), [s.index for s in members])
    assert bad == {s.index for s in rows if s.info["outcome.py/reward/failed_group"] == 1.0}
    good = [s for s in rows if s.index not in bad]
    for key in ("outcome.py/reward/failed_group", "visualprm.py/reward/failed_group"):
        assert_none_failed(run, good, key)
    assert_vllm_saw_dataset_images(run, rows, e2e_work)
    outcome = assert_outcomes(good, policy_tokenizer, e2e_work, "outcome.py/reward")
    prm = {
        i: r["score"]
        for i, r in direct_prm_results(good, policy_tokenizer, e2e_work, direct_prm, "min").items()
    }
    assert_close({s.index: s.info["visualprm.py/reward"] for s in good}, prm, "reward_fns/visualprm.py")
    want = {**{i: outcome[i] + prm[i] for i in prm}, **dict.fromkeys(bad, 0.0)}  # bad: neutral 0 + 0
    assert_close({s.index: s.reward for s in rows}, want, "reward")
    assert_group_norm(rows)
    assert_logged(
        run,
        rows,
        [
            "outcome.py/reward",
            "visualprm.py/reward",
            "visualprm.py/prm/num_steps",
            "visualprm.py/reward/failed_group",
        ],
    )


@pytest.fixture
def reward_service(e2e_work, ray_cluster, tmp_path):
    """``openrlhf-visualprm serve`` on the session's cluster; yields its URL."""
    port = free_port()
    log = (tmp_path / "serve.log").open("w")
    proc = subprocess.Popen(
        [sys.executable, "-m", "openrlhf_visualprm.cli", "serve", "--model", str(e2e_work.prm)]
        + f"--num-workers 1 --num-gpus 0 --port {port} --ray-address {ray_cluster.address}".split()
        + ["--failure-window", "4"]  # the bad-stream launch below has 2 x N_SAMPLES samples
        + ["--image-root", str(e2e_work.demo)],
        cwd=e2e_work.root,
        env={**ray_cluster.env, "RAY_ADDRESS": ray_cluster.address},
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.time() + 300
        while True:
            assert proc.poll() is None, (tmp_path / "serve.log").read_text()[-4000:]
            assert time.time() < deadline, (
                "the reward service did not come up:\n" + (tmp_path / "serve.log").read_text()[-4000:]
            )
            try:
                with urllib.request.urlopen(url + "/health", timeout=5) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            time.sleep(2)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(60)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()


def test_stock_train_with_reward_service(
    e2e_work, ray_cluster, reward_service, direct_prm, policy_tokenizer, tmp_path
):
    """``serve`` as ``--reward.remote_url http://...`` for stock OpenRLHF, image prompts; the
    service's default aggregation is the mean."""
    run = launch(
        "stock",
        stock_argv(e2e_work, tmp_path, reward_service + "/"),
        tmp_path,
        ray_cluster,
        cwd=e2e_work.root,
    )
    print(f"launch took {run.seconds:.0f}s")
    rows = assert_trained(run)
    assert_vllm_saw_dataset_images(run, rows, e2e_work)
    prm = {
        i: r["score"]
        for i, r in direct_prm_results(rows, policy_tokenizer, e2e_work, direct_prm, "mean").items()
    }
    assert_close({s.index: s.reward for s in rows}, prm, "reward from the service")
    assert_group_norm(rows)
    assert_logged(run, rows, ["prm/num_steps", "prm/min_step_score", "reward/failed_group"])
    # The same service, a run whose every sample is bad (labels without their image): /reward's
    # failure guard answers 422 and OpenRLHF's client stops the run; before the guard it trained on zeros.
    bad = tmp_path / "bad" / "prompts.jsonl"
    bad.parent.mkdir()
    rows_in = [json.loads(line) for line in e2e_work.prompts.read_text().splitlines() if line.strip()]
    for row in rows_in:
        label = row["label"] if isinstance(row["label"], dict) else json.loads(row["label"])
        row["label"] = {k: v for k, v in label.items() if k not in ("image", "images")}
    bad.write_text("".join(json.dumps(row) + "\n" for row in rows_in))
    argv = stock_argv(e2e_work, tmp_path / "bad", reward_service + "/")
    argv[argv.index("--data.prompt_dataset") + 1] = str(bad)
    stopped = launch("stock", argv, tmp_path / "bad", ray_cluster, cwd=e2e_work.root)
    assert stopped.returncode != 0, f"the run trained on an all-bad stream:\n{stopped.tail()}"
    assert not (tmp_path / "bad" / "experiences-1.pkl").exists(), "a step was trained on neutral rewards"
    served = (tmp_path / "serve.log").read_text()
    assert "--max-failed-fraction" in served and "no_image" in served, served[-3000:]


@pytest.fixture(scope="session")
def nan_prm(e2e_work, tmp_path_factory) -> Path:
    """The tiny VisualPRM with NaN in the LM-head rows of its '+' / '-' tokens: it loads, and
    every score it computes is NaN (a model error, not a bad sample)."""
    import shutil

    from safetensors.torch import load_file, save_file

    path = tmp_path_factory.mktemp("models") / "visualprm-nan"
    shutil.copytree(e2e_work.prm, path)
    weights = load_file(path / "model.safetensors")
    (head,) = [k for k in weights if k.endswith("lm_head.weight")]
    weights[head] = weights[head].clone()
    weights[head][:] = float("nan")
    save_file(weights, path / "model.safetensors", metadata={"format": "pt"})
    return path


def test_reward_model_error_stops_the_run(e2e_work, ray_cluster, nan_prm, tmp_path):
    """A model that produces non-finite scores stops the run with that error: no neutral rewards,
    no step trained, non-zero exit."""
    argv = plugin_argv(
        e2e_work,
        tmp_path,
        "group_norm",
        str(e2e_work.demo),
        *"--reward.prm.aggregation min --reward.outcome.enable --reward.weights prm=1,outcome=1".split(),
    )
    argv[argv.index("--reward_pretrain") + 1] = str(nan_prm)
    run = launch("plugin", argv, tmp_path, ray_cluster, cwd=e2e_work.root)
    print(f"launch took {run.seconds:.0f}s")
    assert run.returncode != 0, f"the run went on with a broken reward model:\n{run.tail()}"
    assert "non-finite PRM score" in run.output, run.tail()
    assert not (tmp_path / "experiences-1.pkl").exists(), "a step was trained on the broken model's rewards"
