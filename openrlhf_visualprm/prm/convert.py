"""Load VisualPRM's original ``internvl_chat`` checkpoints onto transformers' native InternVL classes.

The released VisualPRM-8B (v1, InternLM2.5 LLM) and VisualPRM-8B-v1_1 (Qwen2 LLM) ship remote code
that no longer runs on transformers 5.x. Their weights are plain tensors, so we rename (and for
packed projections, split) them onto ``InternVLForConditionalGeneration`` without running any remote
code. Key mapping (original -> native module names):

Vision (InternViT):
  vision_model.embeddings.class_embedding            -> model.vision_tower.embeddings.cls_token
  vision_model.embeddings.patch_embedding.{w,b}      -> model.vision_tower.embeddings.patch_embeddings.projection.{w,b}
  vision_model.embeddings.position_embedding         -> model.vision_tower.embeddings.position_embeddings
  vision_model.encoder.layers.N.attn.qkv.{w,b}       -> ...encoder.layer.N.attention.{q,k,v}_proj.{w,b} (split in 3)
  vision_model.encoder.layers.N.attn.proj            -> ...encoder.layer.N.attention.projection_layer
  vision_model.encoder.layers.N.attn.{q,k}_norm      -> ...encoder.layer.N.attention.{q,k}_norm
  vision_model.encoder.layers.N.ls1 / ls2            -> ...encoder.layer.N.lambda_1 / lambda_2
  vision_model.encoder.layers.N.norm1 / norm2        -> ...encoder.layer.N.layernorm_before / layernorm_after
  vision_model.encoder.layers.N.mlp.fc1 / fc2        -> ...encoder.layer.N.mlp.fc1 / fc2
Projector:  mlp1.0 / mlp1.1 / mlp1.3                -> model.multi_modal_projector.layer_norm / linear_1 / linear_2
LLM, Qwen2 (v1.1): language_model.model.X -> model.language_model.X; language_model.lm_head -> lm_head
LLM, InternLM2 (v1) onto the Llama architecture:
  model.tok_embeddings -> embed_tokens; layers.N.attention.wqkv -> self_attn.{q,k,v}_proj (unpacked from
  InternLM2's grouped layout [kv_heads, q_per_kv + 2, head_dim, hidden]); attention.wo -> self_attn.o_proj;
  feed_forward.w1 / w3 / w2 -> mlp.gate_proj / up_proj / down_proj; attention_norm -> input_layernorm;
  ffn_norm -> post_attention_layernorm; model.norm -> norm; output -> lm_head.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import torch

from openrlhf_visualprm.errors import ModelError

_VISION_LAYER = [
    (r"attn\.proj\.", "attention.projection_layer."),
    (r"attn\.q_norm\.", "attention.q_norm."),
    (r"attn\.k_norm\.", "attention.k_norm."),
    (r"ls1$", "lambda_1"),
    (r"ls2$", "lambda_2"),
    (r"norm1\.", "layernorm_before."),
    (r"norm2\.", "layernorm_after."),
    (r"mlp\.fc1\.", "mlp.fc1."),
    (r"mlp\.fc2\.", "mlp.fc2."),
]
_INTERNLM2_LAYER = [
    (r"attention\.wo\.", "self_attn.o_proj."),
    (r"feed_forward\.w1\.", "mlp.gate_proj."),
    (r"feed_forward\.w3\.", "mlp.up_proj."),
    (r"feed_forward\.w2\.", "mlp.down_proj."),
    (r"attention_norm\.", "input_layernorm."),
    (r"ffn_norm\.", "post_attention_layernorm."),
]


def native_config(raw: dict, image_token_id: int):
    """Build an ``InternVLConfig`` from an ``internvl_chat`` config dict."""
    from transformers import InternVLConfig

    v = raw["vision_config"]
    llm = dict(raw["llm_config"])
    arch = (llm.get("architectures") or [""])[0]
    if llm.get("model_type") == "internlm2" or arch.startswith("InternLM2"):
        text = {
            "model_type": "llama",
            "vocab_size": llm["vocab_size"],
            "hidden_size": llm["hidden_size"],
            "intermediate_size": llm["intermediate_size"],
            "num_hidden_layers": llm["num_hidden_layers"],
            "num_attention_heads": llm["num_attention_heads"],
            "num_key_value_heads": llm.get("num_key_value_heads", llm["num_attention_heads"]),
            "rms_norm_eps": llm.get("rms_norm_eps", 1e-6),
            "rope_theta": llm.get("rope_theta", 10000.0),
            "max_position_embeddings": llm.get("max_position_embeddings", 32768),
            "attention_bias": bool(llm.get("bias", False)),
            "tie_word_embeddings": bool(llm.get("tie_word_embeddings", False)),
        }
        if llm.get("rope_scaling"):
            text["rope_scaling"] = llm["rope_scaling"]
    else:
        text = {k: val for k, val in llm.items() if k not in ("architectures", "auto_map", "_name_or_path")}
        text["model_type"] = llm.get("model_type", "qwen2")
    image_size = raw.get("force_image_size") or v.get("image_size", 448)
    vision = {
        "hidden_size": v["hidden_size"],
        "intermediate_size": v["intermediate_size"],
        "num_hidden_layers": v["num_hidden_layers"],
        "num_attention_heads": v["num_attention_heads"],
        "image_size": [image_size, image_size],
        "patch_size": [v.get("patch_size", 14)] * 2,
        "attention_bias": bool(v.get("qkv_bias", True)),
        "use_qk_norm": bool(v.get("qk_normalization", False)),
        "norm_type": v.get("norm_type", "layer_norm"),
        "layer_norm_eps": v.get("layer_norm_eps", 1e-6),
        "hidden_act": v.get("hidden_act", "gelu"),
        "use_mean_pooling": True,  # InternViT has no final norm: the native layernorm is then Identity
    }
    return InternVLConfig(
        vision_config=vision,
        text_config=text,
        image_token_id=image_token_id,
        image_seq_length=int(
            (image_size // vision["patch_size"][0]) ** 2 * raw.get("downsample_ratio", 0.5) ** 2
        ),
        downsample_ratio=raw.get("downsample_ratio", 0.5),
        vision_feature_layer=raw.get("select_layer", -1),
        vision_feature_select_strategy="default",
        tie_word_embeddings=text.get("tie_word_embeddings", False),
    )


def _rename(name: str, table: list[tuple[str, str]], error: str) -> str:
    """Apply the first matching (pattern, replacement) of a per-layer table; KeyError if none."""
    for pat, rep in table:
        if re.match(pat, name):
            return re.sub(pat, rep, name, count=1)
    raise KeyError(error)


def _split_internlm2_wqkv(w: torch.Tensor, heads: int, kv_heads: int, hidden: int):
    head_dim = hidden // heads
    per = heads // kv_heads
    g = w.reshape(kv_heads, per + 2, head_dim, -1)
    q = g[:, :per].reshape(heads * head_dim, -1)
    k = g[:, per].reshape(kv_heads * head_dim, -1)
    v = g[:, per + 1].reshape(kv_heads * head_dim, -1)
    return q, k, v


def convert_state_dict(sd: dict[str, torch.Tensor], config) -> dict[str, torch.Tensor]:
    """Rename/split an ``internvl_chat`` state dict to the native model's ``state_dict()`` keys."""
    text = config.text_config
    internlm2 = text.model_type == "llama"
    out: dict[str, torch.Tensor] = {}
    for key, t in sd.items():
        if key.startswith("vision_model."):
            k = key[len("vision_model.") :]
            if k == "embeddings.class_embedding":
                out["model.vision_tower.embeddings.cls_token"] = t
            elif k.startswith("embeddings.patch_embedding."):
                out["model.vision_tower.embeddings.patch_embeddings.projection." + k.rsplit(".", 1)[1]] = t
            elif k == "embeddings.position_embedding":
                out["model.vision_tower.embeddings.position_embeddings"] = t
            elif m := re.match(r"encoder\.layers\.(\d+)\.(.*)", k):
                layer, rest = m.groups()
                base = f"model.vision_tower.encoder.layer.{layer}."
                if rest.startswith("attn.qkv."):
                    for name, part in zip("qkv", t.chunk(3, dim=0)):
                        out[f"{base}attention.{name}_proj.{rest.rsplit('.', 1)[1]}"] = part
                    continue
                out[base + _rename(rest, _VISION_LAYER, f"unmapped vision weight {key}")] = t
            else:
                raise KeyError(f"unmapped vision weight {key}")
        elif key.startswith("mlp1."):
            idx, rest = key[len("mlp1.") :].split(".", 1)
            name = {"0": "layer_norm", "1": "linear_1", "3": "linear_2"}[idx]
            out[f"model.multi_modal_projector.{name}.{rest}"] = t
        elif key.startswith("language_model."):
            k = key[len("language_model.") :]
            if not internlm2:
                out[
                    "lm_head.weight"
                    if k == "lm_head.weight"
                    else "model.language_model." + k[len("model.") :]
                ] = t
                continue
            if k == "output.weight":
                out["lm_head.weight"] = t
            elif k == "model.tok_embeddings.weight":
                out["model.language_model.embed_tokens.weight"] = t
            elif k == "model.norm.weight":
                out["model.language_model.norm.weight"] = t
            elif m := re.match(r"model\.layers\.(\d+)\.(.*)", k):
                layer, rest = m.groups()
                base = f"model.language_model.layers.{layer}."
                if rest == "attention.wqkv.weight":
                    q, kk, v = _split_internlm2_wqkv(
                        t, text.num_attention_heads, text.num_key_value_heads, text.hidden_size
                    )
                    out[base + "self_attn.q_proj.weight"] = q
                    out[base + "self_attn.k_proj.weight"] = kk
                    out[base + "self_attn.v_proj.weight"] = v
                    continue
                out[base + _rename(rest, _INTERNLM2_LAYER, f"unmapped InternLM2 weight {key}")] = t
            else:
                raise KeyError(f"unmapped InternLM2 weight {key}")
        else:
            raise KeyError(f"unexpected weight {key} in an internvl_chat checkpoint")
    return out


def _read_weights(folder: Path) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    files = sorted(folder.glob("*.safetensors"))
    if files:
        sd = {}
        for f in files:
            sd.update(load_file(str(f)))
        return sd
    bins = sorted(folder.glob("pytorch_model*.bin"))
    if not bins:
        raise FileNotFoundError(f"{folder} has no *.safetensors or pytorch_model*.bin weights")
    sd = {}
    for f in bins:
        sd.update(torch.load(f, map_location="cpu", weights_only=True))
    return sd


def load_internvl_chat(
    folder: str | Path,
    tokenizer,
    dtype: torch.dtype = torch.float32,
    attn_implementation: str | None = "sdpa",
):
    """Return ``(native model, system_message or None)`` for an ``internvl_chat`` checkpoint folder.

    ``tokenizer`` is the checkpoint's own (it fixes the ``<IMG_CONTEXT>`` id in the native config).
    """
    from transformers import InternVLForConditionalGeneration

    folder = Path(folder)
    raw = json.loads((folder / "config.json").read_text(encoding="utf-8"))
    context_id = tokenizer.convert_tokens_to_ids("<IMG_CONTEXT>")
    if context_id is None or context_id == tokenizer.unk_token_id:
        raise ModelError(
            f"{folder}: the tokenizer has no <IMG_CONTEXT> token; not a VisualPRM/InternVL checkpoint"
        )
    config = native_config(raw, context_id)
    if attn_implementation:
        config._attn_implementation = attn_implementation
    with torch.device("meta"):
        model = InternVLForConditionalGeneration(config)
    sd = convert_state_dict(_read_weights(folder), config)
    expected = set(model.state_dict())
    missing, unexpected = expected - set(sd), set(sd) - expected
    if missing or unexpected:
        raise ModelError(
            f"{folder}: converted weights do not match the native model "
            f"(missing {sorted(missing)[:5]}, unexpected {sorted(unexpected)[:5]})"
        )
    model.load_state_dict({k: v.to(dtype) for k, v in sd.items()}, strict=True, assign=True)
    _rebuild_meta_buffers(model)
    if config.tie_word_embeddings:
        model.tie_weights()
    model = model.to(dtype).eval()
    return model, raw.get("system_message")


def _rebuild_meta_buffers(model: torch.nn.Module) -> None:
    """Recreate modules whose non-persistent buffers (rotary ``inv_freq``) stayed on the meta device.

    The model was built on ``meta`` so that an 8B checkpoint is never initialised randomly in CPU
    memory; weights arrive by ``assign``, but buffers computed in ``__init__`` must be recomputed.
    """
    for name, module in list(model.named_modules()):
        if any(b.is_meta for b in module.buffers(recurse=False)):
            if not hasattr(module, "rope_init_fn") and "rotary" not in type(module).__name__.lower():
                raise RuntimeError(f"buffer of {name} ({type(module).__name__}) was not restored")
            parent_name, _, child = name.rpartition(".")
            parent = model.get_submodule(parent_name) if parent_name else model
            setattr(parent, child, type(module)(config=module.config))
    left = [n for n, b in model.named_buffers() if b.is_meta]
    if left:
        raise RuntimeError(f"buffers left on the meta device: {left[:5]}")
