"""VisualPRM scoring: P('+') per step, with three interchangeable computation paths.

- ``per-step``: one forward per step prefix (the early reference code). Slow; kept as the oracle.
- ``single``: one forward per response with all ``+`` placeholders (the released method), batched.
- ``shared``: the image + question prefix is run once per group (vision encoder once), its KV
  cache is repeated across the group, and the responses' suffixes run batched on top of it.
All three read the same logits at the same positions, so they agree to float rounding (tests check
1e-5 in fp32). Causal attention makes this exact: a step's score depends only on what precedes it.

Long responses: the prompt may not exceed ``max_length`` tokens (default: the LLM's
``max_position_embeddings``). Steps whose ``+`` placeholder does not fit are dropped from the end
and the result says so (``truncated=True`` and a ``note``); the aggregate covers the scored steps.
A response with no steps at all (empty, or nothing fits) gets ``empty_score`` and a note: never an
unexplained number.
"""

from __future__ import annotations

import logging
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from PIL import Image

from openrlhf_visualprm.errors import ModelError
from openrlhf_visualprm.images import DEFAULT_MAX_TILES, ImageRoots, load_image, preprocess_image
from openrlhf_visualprm.prm import template as T
from openrlhf_visualprm.prm.aggregate import aggregate
from openrlhf_visualprm.prm.checkpoint import load_visualprm
from openrlhf_visualprm.prm.config import DEFAULT_MAX_BATCH_TOKENS, METHODS, PRMConfig
from openrlhf_visualprm.steps import DEFAULT_SEPARATOR, Step, split_steps, steps_from_list

_DEFAULTS = PRMConfig()  # the scoring options' one set of defaults

logger = logging.getLogger(__name__)


@dataclass
class PRMResult:
    """Scores for one response. ``spans`` index the raw response text (``[start, end)``)."""

    steps: list[str]
    spans: list[tuple[int, int]]
    step_scores: list[float]
    score: float
    truncated: bool = False
    note: str | None = None

    def to_dict(self) -> dict:
        return {
            "steps": self.steps,
            "spans": [list(s) for s in self.spans],
            "step_scores": self.step_scores,
            "score": self.score,
            "truncated": self.truncated,
            "note": self.note,
        }


@dataclass
class _Encoded:
    """One response, tokenised: full prompt ids and the positions that predict each ``+``."""

    steps: list[Step]
    ids: list[int]
    score_positions: list[int]
    dropped: int = 0
    note: str | None = None
    scores: list[float] = field(default_factory=list)


class VisualPRM:
    """A loaded VisualPRM (native ``InternVLForConditionalGeneration``) plus its tokenizer.

    Scores every step of a response to an image + question: P('+') at each step's score token.
    Three paths give the same scores: ``per-step`` (one forward per step prefix, the early
    reference), ``single`` (one forward per response, the released method) and ``shared`` (image +
    question once per group, the responses on its KV cache). Load with :meth:`from_pretrained`.

    Args:
        model: the native InternVL model.
        tokenizer: its fast tokenizer (step positions come from character offsets).
        system_message: the system prompt text (see ``prm.template.resolve_system_message``).
        model_id: a name for logs and cache keys.
        max_tiles: InternVL dynamic tiles per image.
        max_length: token cap of one sequence; longer responses are cut and flagged ``truncated``.
        empty_score: the neutral score of an empty response.
        image_roots: folders image paths must resolve into.
    """

    def __init__(
        self,
        model: torch.nn.Module,
        tokenizer,
        system_message: str,
        model_id: str,
        max_tiles: int = DEFAULT_MAX_TILES,
        max_length: int | None = None,
        empty_score: float = 0.0,
        image_roots: ImageRoots | None = None,
        batch_size: int = 8,
        system_message_info: T.SystemMessage | None = None,
    ) -> None:
        self.model = model
        self.tokenizer = tokenizer
        self.system_message = system_message
        self.system_info = system_message_info or T.SystemMessage(
            system_message, "text", "text given by the caller"
        )
        self.model_id = model_id
        self.max_tiles = max_tiles
        self.empty_score = empty_score
        self.image_roots = image_roots
        self.batch_size = batch_size
        text_cfg = model.config.get_text_config()
        self.max_length = max_length or int(getattr(text_cfg, "max_position_embeddings", 32768))
        self.plus_id, self.minus_id = self._single_token_id(T.PLUS), self._single_token_id(T.MINUS)
        self.image_token_id = int(model.config.image_token_id)
        context_id = tokenizer.convert_tokens_to_ids(T.IMG_CONTEXT)
        if context_id != self.image_token_id:
            raise ModelError(
                f"tokenizer maps {T.IMG_CONTEXT} to {context_id} but the model expects image_token_id "
                f"{self.image_token_id}: tokenizer and checkpoint do not belong together"
            )
        self.pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
        # The tokenizer's own BOS rule, as the reference tokenises (InternLM2: <s>; Qwen2: none).
        self.bos_ids = T.special_prefix_ids(tokenizer)
        self.specials = set(getattr(tokenizer, "all_special_tokens", [])) | {
            t.content for t in getattr(tokenizer, "added_tokens_decoder", {}).values()
        }
        self.specials |= set(T._DEFAULT_SPECIALS)

    # ------------------------------------------------------------------ loading
    @classmethod
    def from_pretrained(
        cls,
        path_or_alias: str,
        device: str | torch.device = "cpu",
        dtype: torch.dtype | str = torch.float32,
        system_message: str | None = None,
        max_tiles: int = DEFAULT_MAX_TILES,
        attn_implementation: str | None = "sdpa",
        **kwargs,
    ) -> VisualPRM:
        """Load from a local folder, an alias (``visualprm``, ``visualprm-v1``) or a cached hub id.

        ``system_message``: ``prm`` | ``internvl2_5`` | ``config`` | the text itself | ``None``
        (the checkpoint config's, else InternVL2.5's; see :func:`template.resolve_system_message`).
        Weights load strictly, and the checks of :mod:`openrlhf_visualprm.prm.check` run on the
        loaded model: which system message is in use is logged, with anything that differs from
        the released checkpoints.
        """
        from openrlhf_visualprm.prm.check import check_loaded

        model, tokenizer, config_system, model_id = load_visualprm(
            path_or_alias, device=device, dtype=dtype, attn_implementation=attn_implementation
        )
        info = T.resolve_system_message(system_message, config_system, model_id)
        prm = cls(
            model,
            tokenizer,
            info.text,
            model_id,
            max_tiles=max_tiles,
            system_message_info=info,
            **kwargs,
        )
        report = check_loaded(prm)
        logger.info("%s", prm.describe_system_message())
        for warning in report.warnings:
            logger.warning("%s: %s", model_id, warning)
        prm.check_report = report
        return prm

    @property
    def system_message_choice(self) -> str:
        """How the system message was chosen: ``prm`` | ``internvl2_5`` | ``config`` | ``text``."""
        return self.system_info.choice

    def describe_system_message(self) -> str:
        """One line: which system message is in use and where it came from."""
        return self.system_info.describe(self.model_id)

    def _single_token_id(self, text: str) -> int:
        """Id of a one-character placeholder: its own vocabulary entry when there is one (the
        released code uses the token), else the single token the text encodes to."""
        tid = self.tokenizer.convert_tokens_to_ids(text)
        if isinstance(tid, int) and tid != self.tokenizer.unk_token_id and tid >= 0:
            return tid
        ids = self.tokenizer.encode(text, add_special_tokens=False)
        if len(ids) != 1:
            raise ModelError(f"{text!r} is not a single token in this tokenizer: {ids}")
        return ids[0]

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    # ------------------------------------------------------------------ prompt building
    def prepare_images(self, images: Sequence) -> tuple[torch.Tensor | None, list[int]]:
        """Load and tile images; returns stacked pixel values and tiles per image."""
        tensors, tiles = [], []
        for ref in images:
            img = (
                load_image(ref, self.image_roots) if not isinstance(ref, Image.Image) else ref.convert("RGB")
            )
            pv = preprocess_image(img, self.max_tiles)
            tensors.append(pv)
            tiles.append(pv.shape[0])
        if not tensors:
            return None, []
        return torch.cat(tensors), tiles

    def prefix_text(self, question: str, tiles_per_image: Sequence[int]) -> str:
        q = T.neutralize(question, self.specials - {T.IMAGE_PLACEHOLDER})
        q = T.expand_images(T.format_question(q, len(tiles_per_image)), tiles_per_image)
        return T.render_prefix(self.system_message, q)

    def prompt_text(self, question: str, steps: Sequence[str], tiles_per_image: Sequence[int]) -> str:
        """Exactly the text the model reads for one response (after neutralising specials)."""
        return self.prefix_text(question, tiles_per_image) + T.render_suffix(self._clean(steps))

    def _clean(self, steps: Sequence[str]) -> list[str]:
        return [T.neutralize(s, self.specials) for s in steps]

    def _encode(self, prefix: str, steps: list[Step]) -> _Encoded:
        """Tokenise prefix + steps; drop trailing steps that do not fit in ``max_length``."""
        texts = self._clean([s.text for s in steps])
        enc = self._tokenize(prefix, texts)
        if enc is None:
            return _Encoded(steps, [], [], note="empty response: no steps to score")
        ids, positions = enc
        keep = sum(1 for p in positions if p + 1 < self.max_length)
        if keep == len(steps):
            return _Encoded(steps, ids, positions)
        note = f"scored {keep} of {len(steps)} steps: the prompt exceeds max_length={self.max_length} tokens"
        if keep == 0:
            return _Encoded(steps, [], [], dropped=len(steps), note=note)
        ids, positions = self._tokenize(prefix, texts[:keep])
        return _Encoded(steps[:keep], ids, positions, dropped=len(steps) - keep, note=note)

    def _prefix_ids(self, prefix: str) -> list[int]:
        """Ids of the shared prefix, BOS rule included (so they are a prefix of every response's ids)."""
        return self.bos_ids + list(self.tokenizer(prefix, add_special_tokens=False)["input_ids"])

    def _tokenize(self, prefix: str, texts: list[str]) -> tuple[list[int], list[int]] | None:
        if not texts:
            return None
        text = prefix + T.render_suffix(texts)
        enc = self.tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
        lead = len(self.bos_ids)
        ids, offsets = self.bos_ids + list(enc["input_ids"]), enc["offset_mapping"]
        start_to_index = {start: i + lead for i, (start, end) in enumerate(offsets) if end > start}
        positions = []
        for char in T.placeholder_offsets(len(prefix), texts):
            idx = start_to_index.get(char)
            if idx is None or ids[idx] != self.plus_id:
                raise RuntimeError(
                    f"the '+' placeholder at character {char} did not tokenise to its own token"
                )
            positions.append(idx - 1)
        return ids, positions

    # ------------------------------------------------------------------ model calls
    def _plus_prob(self, hidden: torch.Tensor) -> torch.Tensor:
        """P('+') from last hidden states, softmax over the two logits ['+', '-'] only.

        Only two rows of the LM head are needed; they are applied in fp32 even for a bf16 model,
        because P('+') depends on the small difference of two large logits.
        """
        head = self.model.get_output_embeddings().weight
        w = head[[self.plus_id, self.minus_id]].float()
        logits = hidden.float() @ w.T
        bias = getattr(self.model.get_output_embeddings(), "bias", None)
        if bias is not None:
            logits = logits + bias[[self.plus_id, self.minus_id]].float()
        return torch.softmax(logits, dim=-1)[..., 0]

    def _backbone(self):
        return self.model.model

    @torch.inference_mode()
    def _forward_full(
        self, batch: list[list[int]], pixel_values: torch.Tensor | None, n_images_rows: int
    ) -> torch.Tensor:
        """Right-padded batch forward; returns last hidden states (b, L, h)."""
        dev = self.device
        length = max(len(x) for x in batch)
        ids = torch.full((len(batch), length), self.pad_id, dtype=torch.long)
        mask = torch.zeros((len(batch), length), dtype=torch.long)
        for i, x in enumerate(batch):
            ids[i, : len(x)] = torch.tensor(x)
            mask[i, : len(x)] = 1
        pv = None
        if pixel_values is not None:
            pv = pixel_values.repeat(n_images_rows, 1, 1, 1).to(dev, self.model.dtype)
        out = self._backbone()(
            input_ids=ids.to(dev), attention_mask=mask.to(dev), pixel_values=pv, use_cache=False
        )
        return out.last_hidden_state

    def _score_single(self, encs: list[_Encoded], pixel_values: torch.Tensor | None) -> None:
        todo = [e for e in encs if e.ids]
        for i in range(0, len(todo), self.batch_size):
            chunk = todo[i : i + self.batch_size]
            hidden = self._forward_full([e.ids for e in chunk], pixel_values, len(chunk))
            for row, e in enumerate(chunk):
                e.scores = self._plus_prob(hidden[row, e.score_positions]).tolist()

    def _score_per_step(self, prefix: str, encs: list[_Encoded], pixel_values: torch.Tensor | None) -> None:
        for e in encs:
            if not e.ids:
                continue
            texts = self._clean([s.text for s in e.steps])
            scores = []
            for k in range(1, len(texts) + 1):
                ids, positions = self._tokenize(prefix, texts[:k])
                hidden = self._forward_full([ids], pixel_values, 1)
                scores.append(float(self._plus_prob(hidden[0, positions[-1]])))
            e.scores = scores

    @torch.inference_mode()
    def _score_shared(self, prefix: str, encs: list[_Encoded], pixel_values: torch.Tensor | None) -> None:
        prefix_ids = self._prefix_ids(prefix)
        p = len(prefix_ids)
        shared = [e for e in encs if e.ids and e.ids[:p] == prefix_ids and len(e.ids) > p]
        # A response whose first step merges with the prefix's last token (BPE across the
        # boundary) cannot reuse the prefix's cache: score it on the single path instead.
        fallback = [e for e in encs if e.ids and e not in shared]
        if fallback:
            self._score_single(fallback, pixel_values)
        if not shared:
            return
        dev, backbone = self.device, self._backbone()
        pv = None if pixel_values is None else pixel_values.to(dev, self.model.dtype)
        out = backbone(input_ids=torch.tensor([prefix_ids], device=dev), pixel_values=pv, use_cache=True)
        lm = backbone.language_model
        for i in range(0, len(shared), self.batch_size):
            chunk = shared[i : i + self.batch_size]
            cache = _repeat_cache(out.past_key_values, len(chunk))
            suffixes = [e.ids[p:] for e in chunk]
            length = max(len(s) for s in suffixes)
            ids = torch.full((len(chunk), length), self.pad_id, dtype=torch.long)
            mask = torch.zeros((len(chunk), p + length), dtype=torch.long)
            mask[:, :p] = 1
            for r, s in enumerate(suffixes):
                ids[r, : len(s)] = torch.tensor(s)
                mask[r, p : p + len(s)] = 1
            positions = torch.arange(p, p + length).unsqueeze(0).expand(len(chunk), -1)
            hidden = lm(
                input_ids=ids.to(dev),
                attention_mask=mask.to(dev),
                position_ids=positions.to(dev),
                past_key_values=cache,
                use_cache=True,
            ).last_hidden_state
            for r, e in enumerate(chunk):
                rel = [q - p for q in e.score_positions]
                e.scores = self._plus_prob(hidden[r, rel]).tolist()

    # ------------------------------------------------------------------ public API
    @torch.inference_mode()
    def score(
        self,
        images: Sequence,
        question: str,
        responses: Sequence[str] | None = None,
        steps: Sequence[Sequence[str]] | None = None,
        method: str = _DEFAULTS.method,
        aggregation: str = _DEFAULTS.aggregation,
        max_steps: int | None = None,
        splitter: str | re.Pattern[str] = DEFAULT_SEPARATOR,
        temperature: float = _DEFAULTS.temperature,
    ) -> list[PRMResult]:
        """Score one group: responses (or explicit step lists) to the same image(s) + question.

        Args:
            images: path(s) under the image roots, bytes, data URIs or PIL images.
            question: the question the responses answer.
            responses: whole responses, split into steps by ``splitter``; or
            steps: explicit step lists (exactly one of the two).
            method: ``shared`` | ``single`` | ``per-step`` (same scores, different cost).
            aggregation: step scores -> one score (mean, min, last, product, softmin).
            max_steps: merge steps into at most this many blocks (16 is reported for v1.1 training).
            splitter: step separator string or compiled regex.
            temperature: softmin temperature.

        Returns:
            One :class:`PRMResult` per response: steps, spans, step_scores, score, truncated, note.

        Raises:
            ValueError: an unknown method, both or neither of responses/steps.
            InputError: the question's ``<image>`` placeholders do not match the images (part
                ``question``, reason ``image_placeholders``): a bad sample.
            ImageError: an image that is missing, outside the roots or unreadable (an InputError).
        """
        if method not in METHODS:
            raise ValueError(f"unknown method {method!r}; choose one of {', '.join(METHODS)}")
        if (responses is None) == (steps is None):
            raise ValueError(
                "give exactly one of responses= (split into steps) or steps= (explicit step lists)"
            )
        if isinstance(responses, str):
            responses = [responses]
        if isinstance(images, (str, bytes, Image.Image)):
            images = [images]
        T.format_question(question, len(images))  # placeholders vs images: InputError before decoding
        step_lists = self._steps_of(responses, steps, max_steps, splitter)
        pixel_values, tiles = self.prepare_images(list(images))
        prefix = self.prefix_text(question, tiles)
        encs = [self._encode(prefix, s) for s in step_lists]
        if method == "shared":
            self._score_shared(prefix, encs, pixel_values)
        elif method == "single":
            self._score_single(encs, pixel_values)
        else:
            self._score_per_step(prefix, encs, pixel_values)
        return [self._result(e, original, aggregation, temperature) for e, original in zip(encs, step_lists)]

    @torch.inference_mode()
    def score_many(
        self,
        groups: Sequence[tuple[Sequence, str, Sequence[str]]],
        method: str = _DEFAULTS.method,
        aggregation: str = _DEFAULTS.aggregation,
        max_steps: int | None = None,
        splitter: str | re.Pattern[str] = DEFAULT_SEPARATOR,
        temperature: float = _DEFAULTS.temperature,
        max_batch_tokens: int = DEFAULT_MAX_BATCH_TOKENS,
    ) -> list[list[PRMResult]]:
        """Score many groups ``(images, question, responses)`` at once (one RL step's work).

        On the shared path each group's image + question prefix runs once, and the response
        suffixes of *several* groups run in one batch on their prefixes' caches: a batch holds
        as many rows as fit ``rows * (longest prefix + longest suffix) <= max_batch_tokens``.
        Scores equal :meth:`score` per group to float rounding (padding only, masked out).
        """
        if method not in METHODS:
            raise ValueError(f"unknown method {method!r}; choose one of {', '.join(METHODS)}")
        if max_batch_tokens < 1:
            raise ValueError(f"max_batch_tokens must be >= 1, got {max_batch_tokens}")
        if method != "shared":
            kw = dict(method=method, aggregation=aggregation, max_steps=max_steps, splitter=splitter)
            return [
                self.score(im, q, responses=list(r), temperature=temperature, **kw) for im, q, r in groups
            ]
        prepared = []
        for images, question, responses in groups:
            if isinstance(images, (str, bytes, Image.Image)):
                images = [images]
            T.format_question(question, len(images))  # InputError before any image is decoded
            step_lists = self._steps_of(list(responses), None, max_steps, splitter)
            pixel_values, tiles = self.prepare_images(list(images))
            prefix = self.prefix_text(question, tiles)
            prepared.append((prefix, pixel_values, [self._encode(prefix, s) for s in step_lists], step_lists))
        self._score_shared_many([(pre, pv, encs) for pre, pv, encs, _ in prepared], max_batch_tokens)
        return [
            [self._result(e, original, aggregation, temperature) for e, original in zip(encs, step_lists)]
            for _, _, encs, step_lists in prepared
        ]

    def _score_shared_many(
        self, items: list[tuple[str, torch.Tensor | None, list[_Encoded]]], max_batch_tokens: int
    ) -> None:
        """The shared path across groups: prefix caches computed when first needed, dropped after
        their group's last batch, right-padded to the batch's longest prefix (padding masked)."""
        dev, backbone = self.device, self._backbone()
        prefix_ids, work = [], []
        for gi, (prefix, pixel_values, encs) in enumerate(items):
            ids = self._prefix_ids(prefix)
            p = len(ids)
            shared = [e for e in encs if e.ids and e.ids[:p] == ids and len(e.ids) > p]
            fallback = [e for e in encs if e.ids and e not in shared]  # BPE merge across the boundary
            if fallback:
                self._score_single(fallback, pixel_values)
            prefix_ids.append(ids)
            work += [(gi, e) for e in shared]
        last_use = {gi: k for k, (gi, _) in enumerate(work)}
        caches: dict[int, Any] = {}
        i = 0
        while i < len(work):
            gi0, e0 = work[i]
            big_p, big_l, j = len(prefix_ids[gi0]), len(e0.ids) - len(prefix_ids[gi0]), i + 1
            while j < len(work):
                gj, ej = work[j]
                p2 = max(big_p, len(prefix_ids[gj]))
                l2 = max(big_l, len(ej.ids) - len(prefix_ids[gj]))
                if (j - i + 1) * (p2 + l2) > max_batch_tokens:
                    break
                big_p, big_l, j = p2, l2, j + 1
            chunk = work[i:j]
            for gi in dict.fromkeys(g for g, _ in chunk):
                if gi not in caches:
                    pv = items[gi][1]
                    pv = None if pv is None else pv.to(dev, self.model.dtype)
                    out = backbone(
                        input_ids=torch.tensor([prefix_ids[gi]], device=dev), pixel_values=pv, use_cache=True
                    )
                    caches[gi] = out.past_key_values
            self._run_suffixes(chunk, prefix_ids, caches, big_p, big_l)
            for gi in [g for g in caches if last_use[g] < j]:
                del caches[gi]
            i = j

    def _run_suffixes(self, chunk, prefix_ids, caches, big_p: int, big_l: int) -> None:
        dev, rows = self.device, len(chunk)
        lm = self._backbone().language_model
        ids = torch.full((rows, big_l), self.pad_id, dtype=torch.long)
        mask = torch.zeros((rows, big_p + big_l), dtype=torch.long)
        positions = torch.zeros((rows, big_l), dtype=torch.long)
        for r, (gi, e) in enumerate(chunk):
            p = len(prefix_ids[gi])
            s = e.ids[p:]
            ids[r, : len(s)] = torch.tensor(s)
            mask[r, :p] = 1
            mask[r, big_p : big_p + len(s)] = 1
            positions[r] = torch.arange(p, p + big_l)
        data = []
        first = caches[chunk[0][0]]
        for layer in range(len(first.layers)):
            ref = first.layers[layer].keys
            keys = ref.new_zeros((rows, ref.shape[1], big_p, ref.shape[3]))
            values = first.layers[layer].values.new_zeros((rows, ref.shape[1], big_p, ref.shape[3]))
            for r, (gi, _) in enumerate(chunk):
                src = caches[gi].layers[layer]
                p = src.keys.shape[2]
                keys[r, :, :p] = src.keys[0]
                values[r, :, :p] = src.values[0]
            data.append((keys, values))
        from transformers import DynamicCache

        hidden = lm(
            input_ids=ids.to(dev),
            attention_mask=mask.to(dev),
            position_ids=positions.to(dev),
            past_key_values=DynamicCache(ddp_cache_data=data),
            use_cache=True,
        ).last_hidden_state
        for r, (gi, e) in enumerate(chunk):
            p = len(prefix_ids[gi])
            e.scores = self._plus_prob(hidden[r, [q - p for q in e.score_positions]]).tolist()

    def _steps_of(self, responses, steps, max_steps, splitter) -> list[list[Step]]:
        if steps is not None:
            out = []
            for i, lst in enumerate(steps):
                if isinstance(lst, str) or not all(isinstance(s, str) for s in lst):
                    raise TypeError(f"steps[{i}] must be a list of strings")
                out.append(steps_from_list(list(lst))[1])
            return out
        out = []
        for i, r in enumerate(responses):
            if not isinstance(r, str):
                raise TypeError(f"responses[{i}] must be a str, got {type(r).__name__}")
            out.append(split_steps(r, max_steps=max_steps, splitter=splitter))
        return out

    def _result(self, e: _Encoded, original: list[Step], how: str, temperature: float) -> PRMResult:
        steps = [s.text for s in e.steps]
        spans = [(s.start, s.end) for s in e.steps]
        if not e.scores:
            note = e.note or "empty response: no steps to score"
            return PRMResult(
                [s.text for s in original],
                [(s.start, s.end) for s in original],
                [],
                self.empty_score,
                truncated=bool(e.dropped),
                note=f"{note}; empty_score={self.empty_score} assigned",
            )
        score = aggregate(e.scores, how, temperature)
        if not math.isfinite(score):
            raise FloatingPointError(f"non-finite PRM score {score} from step scores {e.scores}")
        return PRMResult(steps, spans, [float(s) for s in e.scores], float(score), bool(e.dropped), e.note)


def _repeat_cache(cache, n: int):
    """A new cache holding ``cache`` (batch 1) broadcast to batch ``n``; the original is untouched.

    The prefix keys/values are expanded as views; they are materialised once, when the suffix's
    keys/values are appended to them.
    """
    from transformers import DynamicCache

    data = [(layer.keys.expand(n, -1, -1, -1), layer.values.expand(n, -1, -1, -1)) for layer in cache.layers]
    return DynamicCache(ddp_cache_data=data)
