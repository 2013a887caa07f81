"""Loading VisualPRM checkpoints offline: local folders, aliases, the Hugging Face cache.

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
from pathlib import Path

import torch

from openrlhf_visualprm.errors import ModelError
from openrlhf_visualprm.registry import ModelNotFoundError as CheckpointNotFound
from openrlhf_visualprm.registry import require_local
from openrlhf_visualprm.torch_names import as_dtype

from .convert import load_internvl_chat

logger = logging.getLogger(__name__)


def resolve_checkpoint(name_or_path: str) -> Path:
    """Local folder for a VisualPRM: an existing folder, an alias, or a hub id in the HF cache.

    Aliases (``visualprm``, ``visualprm-v1``, and any the user registered) live in
    ``openrlhf_visualprm.registry``; nothing is downloaded.
    """
    return Path(require_local(str(name_or_path), kind="prm").path)


def load_tokenizer(folder: str | Path):
    """The checkpoint's tokenizer, without remote code; a clear error when that is impossible.

    VisualPRM-8B v1 ships InternLM2's remote-code tokenizer. transformers 5 loads any folder that
    has a ``tokenizer.json`` with its generic fast backend; without one there is no safe way in.
    """
    from transformers import AutoTokenizer

    try:
        tokenizer = AutoTokenizer.from_pretrained(folder)
    except Exception as exc:  # noqa: BLE001 - re-raised with what to do
        raise ModelError(
            f"{folder}: its tokenizer cannot be loaded without remote code ({type(exc).__name__}: {exc}). "
            "Add a fast-tokenizer file (tokenizer.json) to the folder, e.g. on a machine with the "
            "checkpoint's remote code: AutoTokenizer.from_pretrained(path, trust_remote_code=True)"
            ".save_pretrained(path)"
        ) from exc
    if not getattr(tokenizer, "is_fast", True):
        raise ModelError(
            f"{folder}: a fast tokenizer (tokenizer.json) is needed: step positions are found with "
            "character offsets, which slow tokenizers do not provide"
        )
    return tokenizer


def read_config(folder: Path) -> dict:
    cfg = folder / "config.json"
    if not cfg.is_file():
        raise CheckpointNotFound(f"{folder} has no config.json: not a model checkpoint")
    with cfg.open(encoding="utf-8") as f:
        return json.loads(f.read())


def load_visualprm(
    name_or_path: str,
    device: str | torch.device = "cpu",
    dtype: torch.dtype | str = torch.float32,
    attn_implementation: str | None = "sdpa",
):
    """Return ``(model, tokenizer, system_message_or_None, model_id)`` for a VisualPRM checkpoint."""
    from transformers import InternVLForConditionalGeneration

    folder = resolve_checkpoint(name_or_path)
    raw = read_config(folder)
    model_type = raw.get("model_type")
    torch_dtype = as_dtype(dtype)
    if model_type not in ("internvl", "internvl_chat"):
        raise ModelError(
            f"{folder} has model_type {model_type!r}; VisualPRM needs 'internvl' (native) or "
            "'internvl_chat' (the original release)"
        )
    tokenizer = load_tokenizer(folder)
    if model_type == "internvl":
        model, info = InternVLForConditionalGeneration.from_pretrained(
            folder, dtype=torch_dtype, attn_implementation=attn_implementation, output_loading_info=True
        )
        # Strict: a missing tensor would be randomly initialised and still give plausible scores.
        missing, unexpected = (
            sorted(info.get("missing_keys") or []),
            sorted(info.get("unexpected_keys") or []),
        )
        mismatched = sorted(str(k) for k in info.get("mismatched_keys") or [])
        if missing or unexpected or mismatched:
            raise ModelError(
                f"{folder}: the weights do not match the model (missing {len(missing)}: {missing[:5]}, "
                f"unexpected {len(unexpected)}: {unexpected[:5]}, shape mismatches {len(mismatched)}: "
                f"{mismatched[:5]}); refusing to score with a partly random model"
            )
        system_message = raw.get("system_message")
    elif model_type == "internvl_chat":
        model, system_message = load_internvl_chat(
            folder, tokenizer, dtype=torch_dtype, attn_implementation=attn_implementation
        )
    model.to(device).eval()
    return model, tokenizer, system_message, str(name_or_path)
