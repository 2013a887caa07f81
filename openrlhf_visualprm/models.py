"""Loading reward-model checkpoints offline: local folders, aliases, the Hugging Face cache.

VisualPRM ships in two layouts:
- transformers-native ``InternVLForConditionalGeneration`` (``model_type: internvl``): loaded as is.
- the original ``internvl_chat`` remote-code layout (VisualPRM-8B v1 on InternLM2, v1.1 on Qwen2):
  its remote code breaks on transformers 5.x, so we never run it (no ``trust_remote_code``);
  ``openrlhf_visualprm.prm.convert`` maps its config and weights onto the native classes.
Nothing is downloaded: a hub id resolves only through the local HF cache.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

import torch

logger = logging.getLogger(__name__)

# alias -> hub repo id. The registry (openrlhf_visualprm.registry) is the user-facing table;
# this is the loader's view of the PRM aliases.
PRM_ALIASES = {
    "visualprm": "OpenGVLab/VisualPRM-8B-v1_1",
    "visualprm-v1.1": "OpenGVLab/VisualPRM-8B-v1_1",
    "visualprm-v1": "OpenGVLab/VisualPRM-8B",
}


class CheckpointNotFound(FileNotFoundError):
    """No local copy of a checkpoint; the message says what was looked for and how to fetch it."""


def resolve_checkpoint(name_or_path: str, aliases: dict[str, str] | None = None) -> Path:
    """Local folder for ``name_or_path``: an existing folder, an alias, or a hub id in the HF cache."""
    aliases = PRM_ALIASES if aliases is None else aliases
    path = Path(os.path.expanduser(str(name_or_path)))
    if path.is_dir():
        return path
    repo_id = aliases.get(str(name_or_path).lower(), str(name_or_path))
    looked = [f"a local folder {str(path)!r}"]
    if "/" in repo_id and not repo_id.startswith((".", "/")) and repo_id.count("/") == 1:
        try:
            from huggingface_hub import snapshot_download

            return Path(snapshot_download(repo_id, local_files_only=True))
        except Exception as exc:  # noqa: BLE001 - any miss means "not cached"
            looked.append(f"hub id {repo_id!r} in the HF cache ({type(exc).__name__})")
    known = ", ".join(sorted(aliases))
    raise CheckpointNotFound(
        f"checkpoint {name_or_path!r} not found offline; looked for {' and '.join(looked)}. "
        f"Known aliases: {known}. On a machine with internet run "
        f"`huggingface-cli download {repo_id}` (then copy ~/.cache/huggingface here), "
        "or pass the path of a local checkpoint folder."
    )


def read_config(folder: Path) -> dict:
    cfg = folder / "config.json"
    if not cfg.is_file():
        raise CheckpointNotFound(f"{folder} has no config.json: not a model checkpoint")
    with cfg.open(encoding="utf-8") as f:
        return json.loads(f.read())


DTYPES = {
    "float32": torch.float32,
    "fp32": torch.float32,
    "bfloat16": torch.bfloat16,
    "bf16": torch.bfloat16,
    "float16": torch.float16,
    "fp16": torch.float16,
}


def as_dtype(dtype: torch.dtype | str | None, allow_auto: bool = False):
    """A ``torch.dtype`` from a dtype or its usual names; ``"auto"``/None pass through when allowed."""
    if isinstance(dtype, torch.dtype):
        return dtype
    if allow_auto and dtype in (None, "auto"):
        return dtype
    if dtype not in DTYPES:
        extra = " or 'auto'" if allow_auto else ""
        raise ValueError(f"unknown dtype {dtype!r}; choose one of {', '.join(DTYPES)}{extra}")
    return DTYPES[dtype]


def load_visualprm(
    name_or_path: str,
    device: str | torch.device = "cpu",
    dtype: torch.dtype | str = torch.float32,
    attn_implementation: str | None = "sdpa",
):
    """Return ``(model, tokenizer, system_message_or_None, model_id)`` for a VisualPRM checkpoint."""
    from transformers import AutoTokenizer, InternVLForConditionalGeneration

    folder = resolve_checkpoint(name_or_path)
    raw = read_config(folder)
    model_type = raw.get("model_type")
    torch_dtype = as_dtype(dtype)
    if model_type == "internvl":
        model = InternVLForConditionalGeneration.from_pretrained(
            folder, dtype=torch_dtype, attn_implementation=attn_implementation
        )
        system_message = raw.get("system_message")
    elif model_type == "internvl_chat":
        from openrlhf_visualprm.prm.convert import load_internvl_chat

        model, system_message = load_internvl_chat(
            folder, dtype=torch_dtype, attn_implementation=attn_implementation
        )
    else:
        raise ValueError(
            f"{folder} has model_type {model_type!r}; VisualPRM needs 'internvl' (native) or "
            "'internvl_chat' (the original release)"
        )
    tokenizer = AutoTokenizer.from_pretrained(folder)
    model.to(device).eval()
    return model, tokenizer, system_message, str(name_or_path)
