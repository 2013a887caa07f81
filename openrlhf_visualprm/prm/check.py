"""``check-model``: load a VisualPRM strictly and compare it with what the released checkpoints expect.

A reward model that loads with missing weights, reads the wrong system message or tokenises
without its BOS still produces numbers: plausible, wrong ones. This module says, for one
checkpoint, everything the scorer relies on: layout and architecture, image tokens per tile,
the ``+`` / ``-`` ids, the BOS rule, the system message and where it came from; and it warns
about anything that differs from the released VisualPRM-8B (v1, InternLM2) and
VisualPRM-8B-v1.1 (Qwen2) checkpoints.

:func:`check_loaded` runs on an already loaded :class:`~openrlhf_visualprm.prm.scorer.VisualPRM`
(no forward pass); ``VisualPRM.from_pretrained`` calls it on every load, so reward workers,
evaluators and the CLI all log the same lines. :func:`check_model` loads and checks in one call
(for a launcher's pre-flight on the reward nodes). Weights always load strictly: the loader
raises on any missing or unexpected tensor.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import asdict, dataclass, field
from typing import Any

from openrlhf_visualprm.prm import template as T
from openrlhf_visualprm.prm.load_options import add_load_arguments

# What the released checkpoints have (spec visualprm.md): InternViT-300M-448px, patch 14,
# pixel shuffle 0.5 -> 256 tokens per 448 px tile, template internvl2_5.
RELEASED_TILE_SIZE = 448
RELEASED_PATCH_SIZE = 14
RELEASED_DOWNSAMPLE = 0.5
RELEASED_TEMPLATE = "internvl2_5"
# LLM family (native text model_type) -> the special tokens its released tokenizer prepends.
RELEASED_BOS = {"qwen2": [], "llama": ["<s>"]}  # InternLM2 is loaded onto the Llama architecture
LLM_NAMES = {
    "qwen2": "Qwen2 (VisualPRM-8B-v1.1 family)",
    "llama": "InternLM2 as Llama (VisualPRM-8B v1 family)",
}


@dataclass
class ModelCheck:
    """Everything the scorer relies on, plus warnings; :meth:`format` prints it for people."""

    model_id: str
    layout: str
    llm: str
    architecture: dict[str, Any]
    image_tokens_per_tile: int
    image_token: str
    image_token_id: int
    plus_id: int
    minus_id: int
    bos_rule: str
    bos_ids: list[int]
    system_message_choice: str
    system_message_source: str
    system_message: str
    weights: str
    warnings: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        return asdict(self)

    def format(self) -> str:
        lines = [
            f"model:            {self.model_id}",
            f"layout:           {self.layout}",
            f"LLM:              {self.llm}",
            "architecture:     " + ", ".join(f"{k} {v}" for k, v in self.architecture.items()),
            f"weights:          {self.weights}",
            f"image tokens:     {self.image_tokens_per_tile} per tile ({self.image_token} = id {self.image_token_id})",
            f"'+' / '-' ids:    {self.plus_id} / {self.minus_id}",
            f"BOS rule:         {self.bos_rule}",
            f"system message:   '{self.system_message_choice}' ({self.system_message_source})",
        ]
        lines += ["                  " + line for line in self.system_message.splitlines()[:3]]
        if len(self.system_message.splitlines()) > 3:
            lines.append("                  ...")
        lines += [f"note: {n}" for n in self.notes]
        lines += [f"WARNING: {w}" for w in self.warnings]
        if not self.warnings:
            lines.append("OK: matches the released checkpoints' expectations")
        return "\n".join(lines)


def _tokens_per_tile(config) -> int:
    vision = config.vision_config
    image = vision.image_size[0] if isinstance(vision.image_size, (list, tuple)) else vision.image_size
    patch = vision.patch_size[0] if isinstance(vision.patch_size, (list, tuple)) else vision.patch_size
    return int((image // patch) ** 2 * config.downsample_ratio**2)


def check_loaded(prm, raw_config: dict | None = None) -> ModelCheck:
    """Check a loaded ``VisualPRM``; hard inconsistencies were already refused while loading."""
    model, tokenizer = prm.model, prm.tokenizer
    config = model.config
    text = config.get_text_config()
    vision = config.vision_config
    raw = raw_config if raw_config is not None else _raw_config_of(prm)
    warnings: list[str] = []
    notes: list[str] = []

    image_size = vision.image_size[0] if isinstance(vision.image_size, (list, tuple)) else vision.image_size
    patch = vision.patch_size[0] if isinstance(vision.patch_size, (list, tuple)) else vision.patch_size
    per_tile = _tokens_per_tile(config)
    if per_tile != T.TOKENS_PER_TILE:
        warnings.append(
            f"{per_tile} image tokens per tile, but the prompt template expands each tile to "
            f"{T.TOKENS_PER_TILE} (released: {RELEASED_TILE_SIZE}px tiles, patch {RELEASED_PATCH_SIZE}, "
            f"pixel shuffle {RELEASED_DOWNSAMPLE}); image features will not fit the prompt"
        )
    elif (image_size, patch, config.downsample_ratio) != (
        RELEASED_TILE_SIZE,
        RELEASED_PATCH_SIZE,
        RELEASED_DOWNSAMPLE,
    ):
        warnings.append(
            f"vision geometry {image_size}px / patch {patch} / downsample {config.downsample_ratio} differs from "
            f"the released {RELEASED_TILE_SIZE}px / {RELEASED_PATCH_SIZE} / {RELEASED_DOWNSAMPLE}"
        )
    if int(getattr(config, "image_seq_length", per_tile)) != per_tile:
        warnings.append(
            f"config.image_seq_length is {config.image_seq_length} but the vision geometry gives {per_tile}"
        )

    family = str(text.model_type)
    bos_ids = list(prm.bos_ids)
    bos_tokens = tokenizer.convert_ids_to_tokens(bos_ids) if bos_ids else []
    if family not in RELEASED_BOS:
        warnings.append(
            f"LLM type {family!r} is neither Qwen2 (v1.1) nor InternLM2 (v1): no released checkpoint to compare"
        )
    elif bos_tokens != RELEASED_BOS[family]:
        warnings.append(
            f"the tokenizer prepends {bos_tokens or 'nothing'}, but the released {LLM_NAMES[family]} tokenizer "
            f"prepends {RELEASED_BOS[family] or 'nothing'}; scores are only comparable with the same BOS rule"
        )

    template = (raw or {}).get("template")
    if template is not None and template != RELEASED_TEMPLATE:
        warnings.append(
            f"config.template is {template!r}; the scorer renders the {RELEASED_TEMPLATE} template"
        )

    info = prm.system_info
    if info.choice == "internvl2_5" and info.source.startswith("default"):
        warnings.append(
            "the checkpoint config has no system_message: using InternVL2.5's default, as the released "
            "inference code does. Choose explicitly with --system-message prm|internvl2_5|TEXT"
        )
    if family == "qwen2" and info.choice != "prm":
        notes.append(
            "VisualPRM-8B-v1.1's training data used the pipeline's PRM system prompt; the released "
            "inference code uses the config's system message or InternVL2.5's default. "
            "--system-message prm matches training"
        )

    layout = (raw or {}).get("model_type", "internvl")
    layout_text = (
        "internvl_chat (original release, converted to native InternVL without remote code)"
        if layout == "internvl_chat"
        else "internvl (transformers-native InternVLForConditionalGeneration)"
    )
    n_tensors = len(model.state_dict())
    return ModelCheck(
        model_id=prm.model_id,
        layout=layout_text,
        llm=LLM_NAMES.get(family, family),
        architecture={
            "llm_layers": text.num_hidden_layers,
            "llm_hidden": text.hidden_size,
            "vocab": text.vocab_size,
            "max_positions": getattr(text, "max_position_embeddings", None),
            "vision_layers": vision.num_hidden_layers,
            "vision_hidden": vision.hidden_size,
            "tile": f"{image_size}px/patch {patch}",
        },
        image_tokens_per_tile=per_tile,
        image_token=T.IMG_CONTEXT,
        image_token_id=prm.image_token_id,
        plus_id=prm.plus_id,
        minus_id=prm.minus_id,
        bos_rule=T.describe_bos_rule(tokenizer),
        bos_ids=bos_ids,
        system_message_choice=info.choice,
        system_message_source=info.source,
        system_message=info.text,
        weights=f"{n_tensors} tensors loaded strictly (0 missing, 0 unexpected)",
        warnings=warnings,
        notes=notes,
    )


def _raw_config_of(prm) -> dict | None:
    """The checkpoint's own config.json (model_type, template) when the model came from a folder."""
    from openrlhf_visualprm.prm.checkpoint import read_config, resolve_checkpoint

    try:
        return read_config(resolve_checkpoint(prm.model_id))
    except (OSError, ValueError):
        return None


def check_model(path_or_alias: str, system_message: str | None = None, device: str = "cpu", dtype="float32"):
    """Load ``path_or_alias`` strictly and return its :class:`ModelCheck` (for pre-flight checks)."""
    from openrlhf_visualprm.prm.scorer import VisualPRM

    prm = VisualPRM.from_pretrained(path_or_alias, device=device, dtype=dtype, system_message=system_message)
    return prm.check_report


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.description = (
        "Load a VisualPRM checkpoint strictly and print what the scorer relies on (architecture, image "
        "tokens per tile, '+'/'-' ids, BOS rule, system message and its source), with a warning for "
        "anything that differs from the released checkpoints."
    )
    parser.add_argument(
        "model", metavar="PATH_OR_ALIAS", help="checkpoint folder or alias (visualprm, visualprm-v1)"
    )
    add_load_arguments(parser, tiles=False)
    parser.add_argument("--json", action="store_true", help="print the check as JSON")
    parser.add_argument("--strict", action="store_true", help="exit with status 1 when there is a warning")


def run(args: argparse.Namespace) -> int:
    from openrlhf_visualprm.torch_names import auto_dtype, cli_device, describe_device

    device = cli_device(args.device)
    print(describe_device(args.device, device), file=sys.stderr)
    report = check_model(
        args.model, system_message=args.system_message, device=device, dtype=auto_dtype(args.dtype, device)
    )
    if args.json:
        print(json.dumps(report.to_dict(), ensure_ascii=False, indent=2))
    else:
        print(report.format())
    if args.strict and report.warnings:
        print(f"{len(report.warnings)} warning(s) with --strict", file=sys.stderr)
        return 1
    return 0
