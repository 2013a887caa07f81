"""E2E stand-in for vLLM: the API surface OpenRLHF 0.11.2's ``RolloutRayActor`` and
``SamplesGenerator`` use, on CPU, with canned generations.

"Generation" answers from the demo set's multi-step candidate responses (``E2E_RESPONSE_BANK``,
a ``demo.jsonl``), chosen by the md5 of the image the engine receives and cycled per image, so a
response always belongs to the image the policy saw. Each request is recorded in
``$E2E_CASE_DIR/vllm.jsonl`` (prompt length, md5 and size of every image, the response given), so
a test can check what the policy saw. A prompt without a known image gets a fixed wrong answer.

``LLM`` stands in for the offline engine of the judge's vLLM backend (``--reward.judge.backend
vllm``): it answers with :func:`e2e_judge_rule.verdict` for the image it is shown and records
each request in ``$E2E_CASE_DIR/vllm-judge.jsonl``.
"""

from __future__ import annotations

import asyncio
import hashlib
import itertools
import json
import os
from pathlib import Path
from types import SimpleNamespace

__version__ = "0.29.0"  # OpenRLHF checks the version before using the streaming API
UNKNOWN_IMAGE_RESPONSE = "I cannot see the image.\n\nThe answer is \\boxed{0}."


def image_md5(image) -> str:
    """md5 of the decoded RGB pixels: the same image whatever file format carried it."""
    return hashlib.md5(image.convert("RGB").tobytes()).hexdigest()


def _bank() -> dict[str, dict]:
    """md5 of each demo image -> its demo item."""
    from PIL import Image

    bank_path = Path(os.environ["E2E_RESPONSE_BANK"])
    out = {}
    for line in bank_path.read_text().splitlines():
        item = json.loads(line)
        with Image.open(bank_path.parent / item["image"]) as image:
            out[image_md5(image)] = item
    return out


def _record(name: str, record: dict) -> None:
    case_dir = os.environ.get("E2E_CASE_DIR")
    if case_dir:
        with (Path(case_dir) / name).open("a") as f:
            f.write(json.dumps(record) + "\n")


class SamplingParams:
    def __init__(self, **kwargs):
        self.__dict__.update(kwargs)


class AsyncEngineArgs:
    def __init__(self, *args, **kwargs):
        self.args, self.kwargs = args, kwargs


class _OutputProcessor:
    def __init__(self) -> None:
        self.unfinished = 0

    def get_num_unfinished_requests(self) -> int:
        return self.unfinished


class _Engine:
    def __init__(self, engine_args: AsyncEngineArgs) -> None:
        from transformers import AutoTokenizer

        self.tokenizer = AutoTokenizer.from_pretrained(engine_args.kwargs["model"])
        self.eos_id = self.tokenizer.convert_tokens_to_ids("<|im_end|>")
        self.bank = {
            key: itertools.cycle([c["response"] for c in item["candidates"]]) for key, item in _bank().items()
        }
        self.output_processor = _OutputProcessor()

    async def is_sleeping(self) -> bool:
        return False

    async def collective_rpc(self, *args, **kwargs):
        return None

    async def reset_prefix_cache(self) -> None:
        return None

    async def sleep(self, level: int = 1) -> None:
        return None

    async def wake_up(self, tags=None) -> None:
        return None

    async def generate(self, prompt: dict, sampling_params: SamplingParams, request_id=None):
        self.output_processor.unfinished += 1
        try:
            images = (prompt.get("multi_modal_data") or {}).get("image") or []
            md5s = [image_md5(image) for image in images]
            responses = self.bank.get(md5s[0]) if md5s else None
            response = next(responses) if responses else UNKNOWN_IMAGE_RESPONSE
            ids = self.tokenizer(response, add_special_tokens=False)["input_ids"]
            ids = ids[: max(1, sampling_params.max_tokens - 1)] + [self.eos_id]
            record = {
                "pid": os.getpid(),
                "prompt_len": len(prompt["prompt_token_ids"]),
                "images": [{"md5": m, "size": list(im.size)} for m, im in zip(md5s, images)],
                "response": response,
            }
            _record("vllm.jsonl", record)
            await asyncio.sleep(0)
            output = SimpleNamespace(
                token_ids=ids, text=self.tokenizer.decode(ids), finish_reason="stop", logprobs=None
            )
            yield SimpleNamespace(outputs=[output])
        finally:
            self.output_processor.unfinished -= 1


class AsyncLLMEngine:
    @staticmethod
    def from_engine_args(engine_args: AsyncEngineArgs) -> _Engine:
        return _Engine(engine_args)


class LLM:
    """The offline engine of the judge's vLLM backend, scripted (see the module docstring)."""

    def __init__(self, model: str, **kwargs) -> None:
        from e2e_judge_rule import verdict

        self.verdict = verdict
        self.correct = {
            key: {c["response"].strip() for c in item["candidates"] if c["correct"]}
            for key, item in _bank().items()
        }

    def generate(self, prompts, params, use_tqdm: bool = False) -> list:
        outputs = []
        for prompt in prompts:
            images = (prompt.get("multi_modal_data") or {}).get("image") or []
            md5s = [image_md5(image) for image in images]
            text = self.verdict(prompt["prompt"], self.correct.get(md5s[0], set()) if md5s else set())
            _record("vllm-judge.jsonl", {"images": md5s, "verdict": text})
            outputs.append(
                SimpleNamespace(prompt_token_ids=[], outputs=[SimpleNamespace(text=text, token_ids=[])])
            )
        return outputs
