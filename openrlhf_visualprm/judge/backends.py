"""Judge backends: HF ``generate``, vLLM, and a scripted one. Same interface, chosen by config.

A backend turns :class:`~.template.JudgeRequest` objects into raw judge outputs:

- ``generate(requests) -> list[str]``: free generation (reasoning + verdict), batched;
- ``choose_label(requests, partial_outputs) -> list[str]``: the constrained second call used by
  the re-ask fallback: the judge's own partial output is closed with ``</think><answer>`` and the
  next token is restricted to the call's labels (HF: argmax over the label tokens' logits; vLLM:
  structured-output ``choice``, or ``allowed_token_ids`` on older vLLM);
- ``special_tokens``: the tokenizer's special tokens, escaped inside candidates;
- ``stats``: running counters (calls, prompt / generated tokens, seconds) for benchmarks and logs.

The HF backend batches every request it is given (all groups of an RL step at once) in chunks of
``batch_size`` sorted by prompt length, with left padding, preprocessing each distinct image once
per chunk; the vLLM backend hands the whole list
to vLLM's continuous batching with prefix caching on (prompts are image + question first, so all
calls about one prompt share a cached prefix). ``import vllm`` happens only inside
:class:`VLLMBackend`.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any, Protocol

from .config import DEFAULT_MAX_NEW_TOKENS
from .template import DEFAULT_TEMPLATE, JudgeRequest, JudgeTemplate, control_tokens

BACKENDS = ("hf", "vllm")


class JudgeBackend(Protocol):
    model_id: str
    special_tokens: tuple[str, ...]
    stats: dict[str, float]

    def generate(self, requests: Sequence[JudgeRequest]) -> list[str]: ...

    def choose_label(self, requests: Sequence[JudgeRequest], partial_outputs: Sequence[str]) -> list[str]: ...


def _new_stats() -> dict[str, float]:
    return {"calls": 0, "batches": 0, "prompt_tokens": 0, "generated_tokens": 0, "seconds": 0.0}


class ScriptedBackend:
    """Returns given texts instead of running a model: for tests, dry runs and replaying logs.

    ``script`` is a list consumed in call order or a function ``request -> text``; ``labeler`` (for
    the constrained call) is a function ``(request, partial) -> label``. Every request is kept in
    ``self.requests`` so tests can read exactly what a judge would have seen.
    """

    def __init__(
        self,
        script: Sequence[str] | Callable[[JudgeRequest], str],
        labeler: Callable[[JudgeRequest, str], str] | None = None,
        special_tokens: Sequence[str] = ("<|im_start|>", "<|im_end|>", "<|endoftext|>"),
        model_id: str = "scripted",
    ) -> None:
        self._script = script if callable(script) else list(script)
        self._labeler = labeler
        self.special_tokens = tuple(special_tokens)
        self.model_id = model_id
        self.requests: list[JudgeRequest] = []
        self.stats = _new_stats()

    def generate(self, requests: Sequence[JudgeRequest]) -> list[str]:
        out = []
        for req in requests:
            self.requests.append(req)
            if callable(self._script):
                out.append(self._script(req))
            else:
                if not self._script:
                    raise RuntimeError("ScriptedBackend ran out of scripted outputs")
                out.append(self._script.pop(0))
        self.stats["calls"] += len(requests)
        self.stats["batches"] += 1
        return out

    def choose_label(self, requests: Sequence[JudgeRequest], partial_outputs: Sequence[str]) -> list[str]:
        if self._labeler is None:
            raise RuntimeError("ScriptedBackend was given no labeler for the constrained re-ask")
        self.stats["calls"] += len(requests)
        return [self._labeler(r, p) for r, p in zip(requests, partial_outputs, strict=True)]


class _ImageFeatureCache:
    """Wraps a processor's image processor so each distinct image is preprocessed once per batch.

    Every call about one prompt carries the same image, so a 64 x 8 listwise step would otherwise
    resize and patchify each image 8 times on the CPU. Only processors whose output is a plain
    per-image concatenation (Qwen2-VL family: ``pixel_values`` + ``image_grid_thw``) are cached;
    anything else goes straight through.
    """

    _CONCAT_KEYS = frozenset({"pixel_values", "image_grid_thw"})

    def __init__(self, inner: Any) -> None:
        self._inner = inner
        self._cache: dict[int, tuple[Any, Any]] = {}

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)

    def clear(self) -> None:
        self._cache.clear()

    def __call__(self, images: Any = None, *args: Any, **kwargs: Any) -> Any:
        if args or not isinstance(images, list) or len(images) < 2:
            return self._inner(images, *args, **kwargs)
        outs = []
        for img in images:
            hit = self._cache.get(id(img))
            if hit is None or hit[0] is not img:
                hit = (img, self._inner([img], **kwargs))
                self._cache[id(img)] = hit
            outs.append(hit[1])
        if set(outs[0].keys()) != self._CONCAT_KEYS:
            return self._inner(images, **kwargs)
        import numpy as np
        import torch
        from transformers import BatchFeature

        data = {}
        for key in self._CONCAT_KEYS:
            parts = [o[key] for o in outs]
            data[key] = torch.cat(parts) if isinstance(parts[0], torch.Tensor) else np.concatenate(parts)
        return BatchFeature(data)


class HFBackend:
    """Batched ``transformers`` generation (works on CPU with the tiny judge).

    Greedy by default (deterministic). ``cache_implementation="static"`` gives a static KV cache;
    on CUDA transformers then compiles the decode step by itself (its auto-compile rule), which is
    where the issue's 30 -> 10.6 ms/step came from. Each chunk has its own prompt length, so a
    compiled decode may retrace per chunk: use large, similar chunks.
    ``stop_at_answer`` stops a sequence at ``</answer>`` so finished verdicts free their slot early.
    """

    def __init__(
        self,
        model: Any,
        processor: Any,
        *,
        max_new_tokens: int = DEFAULT_MAX_NEW_TOKENS,
        batch_size: int = 16,
        temperature: float = 0.0,
        top_p: float = 1.0,
        seed: int = 0,
        cache_implementation: str | None = None,
        stop_at_answer: bool = True,
        generate_kwargs: dict | None = None,
        template: JudgeTemplate = DEFAULT_TEMPLATE,
        progress: bool = False,
        model_id: str | None = None,
    ) -> None:
        if max_new_tokens < 1:
            raise ValueError(f"max_new_tokens must be >= 1, got {max_new_tokens}")
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.model = model
        self.processor = processor
        if getattr(processor, "image_processor", None) is not None and not isinstance(
            processor.image_processor, _ImageFeatureCache
        ):
            processor.image_processor = _ImageFeatureCache(processor.image_processor)
        self.tokenizer = getattr(processor, "tokenizer", processor)
        self.tokenizer.padding_side = "left"
        self.max_new_tokens = max_new_tokens
        self.batch_size = batch_size
        self.temperature = temperature
        self.top_p = top_p
        self.seed = seed
        self.cache_implementation = cache_implementation
        self.stop_at_answer = stop_at_answer
        self.generate_kwargs = dict(generate_kwargs or {})
        self.template = template
        self.progress = progress
        self.model_id = model_id or str(getattr(model.config, "_name_or_path", "") or type(model).__name__)
        self.special_tokens = control_tokens(self.tokenizer)
        self.stats = _new_stats()
        gen = model.generation_config
        eos = gen.eos_token_id if gen.eos_token_id is not None else self.tokenizer.eos_token_id
        self._eos = set(eos if isinstance(eos, list) else [eos])
        pad = gen.pad_token_id if gen.pad_token_id is not None else self.tokenizer.pad_token_id
        self._pad = pad if pad is not None else next(iter(self._eos))

    @classmethod
    def from_pretrained(
        cls,
        path: str,
        device: str = "cpu",
        dtype: Any = "auto",
        attn_implementation: str | None = "sdpa",
        **kwargs: Any,
    ) -> HFBackend:
        from transformers import AutoModelForImageTextToText, AutoProcessor

        from ..torch_names import as_dtype

        processor = AutoProcessor.from_pretrained(path)
        require_chat_template(processor, path)
        load_kw: dict[str, Any] = {"dtype": as_dtype(dtype, allow_auto=True)}
        if attn_implementation:
            load_kw["attn_implementation"] = attn_implementation
        model = AutoModelForImageTextToText.from_pretrained(path, **load_kw).to(device).eval()
        return cls(model, processor, model_id=str(path), **kwargs)

    # -- rendering -------------------------------------------------------------------------
    def render(self, request: JudgeRequest, continuation: str = "") -> str:
        """The exact prompt text (chat template applied, generation prompt added)."""
        text = self.processor.apply_chat_template(
            request.messages(), tokenize=False, add_generation_prompt=True
        )
        return text + continuation

    def _encode(self, requests: Sequence[JudgeRequest], texts: Sequence[str]):
        images = [img for req in requests for img in req.images]
        kwargs: dict[str, Any] = {"text": list(texts), "padding": True, "return_tensors": "pt"}
        if images:
            kwargs["images"] = images
        try:
            return self.processor(**kwargs).to(self.model.device)
        finally:
            cache = getattr(self.processor, "image_processor", None)
            if isinstance(cache, _ImageFeatureCache):
                cache.clear()

    def _chunks(self, texts: Sequence[str]) -> list[list[int]]:
        order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
        return [order[s : s + self.batch_size] for s in range(0, len(order), self.batch_size)]

    def _generated_length(self, row) -> int:
        for pos, token in enumerate(row.tolist()):
            if token in self._eos:
                return pos + 1
        return len(row)

    # -- calls ------------------------------------------------------------------------------
    def generate(self, requests: Sequence[JudgeRequest]) -> list[str]:
        import torch
        from tqdm.auto import tqdm

        texts = [self.render(r) for r in requests]
        outputs: list[str] = [""] * len(requests)
        chunks = self._chunks(texts)
        start = time.perf_counter()
        # Counted in judge calls (total and ETA), updated as each generate batch finishes.
        bar = tqdm(total=len(requests), desc="judge calls", unit="call", disable=not self.progress)
        for c, chunk in enumerate(chunks):
            inputs = self._encode([requests[i] for i in chunk], [texts[i] for i in chunk])
            gen_kw: dict[str, Any] = {
                "max_new_tokens": self.max_new_tokens,
                "do_sample": self.temperature > 0,
                "pad_token_id": self._pad,
                "eos_token_id": sorted(self._eos),
            }
            if self.temperature > 0:
                gen_kw.update(temperature=self.temperature, top_p=self.top_p)
                torch.manual_seed(self.seed + c)
            else:
                gen_kw.update(temperature=None, top_p=None, top_k=None)
            if self.cache_implementation:
                gen_kw["cache_implementation"] = self.cache_implementation
            if self.stop_at_answer:
                gen_kw.update(stop_strings=["</answer>"], tokenizer=self.tokenizer)
            gen_kw.update(self.generate_kwargs)
            with torch.inference_mode():
                out = self.model.generate(**inputs, **gen_kw)
            new = out[:, inputs["input_ids"].shape[1] :]
            decoded = self.tokenizer.batch_decode(new, skip_special_tokens=True)
            for row_idx, req_idx in enumerate(chunk):
                outputs[req_idx] = decoded[row_idx]
                self.stats["generated_tokens"] += self._generated_length(new[row_idx])
            self.stats["prompt_tokens"] += int(inputs["attention_mask"].sum())
            self.stats["batches"] += 1
            bar.update(len(chunk))
        bar.close()
        self.stats["calls"] += len(requests)
        self.stats["seconds"] += time.perf_counter() - start
        return outputs

    def label_continuations(self, labels: Sequence[str]) -> tuple[str, list[int]]:
        """Where the forced answer stops and which token starts each label there.

        BPE tokenizers often merge the label into the tag (Qwen: ``>A`` is one token), so the
        prompt ends at the longest token prefix shared by ``forced_answer_prefix + label`` for all
        labels, and each label is scored by its first token after it: the tokens the judge would
        really emit.
        """
        seqs = [
            self.tokenizer.encode(self.template.forced_answer_prefix + label, add_special_tokens=False)
            for label in labels
        ]
        common = 0
        while all(len(s) > common for s in seqs) and len({s[common] for s in seqs}) == 1:
            common += 1
        if any(len(s) <= common for s in seqs) or len({s[common] for s in seqs}) != len(labels):
            raise ValueError(f"labels {list(labels)} do not start with distinct tokens for this tokenizer")
        return self.tokenizer.decode(seqs[0][:common]), [s[common] for s in seqs]

    def choose_label(self, requests: Sequence[JudgeRequest], partial_outputs: Sequence[str]) -> list[str]:
        import torch

        splits = [self.label_continuations(r.labels) for r in requests]
        texts = [
            self.render(r, continuation=p + split[0])
            for r, p, split in zip(requests, partial_outputs, splits, strict=True)
        ]
        out: list[str] = [""] * len(requests)
        for chunk in self._chunks(texts):
            inputs = self._encode([requests[i] for i in chunk], [texts[i] for i in chunk])
            with torch.inference_mode():
                logits = self.model(**inputs).logits[:, -1, :]
            for row_idx, req_idx in enumerate(chunk):
                labels, ids = requests[req_idx].labels, splits[req_idx][1]
                best = int(torch.argmax(logits[row_idx, ids]).item())
                out[req_idx] = labels[best]
            self.stats["prompt_tokens"] += int(inputs["attention_mask"].sum())
        self.stats["calls"] += len(requests)
        return out


class VLLMBackend:
    """vLLM offline engine: continuous batching, prefix caching, structured output for the letter.

    Prompts are rendered with the checkpoint's own chat template (via its HF processor) and sent
    as ``{"prompt": text, "multi_modal_data": {"image": [...]}}`` to ``LLM.generate``. Pass
    ``llm=`` to reuse an engine you built yourself. ``load_format="dummy"`` (in ``llm_kwargs``)
    gives random weights from a config, for benchmarks.
    """

    def __init__(
        self,
        model_path: str,
        *,
        max_new_tokens: int = DEFAULT_MAX_NEW_TOKENS,
        temperature: float = 0.0,
        top_p: float = 1.0,
        seed: int = 0,
        enable_prefix_caching: bool = True,
        gpu_memory_utilization: float = 0.85,
        tensor_parallel_size: int = 1,
        max_model_len: int | None = None,
        max_images: int = 4,
        stop_at_answer: bool = True,
        ignore_eos: bool = False,
        llm_kwargs: dict | None = None,
        llm: Any = None,
        processor: Any = None,
        template: JudgeTemplate = DEFAULT_TEMPLATE,
        progress: bool = False,
    ) -> None:
        try:
            import vllm
        except ImportError as exc:
            raise ImportError(
                "the vLLM judge backend needs vLLM on a CUDA machine: pip install 'openrlhf-visualprm[vllm]' "
                "(or use backend='hf')"
            ) from exc
        self._vllm = vllm
        self.model_id = str(model_path)
        self.max_new_tokens = max_new_tokens
        self.temperature = temperature
        self.top_p = top_p
        self.seed = seed
        self.stop_at_answer = stop_at_answer
        self.ignore_eos = ignore_eos
        self.template = template
        self.progress = progress
        if processor is None:
            from transformers import AutoProcessor

            processor = AutoProcessor.from_pretrained(model_path)
            require_chat_template(processor, model_path)
        self.processor = processor
        self.tokenizer = getattr(processor, "tokenizer", processor)
        self.special_tokens = control_tokens(self.tokenizer)
        if llm is None:
            kwargs: dict[str, Any] = {
                "model": str(model_path),
                "enable_prefix_caching": enable_prefix_caching,
                "gpu_memory_utilization": gpu_memory_utilization,
                "tensor_parallel_size": tensor_parallel_size,
                "limit_mm_per_prompt": {"image": max_images},
                "seed": seed,
            }
            if max_model_len:
                kwargs["max_model_len"] = max_model_len
            kwargs.update(llm_kwargs or {})
            llm = vllm.LLM(**kwargs)
        self.llm = llm
        self.stats = _new_stats()

    def render(self, request: JudgeRequest, continuation: str = "") -> str:
        text = self.processor.apply_chat_template(
            request.messages(), tokenize=False, add_generation_prompt=True
        )
        return text + continuation

    @staticmethod
    def _prompt(text: str, request: JudgeRequest) -> dict:
        prompt: dict[str, Any] = {"prompt": text}
        if request.images:
            prompt["multi_modal_data"] = {"image": list(request.images)}
        return prompt

    def _count(self, outputs: Sequence[Any]) -> None:
        for o in outputs:
            self.stats["prompt_tokens"] += len(getattr(o, "prompt_token_ids", None) or [])
            self.stats["generated_tokens"] += len(getattr(o.outputs[0], "token_ids", None) or [])

    def generate(self, requests: Sequence[JudgeRequest]) -> list[str]:
        params_kw: dict[str, Any] = {
            "max_tokens": self.max_new_tokens,
            "temperature": self.temperature,
            "top_p": self.top_p,
            "seed": self.seed,
            "ignore_eos": self.ignore_eos,
        }
        if self.stop_at_answer:
            params_kw.update(stop=["</answer>"], include_stop_str_in_output=True)
        params = self._vllm.SamplingParams(**params_kw)
        prompts = [self._prompt(self.render(r), r) for r in requests]
        start = time.perf_counter()
        outputs = self.llm.generate(prompts, params, use_tqdm=self.progress)
        self.stats["seconds"] += time.perf_counter() - start
        self.stats["calls"] += len(requests)
        self.stats["batches"] += 1
        self._count(outputs)
        return [o.outputs[0].text for o in outputs]

    def _letter_params(self, labels: Sequence[str]) -> Any:
        vllm = self._vllm
        base = {"max_tokens": 1, "temperature": 0.0}
        sp = getattr(vllm, "sampling_params", None)
        structured = getattr(sp, "StructuredOutputsParams", None)
        if structured is not None:
            return vllm.SamplingParams(structured_outputs=structured(choice=list(labels)), **base)
        guided = getattr(sp, "GuidedDecodingParams", None)
        if guided is not None:  # vLLM < 0.12
            return vllm.SamplingParams(guided_decoding=guided(choice=list(labels)), **base)
        ids = [self.tokenizer.encode(label, add_special_tokens=False)[0] for label in labels]
        return vllm.SamplingParams(allowed_token_ids=ids, **base)

    def choose_label(self, requests: Sequence[JudgeRequest], partial_outputs: Sequence[str]) -> list[str]:
        suffix = self.template.forced_answer_prefix
        prompts = [
            self._prompt(self.render(r, continuation=p + suffix), r)
            for r, p in zip(requests, partial_outputs, strict=True)
        ]
        params = [self._letter_params(r.labels) for r in requests]
        outputs = self.llm.generate(prompts, params, use_tqdm=False)
        self.stats["calls"] += len(requests)
        self._count(outputs)
        out = []
        for req, o in zip(requests, outputs, strict=True):
            text = o.outputs[0].text.strip()
            # Structured output guarantees a label; anything else is reported, never guessed.
            out.append(text if text in req.labels else "")
        return out


def require_chat_template(processor: Any, path: str) -> None:
    """The judge prompt is a chat: a processor without a chat template is refused at load, by
    name (it used to fail at the first call, inside Jinja)."""
    tokenizer = getattr(processor, "tokenizer", processor)
    if not (getattr(processor, "chat_template", None) or getattr(tokenizer, "chat_template", None)):
        from ..errors import ModelError

        raise ModelError(
            f"judge model {path} has no chat template (processor and tokenizer): the judge needs a chat VLM "
            "such as Qwen/Qwen2.5-VL-7B-Instruct"
        )


def make_backend(path: str, backend: str = "hf", **kwargs: Any) -> JudgeBackend:
    """Build a backend by name (``"hf"`` or ``"vllm"``) for a resolved local checkpoint."""
    if backend == "hf":
        return HFBackend.from_pretrained(path, **kwargs)
    if backend == "vllm":
        kwargs.pop("device", None)
        kwargs.pop("dtype", None)
        kwargs.pop("batch_size", None)
        return VLLMBackend(path, **kwargs)
    raise ValueError(f"unknown judge backend {backend!r}; choose one of {BACKENDS}")
