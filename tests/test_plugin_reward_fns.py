"""reward_fns/*.py through OpenRLHF's own SingleTurnAgentExecutor (fake vLLM engine) into an Experience."""

from __future__ import annotations

import asyncio
import json
import logging
from pathlib import Path
from types import SimpleNamespace

import cpu_stubs  # tests/support/, on sys.path through tests/conftest.py
import pytest

cpu_stubs.install()
from openrlhf.trainer.ppo_utils.samples_generator import SamplesGenerator  # noqa: E402
from openrlhf.utils.agent import SingleTurnAgentExecutor  # noqa: E402

REWARD_FNS = Path(__file__).resolve().parents[1] / "reward_fns"
PROMPT = "<|im_start|>user\n<image>What is the area of the rectangle?<|im_end|>\n<|im_start|>assistant\n"


@pytest.fixture(scope="module")
def tokenizer():
    from transformers import AutoTokenizer

    from openrlhf_visualprm.tiny_models import qwen2_tokenizer_dir

    return AutoTokenizer.from_pretrained(str(qwen2_tokenizer_dir()))


@pytest.fixture
def env(monkeypatch, tiny_models, demo_data):
    monkeypatch.setenv("OPENRLHF_VISUALPRM_PRM_MODEL", str(tiny_models["visualprm-tiny"]))
    monkeypatch.setenv("OPENRLHF_VISUALPRM_JUDGE_MODEL", str(tiny_models["judge-tiny"]))
    monkeypatch.setenv("OPENRLHF_VISUALPRM_JUDGE_MAX_NEW_TOKENS", "8")
    monkeypatch.setenv("OPENRLHF_VISUALPRM_IMAGE_ROOTS", str(demo_data.parent))
    monkeypatch.setenv("OPENRLHF_VISUALPRM_DEVICE", "cpu")
    monkeypatch.delenv("OPENRLHF_VISUALPRM_POOL", raising=False)
    item = json.loads(demo_data.read_text().splitlines()[0])
    return item


class FakeEngine:
    """Stands in for vLLM: returns a fixed response (tokens + text) for any prompt."""

    def __init__(self, tokenizer, text: str) -> None:
        self.ids = tokenizer(text, add_special_tokens=False)["input_ids"] + [
            tokenizer.convert_tokens_to_ids("<|im_end|>")
        ]
        self.text = text
        self.prompts = []

    async def generate(self, prompt_token_ids, sampling_params, multi_modal_data=None):
        self.prompts.append(prompt_token_ids)
        out = SimpleNamespace(token_ids=self.ids, text=self.text, finish_reason="stop", logprobs=None)
        return SimpleNamespace(outputs=[out])


def run_sample(tokenizer, reward_file: str, label, response: str):
    """OpenRLHF's executor (loads the file by path, calls reward_func in a thread) -> Experience."""
    executor = SingleTurnAgentExecutor(remote_rm_url=[str(REWARD_FNS / reward_file)])
    params = SimpleNamespace(max_tokens=256, logprobs=None)
    output = asyncio.run(
        executor.execute(PROMPT, label, params, 1024, tokenizer, FakeEngine(tokenizer, response))
    )
    generator = SamplesGenerator.__new__(SamplesGenerator)
    return output, generator._process_response_into_experience(output, max_len=1024)


def test_outcome_reward_fn_end_to_end(tokenizer, env):
    label = {"answer": env["answer"], "image": env["image"]}
    good = f"The sides multiply.\n\nThe answer is \\boxed{{{env['answer']}}}."
    out, exp = run_sample(tokenizer, "outcome.py", label, good)
    assert (
        out["reward"] is not None and exp.rewards.tolist() == [1.0] and exp.info["reward"].tolist() == [1.0]
    )
    assert exp.info["reward/failed_group"].tolist() == [0.0]
    _, exp = run_sample(tokenizer, "outcome.py", json.dumps(label), "The answer is 5.")
    assert exp.rewards.tolist() == [0.0]


def test_visualprm_reward_fn_matches_the_scorer_on_the_label_image(tokenizer, env, tiny_models, demo_data):
    from openrlhf_visualprm.images import ImageRoots, load_image
    from openrlhf_visualprm.workers import reward_func

    response = env["candidates"][0]["response"]
    label = {"answer": env["answer"], "images": [env["image"]], "question": env["question"]}
    out, exp = run_sample(tokenizer, "visualprm.py", label, response)
    prm = reward_func._runtime("prm").components["prm"].prm  # the model the reward_fn loaded
    image = load_image(env["image"], ImageRoots.of([demo_data.parent]))
    expected = prm.score([image], env["question"], responses=[response])[0]
    assert exp.rewards.item() == pytest.approx(expected.score, abs=1e-5)
    assert exp.info["prm/num_steps"].item() == len(env["candidates"][0]["steps"]) == len(expected.step_scores)
    assert exp.info["prm/min_step_score"].item() == pytest.approx(min(expected.step_scores), abs=1e-5)


def test_visualprm_reward_fn_placeholder_mismatch_is_a_counted_bad_sample(tokenizer, env, caplog):
    """Issue 23: two <image> placeholders for one image stopped the run; now a neutral, counted sample."""
    label = {"answer": env["answer"], "images": [env["image"]], "question": "<image> vs <image>: which?"}
    with caplog.at_level(logging.ERROR, logger="openrlhf_visualprm.reward_fn"):
        out, exp = run_sample(tokenizer, "visualprm.py", label, env["candidates"][0]["response"])
    assert out["reward"] is not None
    assert exp.rewards.tolist() == [0.0] and exp.info["reward/failed_group"].tolist() == [1.0]
    assert "image_placeholders: the question has 2 <image> placeholder(s)" in caplog.text


def test_mr_judge_reward_fn_judges_against_the_reference(tokenizer, env, caplog):
    label = {"image": env["image"], "reference": env["candidates"][-1]["response"]}
    _, exp = run_sample(tokenizer, "mr_judge.py", label, env["candidates"][0]["response"])
    # the tiny judge's random weights never write a parsable verdict: no signal, so the judge's
    # neutral reward and a counted failure (reason judge_unparsed), not a silent tie at 0.5
    assert exp.rewards.tolist() == [0.0]
    assert exp.info["judge/parse_failure_rate"].tolist() == [1.0]
    assert exp.info["reward/failed_group"].tolist() == [1.0]
    with caplog.at_level(logging.ERROR, logger="openrlhf_visualprm.reward_fn"):
        _, exp = run_sample(tokenizer, "mr_judge.py", {"image": env["image"]}, "anything")
    assert exp.rewards.tolist() == [0.0] and exp.info["reward/failed_group"].tolist() == [1.0]
    assert '"reference"' in caplog.text


def test_mr_judge_reward_fn_equals_the_judge_called_directly(tokenizer, env, demo_data, monkeypatch):
    """The reward_fns judge route with a scripted, content-aware backend (the tiny random judge
    gives 0.5 to everything): each response's reward equals MR. Judge's own on the label's image,
    question and reference, and the rewards differ by response, so a mixed-up sample would show."""
    from PIL import Image
    from scorer_wrappers import scripted_backend  # tests/support/

    import openrlhf_visualprm.judge.judge as judge_module
    import openrlhf_visualprm.workers.reward_func as reward_func
    from openrlhf_visualprm.judge import MRJudge
    from openrlhf_visualprm.workers.reward_func import judge_config_from_env

    monkeypatch.setattr(judge_module, "make_backend", lambda *args, **kwargs: scripted_backend())
    monkeypatch.setattr(reward_func, "_CACHE", {})  # not the HF judge another test loaded
    image = Image.open(demo_data.parent / env["image"]).convert("RGB")
    direct = MRJudge(scripted_backend(), **judge_config_from_env().judge_kwargs())
    texts = [c["response"] for c in env["candidates"]]
    got, want = [], []
    for reference, response in ((r, c) for r in texts for c in texts if r != c):
        label = {"image": env["image"], "question": env["question"], "reference": reference}
        _, exp = run_sample(tokenizer, "mr_judge.py", label, response)
        assert exp.info["reward/failed_group"].tolist() == [0.0]
        got.append(exp.rewards.item())
        want.append(direct.judge_group([image], env["question"], [response], reference=reference).rewards[0])
    assert got == pytest.approx(want, abs=1e-6)
    assert len(set(want)) > 1, want  # each pair is met both ways round: not constant


def test_image_outside_roots_gets_the_neutral_reward_and_is_reported(
    tokenizer, env, tmp_path, caplog, monkeypatch
):
    with caplog.at_level(logging.ERROR, logger="openrlhf_visualprm.reward_fn"):
        _, exp = run_sample(tokenizer, "visualprm.py", {"image": "../../etc/passwd"}, "x")
    assert exp.rewards.tolist() == [0.0] and exp.info["reward/failed_group"].tolist() == [1.0]
    assert "outside the allowed image roots" in caplog.text


def test_reward_fn_without_a_model_or_pool_raises_a_clear_error(monkeypatch):
    from openrlhf_visualprm.errors import ConfigError
    from openrlhf_visualprm.workers.reward_func import make_reward_func

    monkeypatch.delenv("OPENRLHF_VISUALPRM_POOL", raising=False)
    monkeypatch.delenv("OPENRLHF_VISUALPRM_PRM_MODEL", raising=False)
    from PIL import Image

    image = Image.new("RGB", (8, 8))  # an in-memory image: the image check is not what fails
    with pytest.raises(ConfigError, match="OPENRLHF_VISUALPRM_POOL"):
        make_reward_func("prm")([PROMPT + "a"], [PROMPT], [{"image": image}])
    monkeypatch.setenv("OPENRLHF_VISUALPRM_PRM_MODEL", "no-such-model")  # a model error is not a bad sample
    with pytest.raises(ConfigError, match="no-such-model"):
        make_reward_func("prm")(["no prompt here"], [PROMPT], [{"image": image}])


def _corrupt_avif_uri() -> str:
    """An AVIF whose last 40 bytes are zeroed: Pillow's decoder raises RuntimeError on it."""
    import base64
    import io

    from PIL import Image

    buf = io.BytesIO()
    Image.new("RGB", (16, 16), (200, 10, 10)).save(buf, "AVIF")
    data = buf.getvalue()[:-40] + bytes(40)
    return "data:image/avif;base64," + base64.b64encode(data).decode()


@pytest.mark.parametrize("reward_file", ["visualprm.py", "mr_judge.py"])
@pytest.mark.parametrize(
    "path, needle",
    [
        ("images/x\u0000.png", "NUL character"),
        ("a" * 10_000, "longer than 4096"),
        ("a/" * 200 + "b" * 300, "not found under"),
        ("images/\ud800.png", "cannot be encoded as a file name"),  # issue 22 item 2
        (_corrupt_avif_uri(), "not a readable image (RuntimeError"),  # issue 22 item 2
    ],
)
def test_bad_image_paths_get_the_neutral_reward(tokenizer, env, caplog, reward_file, path, needle):
    """Issue 14 item 5: NUL bytes and over-long paths escaped from the reward functions."""
    label = {"image": path, "reference": "r"}
    with caplog.at_level(logging.ERROR, logger="openrlhf_visualprm.reward_fn"):
        _, exp = run_sample(tokenizer, reward_file, label, "x")
    assert exp.rewards.tolist() == [0.0] and exp.info["reward/failed_group"].tolist() == [1.0]
    assert needle in caplog.text


def test_a_process_whose_samples_are_mostly_bad_stops_instead_of_training_on_zeros(
    tokenizer, env, monkeypatch, caplog
):
    """OpenRLHF calls reward_fns one sample at a time, so no step guard sees them: the process's
    own window of the last samples must stop a run whose samples are all bad (e.g. wrong roots).
    The error reaches OpenRLHF's executor, which then has no reward for the sample (its experience
    maker stops the run on that)."""
    monkeypatch.setenv("OPENRLHF_VISUALPRM_FAILURE_WINDOW", "4")
    good, bad = {"answer": env["answer"]}, "{bad json"
    response = f"The answer is {env['answer']}."
    for label in (good, bad, good, bad):  # a full window at exactly the limit (2 of 4): scored on
        _, exp = run_sample(tokenizer, "outcome.py", label, response)
        assert exp.info["reward/failed_group"].tolist() == [float(label is bad)]
        assert exp.rewards.tolist() == [float(label is good)]
    with caplog.at_level(logging.ERROR, logger="openrlhf_visualprm.reward_fn"):
        out, _ = run_sample(tokenizer, "outcome.py", bad, response)
    assert out["reward"] is None
    (record,) = [r for r in caplog.records if r.name == "openrlhf_visualprm.reward_fn" and r.exc_info]
    error = record.exc_info[1]
    assert type(error).__name__ == "RewardFailureError"
    assert "3 of the last 4 samples" in str(error) and "bad_label_json (3)" in str(error)
    monkeypatch.setenv("OPENRLHF_VISUALPRM_MAX_FAILED_FRACTION", "1")  # the documented way out
    for _ in range(5):
        _, exp = run_sample(tokenizer, "outcome.py", bad, response)
        assert exp.info["reward/failed_group"].tolist() == [1.0]


@pytest.mark.parametrize("reward_file", ["visualprm.py", "outcome.py", "mr_judge.py"])
def test_a_micro_batch_mixing_good_and_bad_samples_splits_in_openrlhf(
    tokenizer, env, reward_file, monkeypatch
):
    """Issue 20 item 1: a bad sample returned only the failure key, a good one also its stats;
    OpenRLHF made per-sample ``info`` entries of both, and a micro-batch mixing them failed in its
    own ``split_experience_batch`` ("Size of info[prm_min_step] (3) does not match batch_size (4)").
    The samples go through OpenRLHF's real executor, ``_process_response_into_experience``, the
    micro-batching of ``split_rollout_samples`` and ``split_experience_batch``."""
    from openrlhf.trainer.ppo_utils.experience import split_experience_batch
    from openrlhf.trainer.ppo_utils.experience_maker import RemoteExperienceMaker

    good = {"answer": env["answer"], "image": env["image"], "reference": env["candidates"][0]["response"]}
    bad = {"answer": env["answer"]}  # no image, no reference: a bad sample for the PRM and the judge
    if reward_file == "outcome.py":
        bad = {"image": env["image"]}  # no ground truth: a bad sample for the outcome check
    if reward_file == "mr_judge.py":  # a judge whose verdicts parse (the tiny random one's never do)
        from scorer_wrappers import scripted_backend  # tests/support/

        import openrlhf_visualprm.judge.judge as judge_module
        import openrlhf_visualprm.workers.reward_func as reward_func

        monkeypatch.setattr(judge_module, "make_backend", lambda *args, **kwargs: scripted_backend())
        monkeypatch.setattr(reward_func, "_CACHE", {})
    response = env["candidates"][0]["response"]
    samples = [run_sample(tokenizer, reward_file, label, response)[1] for label in (good, bad, good, bad)]
    assert [s.info["reward/failed_group"].item() for s in samples] == [0.0, 1.0, 0.0, 1.0]
    assert len({frozenset(s.info) for s in samples}) == 1  # the same keys for every sample
    maker = RemoteExperienceMaker.__new__(RemoteExperienceMaker)
    maker.tokenizer = tokenizer
    maker.args = SimpleNamespace(
        train=SimpleNamespace(dynamic_batch_enable=False), rollout=SimpleNamespace(micro_batch_size=4)
    )
    (batch,) = maker.split_rollout_samples(samples)
    items = split_experience_batch(batch)
    assert [i.info["reward/failed_group"].item() for i in items] == [0.0, 1.0, 0.0, 1.0]
