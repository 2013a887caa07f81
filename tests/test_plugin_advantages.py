"""Rewards into advantages through OpenRLHF's real ``compute_advantages_and_returns``.

Scalar path: bit-identical to stock OpenRLHF. Dense path: per-token returns equal to a hand
computation. Step-end placement: checked with the real Qwen2 tokenizer's offsets.
"""

from __future__ import annotations

import copy
from types import SimpleNamespace

import cpu_stubs  # tests/support/, on sys.path through tests/conftest.py
import pytest
import torch

from openrlhf_visualprm.plugin.plan import OutcomeConfig, PRMConfig, RewardPlan
from openrlhf_visualprm.rewards.dense import place_step_rewards, step_end_tokens, token_char_ends
from openrlhf_visualprm.steps import split_steps

cpu_stubs.install()
from openrlhf.trainer.ppo_utils.experience import Experience  # noqa: E402
from openrlhf.trainer.ppo_utils.experience_maker import RemoteExperienceMaker  # noqa: E402

from openrlhf_visualprm.plugin.experience import STEP_REWARDS_ATTR, PluginExperienceMaker  # noqa: E402

N = 4  # n_samples_per_prompt
ALL_ESTIMATORS = [
    "gae",
    "reinforce",
    "rloo",
    "reinforce_baseline",
    "group_norm",
    "dr_grpo",
    "flash_reinforce",
]


@pytest.fixture(scope="module")
def tokenizer():
    from transformers import AutoTokenizer

    from openrlhf_visualprm.tiny_models import qwen2_tokenizer_dir

    return AutoTokenizer.from_pretrained(str(qwen2_tokenizer_dir()))


def _args(estimator: str, gamma: float = 1.0, no_std_norm: bool = False):
    return SimpleNamespace(
        rollout=SimpleNamespace(n_samples_per_prompt=N),
        reward=SimpleNamespace(
            clip_range=(-10.0, 10.0), overlong_buffer_len=None, stop_properly_penalty_coef=None
        ),
        algo=SimpleNamespace(
            advantage=SimpleNamespace(estimator=estimator, gamma=gamma, lambd=0.95, no_std_norm=no_std_norm)
        ),
    )


def _maker(cls, estimator: str, kl_coef: float = 0.05, plan: RewardPlan | None = None, **kw):
    maker = cls.__new__(cls)  # as OpenRLHF's own tests do: no Ray actor groups needed here
    maker.strategy = SimpleNamespace(args=_args(estimator, **kw))
    maker.advantage_estimator = estimator
    maker.kl_ctl = SimpleNamespace(value=kl_coef)
    if cls is PluginExperienceMaker:
        maker.reward_plan = plan or RewardPlan(
            prm=PRMConfig("visualprm", None, credit="diff"), estimator=estimator, n_samples_per_prompt=N
        )
        maker._dense_by_mask = {}
    return maker


def _experiences(seed: int = 0) -> list:
    """Two micro-batches of 4 over 2 prompts, rollout order shuffled across them, ragged masks."""
    g = torch.Generator().manual_seed(seed)
    exps = []
    for index in ([5, 0, 7, 2], [1, 6, 3, 4]):
        mask = torch.zeros(4, 7, dtype=torch.bool)
        for row, length in enumerate((7, 5, 3, 6)):
            mask[row, 7 - length :] = True  # left part is prompt, the rest the response
        exps.append(
            Experience(
                index=list(index),
                rewards=torch.rand(4, generator=g),
                action_mask=mask,
                kl=torch.randn(4, 7, generator=g) * 0.1 * mask,
                values=torch.randn(4, 7, generator=g),
                info={"reward": torch.zeros(4)},
            )
        )
    return exps


@pytest.mark.parametrize("estimator", ALL_ESTIMATORS)
def test_scalar_rewards_give_bit_identical_stock_advantages(estimator):
    """Dense off: the plugin's advantage code must equal stock OpenRLHF bit for bit, even on
    experiences that carry (non-zero) step rewards, so the override is not the identity by luck."""
    stock, ours = _experiences(), _experiences()
    for e in ours:
        setattr(e, STEP_REWARDS_ATTR, torch.rand(e.kl.shape, generator=torch.Generator().manual_seed(7)))
    stock = _maker(RemoteExperienceMaker, estimator).compute_advantages_and_returns(stock)
    plan = RewardPlan(
        prm=PRMConfig("visualprm", None, credit="off"), estimator=estimator, n_samples_per_prompt=N
    )
    ours = _maker(PluginExperienceMaker, estimator, plan=plan).compute_advantages_and_returns(ours)
    for a, b in zip(stock, ours):
        assert torch.equal(a.advantages, b.advantages) and torch.equal(a.returns, b.returns)
        assert torch.equal(a.info["return"], b.info["return"])


@pytest.mark.parametrize("estimator", ALL_ESTIMATORS)
def test_dense_zero_step_rewards_change_nothing(estimator):
    stock, ours = _experiences(1), _experiences(1)
    for e in ours:
        setattr(e, STEP_REWARDS_ATTR, torch.zeros_like(e.kl))
    stock = _maker(RemoteExperienceMaker, estimator).compute_advantages_and_returns(stock)
    ours = _maker(PluginExperienceMaker, estimator).compute_advantages_and_returns(ours)
    for a, b in zip(stock, ours):
        assert torch.equal(a.advantages, b.advantages) and torch.equal(a.returns, b.returns)
        assert not hasattr(b, STEP_REWARDS_ATTR)  # not shipped to the actors


def _hand_returns(exps, estimator: str, kl_coef: float, gamma: float):
    """Per rollout index: the per-token returns and the undiscounted total, by plain Python loops."""
    raw = {}
    for e in exps:
        for row, idx in enumerate(e.index):
            raw[idx] = float(e.rewards[row])
    shaped = {}
    for g in range(len(raw) // N):
        members = [raw[g * N + j] for j in range(N)]
        for j in range(N):
            r = members[j]
            mean = sum(members) / N
            if estimator == "rloo":
                r = r - (sum(members) - r) / (N - 1)
            elif estimator in ("reinforce_baseline", "dr_grpo"):
                r = r - mean
            elif estimator == "group_norm":
                std = (sum((m - mean) ** 2 for m in members) / (N - 1)) ** 0.5
                r = (r - mean) / (std + 1e-9)
            elif estimator == "flash_reinforce":
                r = r - sum(raw.values()) / len(raw)
            shaped[g * N + j] = r
    out, totals = {}, {}
    for e in exps:
        dense = getattr(e, STEP_REWARDS_ATTR)
        for row, idx in enumerate(e.index):
            mask = e.action_mask[row].tolist()
            last = max(t for t, m in enumerate(mask) if m)
            per_token = []
            for t in range(len(mask)):
                r = -kl_coef * float(e.kl[row, t])
                if t == last:
                    r += min(max(shaped[idx], -10.0), 10.0)
                r += float(dense[row, t])
                per_token.append(r * mask[t])
            returns, acc = [0.0] * len(mask), 0.0
            for t in reversed(range(len(mask))):
                acc = per_token[t] + gamma * acc
                returns[t] = acc
            out[idx] = returns
            totals[idx] = sum(per_token)
    return out, totals


@pytest.mark.parametrize(
    "estimator, gamma",
    [
        ("rloo", 1.0),
        ("reinforce_baseline", 1.0),
        ("reinforce", 0.9),
        ("group_norm", 1.0),
        ("dr_grpo", 1.0),
        ("flash_reinforce", 1.0),
    ],
)
def test_dense_step_rewards_give_hand_computed_per_token_returns(estimator, gamma):
    """Every estimator that turns rewards into returns consumes the credit rewards (the group_norm
    family too: OpenRLHF 0.11.2 passes them all through get_cumulative_returns)."""
    exps = _experiences(2)
    g = torch.Generator().manual_seed(3)
    for e in exps:
        dense = torch.zeros_like(e.kl)
        for row in range(4):  # two step ends inside each response
            slots = torch.nonzero(e.action_mask[row]).flatten()
            dense[row, slots[0]] = float(torch.rand(1, generator=g))
            dense[row, slots[-1]] = float(torch.rand(1, generator=g)) - 0.5
        setattr(e, STEP_REWARDS_ATTR, dense)
    expected, totals = _hand_returns(copy.deepcopy(exps), estimator, kl_coef=0.05, gamma=gamma)
    out = _maker(PluginExperienceMaker, estimator, gamma=gamma).compute_advantages_and_returns(exps)
    for e in out:
        for row, idx in enumerate(e.index):
            torch.testing.assert_close(e.returns[row], torch.tensor(expected[idx]), rtol=1e-6, atol=1e-6)
            # the logged per-sample return includes the step rewards
            assert float(e.info["return"][row]) == pytest.approx(totals[idx], abs=1e-6)
    if estimator in ("rloo", "group_norm", "dr_grpo", "flash_reinforce"):  # no whitening
        for e in out:
            assert torch.equal(e.advantages, e.returns)
    else:  # OpenRLHF's masked batch whitening of the same returns
        flat = torch.cat([e.returns.flatten() for e in out])
        mask = torch.cat([e.action_mask.flatten() for e in out]).float()
        mean = (flat * mask).sum() / mask.sum()
        rstd = (((flat - mean) ** 2 * mask).sum() / mask.sum()).clamp(min=1e-8).rsqrt()
        for e in out:
            torch.testing.assert_close(e.advantages, (e.returns - mean) * rstd)


# ----------------------------------------------------------------------------- spans -> tokens
RESPONSE = "The rectangle is 7 cm by 3 cm.\n\nIts area is 7 × 3 = 21 cm².\n\nThe answer is \\boxed{21}."


def test_step_ends_land_on_the_token_that_completes_each_step(tokenizer):
    ids = tokenizer(RESPONSE, add_special_tokens=False)["input_ids"] + [
        tokenizer.convert_tokens_to_ids("<|im_end|>")
    ]
    text, ends = token_char_ends(tokenizer, ids)
    assert text == RESPONSE
    steps = split_steps(RESPONSE)
    positions = step_end_tokens(ends, [(s.start, s.end) for s in steps])
    assert len(positions) == 3 and positions == sorted(positions)
    for step, k in zip(steps, positions):
        assert len(tokenizer.decode(ids[: k + 1])) >= step.end > len(tokenizer.decode(ids[:k]))
    assert positions[-1] == len(ids) - 2  # the last step ends on its own last token, not on <|im_end|>


def test_non_canonical_tokenisation_falls_back_to_prefix_decoding(tokenizer):
    # a policy may sample a word letter by letter: re-tokenising would not reproduce these ids
    ids = []
    for ch in "Area = 21.\n\nDone":
        ids += tokenizer(ch, add_special_tokens=False)["input_ids"]
    assert tokenizer("Area = 21.\n\nDone", add_special_tokens=False)["input_ids"] != ids
    text, ends = token_char_ends(tokenizer, ids)
    assert text == "Area = 21.\n\nDone"
    assert ends == list(range(1, len(text) + 1))
    steps = split_steps(text)
    assert step_end_tokens(ends, [(s.start, s.end) for s in steps]) == [9, len(text) - 1]


def test_place_step_rewards_follows_the_action_mask_and_drops_truncated_steps():
    mask = torch.tensor([0, 0, 1, 1, 1, 0], dtype=torch.bool)
    row = place_step_rewards(mask, [0, 2, 2, 5], [0.5, 0.25, 0.25, 9.0])
    assert row.tolist() == [0, 0, 0.5, 0, 0.5, 0]


def _attach(tokenizer, credit: str, **prm_options):
    """The experience hook's write-up of reward actor results (no Ray: results given directly):
    one group of 4 real Qwen2 tokenisations, step scores 0.95 - 0.1 k - 0.2 i, outcomes 1, 0, 1, 0,
    weights prm 2, outcome 1."""
    from openrlhf_visualprm.plugin.experience import build_groups

    prompt_ids = tokenizer("<|im_start|>user\nFind the area.<|im_end|>\n<|im_start|>assistant\n")["input_ids"]
    responses = [RESPONSE, "It is 20.\n\nThe answer is 20.", "21", "Not sure.\n\nMaybe \\boxed{22}"]
    eos = tokenizer.convert_tokens_to_ids("<|im_end|>")
    rows = [prompt_ids + tokenizer(r, add_special_tokens=False)["input_ids"] + [eos] for r in responses]
    width = max(map(len, rows))
    sequences = torch.tensor([r + [eos] * (width - len(r)) for r in rows])
    action_mask = torch.zeros(4, width - 1, dtype=torch.bool)
    for i, r in enumerate(rows):
        action_mask[i, len(prompt_ids) - 1 : len(r) - 1] = True
    exp = Experience(
        sequences=sequences, action_mask=action_mask, index=[0, 1, 2, 3], prompts=["p"] * 4,
        labels=[{"answer": "21"}] * 4, images=[None] * 4, info={},
    )  # fmt: skip
    plan = RewardPlan(
        prm=PRMConfig("visualprm", None, credit=credit, **prm_options),
        outcome=OutcomeConfig(),
        weights={"prm": 2.0, "outcome": 1.0},
        estimator="reinforce_baseline",
        n_samples_per_prompt=4,
    )
    groups, where = build_groups([exp], tokenizer, 4, need_offsets=True)
    assert len(groups) == 1 and groups[0]["responses"] == responses
    results = []
    for i, text in enumerate(responses):
        steps = split_steps(text)
        scores = [0.95 - 0.1 * k - 0.2 * i for k in range(len(steps))]  # no zero diffs
        results.append({
            "components": {"prm": min(scores), "outcome": float(i == 0 or i == 2)},
            "prm": {"step_scores": scores, "spans": [[s.start, s.end] for s in steps], "truncated": False,
                    "note": None},
            "judge": None, "outcome": {"answer": ["21", "20", "21", "22"][i]}, "failed": [],
        })  # fmt: skip
    maker = _maker(PluginExperienceMaker, "reinforce_baseline", plan=plan)
    maker.attach_rewards([exp], [results], where)
    # credit mode: PRM and outcome are credited, so the scalar reward is 0 (no judge); the score
    # keeps the PRM aggregate
    assert exp.rewards.tolist() == [0.0, 0.0, 0.0, 0.0]
    assert exp.scores.tolist() == pytest.approx(
        [2 * r["components"]["prm"] + r["components"]["outcome"] for r in results]
    )
    assert exp.info["prm/num_steps"].tolist() == [3.0, 2.0, 1.0, 2.0]
    return exp, results, action_mask


def test_attach_rewards_places_diff_credit_on_step_ends_and_the_last_token(tokenizer):
    exp, results, action_mask = _attach(tokenizer, "diff", v0=0.5)
    dense = getattr(exp, STEP_REWARDS_ATTR)
    for i, r in enumerate(results):
        steps = r["prm"]["step_scores"]
        # diff: R_k = 2 (V_last - V_{k-1}) + (o - 0.5); per-token R_k - R_{k+1} = 2 (V_k - V_{k-1})
        # at the end of step k < K-1, and R_{K-1} on the response's last token (<|im_end|>)
        out = [0.5, -0.5, 0.5, -0.5][i]
        expected = [2.0 * (s - p) for s, p in zip(steps, [0.5] + steps[:-1])]
        expected[-1] += out
        nonzero = dense[i][dense[i] != 0].tolist()
        assert nonzero == pytest.approx(expected)
        slots = torch.nonzero(action_mask[i]).flatten()
        assert float(dense[i, slots[-1]]) == pytest.approx(expected[-1])  # on the last response token
        assert (dense[i] != 0).le(action_mask[i]).all()  # only on response tokens
        assert float(exp.info["reward/credit_return"][i]) == pytest.approx(sum(expected))
    assert set(exp.info) >= {"reward", "score", "reward/prm", "reward/outcome", "reward/credit_return"}
    # the step's diagnostics reach every sample's info (OpenRLHF logs the mean: the number itself)
    # PRM min 0.75, 0.65, 0.55, 0.25 with outcomes 1, 0, 1, 0: pairs (0.75 > 0.65), (0.75 > 0.25),
    # (0.55 < 0.65), (0.55 > 0.25) -> AUROC 3/4; step counts 3, 2, 1, 2
    assert exp.info["diag/prm_outcome_auroc"].tolist() == pytest.approx([0.75] * 4)
    assert exp.info["diag/steps_p50"].tolist() == [2.0] * 4
    assert exp.info["diag/steps_frac_1"].tolist() == [0.25] * 4
    assert exp.info["diag/zero_var_outcome"].tolist() == [0.0] * 4


def test_attach_rewards_anchored_credit_uses_the_answer_step(tokenizer):
    exp, results, action_mask = _attach(tokenizer, "anchored")
    dense = getattr(exp, STEP_REWARDS_ATTR)
    # s = min P(+) from the step holding the final answer: response 0 "\\boxed{21}" is step 2 of
    # [0.95, 0.85, 0.75] -> 0.75; response 1 "20" in step 1 of [0.75, 0.65] -> 0.65; response 2
    # [0.55] -> 0.55; response 3 "22" in step 1 of [0.35, 0.25] -> 0.25. Outcome classes 1: 0.75,
    # 0.55 (mean 0.65); 0: 0.65, 0.25 (mean 0.45). R = 2 (s - class mean) + (o - 0.5), all on
    # the last token.
    want = [2 * 0.1 + 0.5, 2 * 0.2 - 0.5, 2 * -0.1 + 0.5, 2 * -0.2 - 0.5]
    for i in range(4):
        slots = torch.nonzero(action_mask[i]).flatten()
        assert dense[i].nonzero().flatten().tolist() == [int(slots[-1])]
        assert float(dense[i, slots[-1]]) == pytest.approx(want[i])
