"""The vLLM backend's code path against a fake ``vllm`` module, and judge checkpoint resolution.

vLLM cannot be installed on these CPU machines, so a stand-in module implementing the part of
vLLM's documented offline API the backend calls (``LLM(**engine_args)``, ``LLM.generate(prompts,
sampling_params, use_tqdm=...)`` with ``{"prompt", "multi_modal_data"}`` prompts, ``SamplingParams``,
``sampling_params.StructuredOutputsParams`` / ``GuidedDecodingParams``, ``RequestOutput.outputs[0]
.text / .token_ids``) is injected into ``sys.modules``. It records every call so the tests check
what the backend asks vLLM for.
"""

from __future__ import annotations

import re
import sys
import types
from dataclasses import dataclass, field

import pytest
from PIL import Image

from openrlhf_visualprm.judge import JUDGE_MODEL_ENV, MRJudge, resolve_judge_model
from openrlhf_visualprm.judge.backends import VLLMBackend

IMAGE = Image.new("RGB", (32, 32), "white")
BLOCK = re.compile(r"\[Candidate ([A-D])\]\n(.*?)\n\[End of Candidate \1\]", re.DOTALL)


@dataclass
class _Completion:
    text: str
    token_ids: list[int] = field(default_factory=list)


@dataclass
class _RequestOutput:
    prompt: str
    prompt_token_ids: list[int]
    outputs: list[_Completion]


class _Params:
    def __init__(self, **kwargs):
        self.kwargs = kwargs


class _Choice:
    def __init__(self, choice=None, **kwargs):
        self.choice = choice


def make_fake_vllm(answer, structured: str = "StructuredOutputsParams") -> types.ModuleType:
    """``answer(prompt_text) -> str`` plays the judge for free generation."""
    vllm = types.ModuleType("vllm")
    sp = types.ModuleType("vllm.sampling_params")
    if structured:
        setattr(sp, structured, _Choice)

    class LLM:
        instances: list = []

        def __init__(self, **kwargs):
            self.kwargs = kwargs
            self.calls: list = []
            LLM.instances.append(self)

        def generate(self, prompts, sampling_params=None, use_tqdm=True):
            self.calls.append((prompts, sampling_params))
            params = (
                sampling_params if isinstance(sampling_params, list) else [sampling_params] * len(prompts)
            )
            out = []
            for prompt, p in zip(prompts, params, strict=True):
                constraint = p.kwargs.get("structured_outputs") or p.kwargs.get("guided_decoding")
                if constraint is not None:
                    text = constraint.choice[-1]  # a constrained engine can only emit a choice
                elif p.kwargs.get("allowed_token_ids"):
                    text = "A"
                else:
                    text = answer(prompt["prompt"])
                out.append(_RequestOutput(prompt["prompt"], [1] * 10, [_Completion(text, [7] * 3)]))
            return out

    vllm.LLM, vllm.SamplingParams, vllm.sampling_params = LLM, _Params, sp
    return vllm


def best_by_score(prompt: str) -> str:
    cands = dict(BLOCK.findall(prompt))
    label = max(cands, key=lambda x: int(re.search(r"score=(\d+)", cands[x]).group(1)))
    return f"<think>ok</think><answer>{label}</answer>"


@pytest.fixture(scope="module")
def processor(tiny_judge_path):
    from transformers import AutoProcessor

    return AutoProcessor.from_pretrained(str(tiny_judge_path))


def test_vllm_engine_args_prompts_and_sampling(monkeypatch, tiny_judge_path, processor):
    fake = make_fake_vllm(best_by_score)
    monkeypatch.setitem(sys.modules, "vllm", fake)
    backend = VLLMBackend(str(tiny_judge_path), processor=processor, max_new_tokens=64, seed=3)
    llm = fake.LLM.instances[-1]
    assert llm.kwargs["model"] == str(tiny_judge_path) and llm.kwargs["enable_prefix_caching"] is True
    assert llm.kwargs["limit_mm_per_prompt"] == {"image": 4} and llm.kwargs["seed"] == 3
    result = MRJudge(backend, rounds=2).judge_group([IMAGE], "Q?", [f"score={s}" for s in (2, 9, 4, 1, 6)])
    assert result.best == 1 and result.stats["parse_failures"] == 0
    prompts, params = llm.calls[0]
    assert len(prompts) == len(result.calls) == 4  # one batched generate for the whole schedule
    assert all(p["multi_modal_data"] == {"image": [IMAGE]} for p in prompts)
    assert params.kwargs == {
        "max_tokens": 64,
        "temperature": 0.0,
        "top_p": 1.0,
        "seed": 3,
        "ignore_eos": False,
        "stop": ["</answer>"],
        "include_stop_str_in_output": True,
    }
    # image + question first: every prompt of the group shares everything up to the candidates
    head = prompts[0]["prompt"].split("[Candidate A]")[0]
    assert "<|vision_start|><|image_pad|><|vision_end|>Question:\nQ?" in head
    assert all(p["prompt"].startswith(head) for p in prompts)
    assert backend.stats["generated_tokens"] == 3 * 4 and backend.stats["prompt_tokens"] == 10 * 4


@pytest.mark.parametrize(
    ("structured", "field_name"),
    [
        ("StructuredOutputsParams", "structured_outputs"),
        ("GuidedDecodingParams", "guided_decoding"),
        ("", "allowed_token_ids"),
    ],
)
def test_vllm_constrained_letter_call(monkeypatch, tiny_judge_path, processor, structured, field_name):
    fake = make_fake_vllm(lambda prompt: "<think>I ran out of tokens", structured=structured)
    monkeypatch.setitem(sys.modules, "vllm", fake)
    backend = VLLMBackend(str(tiny_judge_path), processor=processor)
    result = MRJudge(backend, schedule="pairwise", reask=True).judge_group([IMAGE], "Q?", ["x", "y"])
    prompts, params = fake.LLM.instances[-1].calls[1]
    assert all(p["prompt"].endswith("<think>I ran out of tokens\n</think>\n<answer>") for p in prompts)
    assert all(field_name in p.kwargs and p.kwargs["max_tokens"] == 1 for p in params)
    if structured:
        assert all(p.kwargs[field_name].choice == ["A", "B"] for p in params)
        # the fake engine answers the last choice, "B", in both orders: a flip, hence a tie
        assert result.rewards == [0.5, 0.5] and result.stats["swap_flip_rate"] == 1.0
    assert result.stats["reasked"] == 2 and result.stats["parse_failures"] == 0


def test_vllm_missing_is_a_clear_error(monkeypatch, tiny_judge_path):
    monkeypatch.setitem(sys.modules, "vllm", None)
    with pytest.raises(ImportError, match=r"openrlhf-visualprm\[vllm\]"):
        VLLMBackend(str(tiny_judge_path))


def test_from_pretrained_selects_the_vllm_backend(monkeypatch, tiny_judge_path):
    fake = make_fake_vllm(best_by_score)
    monkeypatch.setitem(sys.modules, "vllm", fake)
    judge = MRJudge.from_pretrained(str(tiny_judge_path), backend="vllm", dtype="bfloat16", max_new_tokens=32)
    assert isinstance(judge.backend, VLLMBackend) and judge.backend.max_new_tokens == 32
    assert fake.LLM.instances[-1].kwargs["dtype"] == "bfloat16"
    with pytest.raises(ValueError, match="unknown judge backend"):
        MRJudge.from_pretrained(str(tiny_judge_path), backend="tgi")


def test_resolve_local_folder_and_alias_env(monkeypatch, tiny_judge_path):
    assert resolve_judge_model(str(tiny_judge_path)) == str(tiny_judge_path.resolve())
    monkeypatch.setenv(JUDGE_MODEL_ENV, str(tiny_judge_path))
    assert resolve_judge_model("mr-judge") == str(tiny_judge_path.resolve())
    assert resolve_judge_model("MR-Judge") == str(tiny_judge_path.resolve())


def test_resolve_alias_from_the_offline_hub_cache(monkeypatch, tmp_path):
    import huggingface_hub.constants as hub_constants

    snap = tmp_path / "models--acme--judge-vl" / "snapshots" / "abc123"
    snap.mkdir(parents=True)
    (snap / "config.json").write_text("{}")
    (tmp_path / "models--acme--judge-vl" / "refs").mkdir()
    (tmp_path / "models--acme--judge-vl" / "refs" / "main").write_text("abc123")
    monkeypatch.setattr(hub_constants, "HF_HUB_CACHE", str(tmp_path))
    monkeypatch.setenv(JUDGE_MODEL_ENV, "acme/judge-vl")
    assert resolve_judge_model("mr-judge") == str(snap)


def test_resolve_missing_names_what_and_how(monkeypatch, tmp_path):
    import huggingface_hub.constants as hub_constants

    from openrlhf_visualprm.registry import ModelNotFoundError

    monkeypatch.setattr(hub_constants, "HF_HUB_CACHE", str(tmp_path))
    monkeypatch.delenv(JUDGE_MODEL_ENV, raising=False)
    with pytest.raises(ModelNotFoundError) as err:
        resolve_judge_model("mr-judge")
    msg = str(err.value)
    assert "Qwen/Qwen2.5-VL-7B-Instruct" in msg and JUDGE_MODEL_ENV in msg
    assert "hf download Qwen/Qwen2.5-VL-7B-Instruct" in msg
    with pytest.raises(ModelNotFoundError, match="not a known alias"):
        resolve_judge_model("no-such-judge")
