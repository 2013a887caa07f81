"""Original ``internvl_chat`` checkpoints (VisualPRM v1 on InternLM2, v1.1 on Qwen2) load onto the
native classes without remote code and score exactly like the native model they were written from.

The synthetic checkpoints are written here in the original layout by an explicit inverse mapping,
so a wrong rename, split or transpose in the loader shows up as a score mismatch.
"""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import save_file

from openrlhf_visualprm.errors import ModelError
from openrlhf_visualprm.prm.scorer import VisualPRM

VISION_INV = {
    "attention.projection_layer.": "attn.proj.",
    "lambda_1": "ls1",
    "lambda_2": "ls2",
    "layernorm_before.": "norm1.",
    "layernorm_after.": "norm2.",
    "mlp.fc1.": "mlp.fc1.",
    "mlp.fc2.": "mlp.fc2.",
}
LLAMA_INV = {
    "self_attn.o_proj.": "attention.wo.",
    "mlp.gate_proj.": "feed_forward.w1.",
    "mlp.up_proj.": "feed_forward.w3.",
    "mlp.down_proj.": "feed_forward.w2.",
    "input_layernorm.": "attention_norm.",
    "post_attention_layernorm.": "ffn_norm.",
}


def to_original(sd: dict, text_cfg, internlm2: bool) -> dict:
    out = {}
    qkv = {}
    for k, t in sd.items():
        t = t.clone().contiguous()
        if k.startswith("model.vision_tower.embeddings."):
            rest = k[len("model.vision_tower.embeddings.") :]
            name = {
                "cls_token": "class_embedding",
                "position_embeddings": "position_embedding",
                "patch_embeddings.projection.weight": "patch_embedding.weight",
                "patch_embeddings.projection.bias": "patch_embedding.bias",
            }[rest]
            out["vision_model.embeddings." + name] = t
        elif k.startswith("model.vision_tower.encoder.layer."):
            layer, rest = k[len("model.vision_tower.encoder.layer.") :].split(".", 1)
            if rest.startswith("attention.") and rest.split(".")[1] in ("q_proj", "k_proj", "v_proj"):
                qkv.setdefault(("v", layer, rest.rsplit(".", 1)[1]), {})[rest.split(".")[1][0]] = t
                continue
            for a, b in VISION_INV.items():
                if rest.startswith(a):
                    out[f"vision_model.encoder.layers.{layer}.{b}{rest[len(a) :]}"] = t
                    break
            else:
                raise AssertionError(k)
        elif k.startswith("model.multi_modal_projector."):
            name, p = k[len("model.multi_modal_projector.") :].split(".")
            out[f"mlp1.{ {'layer_norm': 0, 'linear_1': 1, 'linear_2': 3}[name] }.{p}"] = t
        elif k == "lm_head.weight":
            out["language_model.output.weight" if internlm2 else "language_model.lm_head.weight"] = t
        elif k.startswith("model.language_model."):
            rest = k[len("model.language_model.") :]
            if not internlm2:
                out["language_model.model." + rest] = t
            elif rest == "embed_tokens.weight":
                out["language_model.model.tok_embeddings.weight"] = t
            elif rest == "norm.weight":
                out["language_model.model.norm.weight"] = t
            else:
                _, layer, sub = rest.split(".", 2)
                if sub.split(".")[1] in ("q_proj", "k_proj", "v_proj"):
                    qkv.setdefault(("l", layer, "weight"), {})[sub.split(".")[1][0]] = t
                    continue
                for a, b in LLAMA_INV.items():
                    if sub.startswith(a):
                        out[f"language_model.model.layers.{layer}.{b}{sub[len(a) :]}"] = t
                        break
                else:
                    raise AssertionError(k)
        else:
            raise AssertionError(k)
    for (kind, layer, p), parts in qkv.items():
        if kind == "v":
            out[f"vision_model.encoder.layers.{layer}.attn.qkv.{p}"] = torch.cat(
                [parts["q"], parts["k"], parts["v"]]
            )
        else:  # InternLM2 grouped packing: per kv head, its q heads then k then v
            heads, kv = text_cfg.num_attention_heads, text_cfg.num_key_value_heads
            d = text_cfg.hidden_size // heads
            q = parts["q"].reshape(kv, heads // kv, d, -1)
            kk = parts["k"].reshape(kv, 1, d, -1)
            v = parts["v"].reshape(kv, 1, d, -1)
            out[f"language_model.model.layers.{layer}.attention.wqkv.weight"] = torch.cat(
                [q, kk, v], 1
            ).reshape(-1, text_cfg.hidden_size)
    return out


def write_original(native, tokenizer_src, folder, internlm2: bool, system_message="ORIGINAL SYS"):
    cfg = native.config
    v = cfg.vision_config
    text = cfg.text_config.to_dict()
    if internlm2:
        llm = {
            "architectures": ["InternLM2ForCausalLM"],
            "model_type": "internlm2",
            "bias": False,
            **{
                k: text[k]
                for k in (
                    "vocab_size",
                    "hidden_size",
                    "intermediate_size",
                    "num_hidden_layers",
                    "num_attention_heads",
                    "num_key_value_heads",
                    "rms_norm_eps",
                    "max_position_embeddings",
                )
            },
            "rope_theta": cfg.text_config.rope_parameters["rope_theta"],
        }
    else:
        llm = {**text, "architectures": ["Qwen2ForCausalLM"]}
    raw = {
        "model_type": "internvl_chat",
        "architectures": ["InternVLRewardModel"],
        "template": "internvl2_5",
        "downsample_ratio": 0.5,
        "select_layer": -1,
        "force_image_size": 448,
        "ps_version": "v2",
        "system_message": system_message,
        "vision_config": {
            "model_type": "intern_vit_6b",
            "hidden_size": v.hidden_size,
            "intermediate_size": v.intermediate_size,
            "num_hidden_layers": v.num_hidden_layers,
            "num_attention_heads": v.num_attention_heads,
            "image_size": 448,
            "patch_size": 14,
            "qkv_bias": True,
            "qk_normalization": False,
            "norm_type": "layer_norm",
            "layer_norm_eps": v.layer_norm_eps,
        },
        "llm_config": llm,
    }
    folder.mkdir(parents=True)
    (folder / "config.json").write_text(json.dumps(raw, default=str))
    save_file(to_original(native.state_dict(), cfg.text_config, internlm2), str(folder / "model.safetensors"))
    for f in tokenizer_src.glob("tokenizer*"):
        shutil.copy(f, folder / f.name)


def _img():
    return Image.fromarray(np.random.default_rng(0).integers(0, 255, (500, 900, 3), dtype=np.uint8))


RESPONSES = ["Sides 4 and 3.\n\nArea 12.\n\nThe answer is 12.", "Area is 14.\n\nThe answer is 14."]


def test_qwen2_v1_1_layout_loads_and_matches(tiny_prm_path, tmp_path):
    native = VisualPRM.from_pretrained(str(tiny_prm_path))
    write_original(
        native.model, tiny_prm_path, tmp_path / "orig", internlm2=False, system_message=native.system_message
    )
    converted = VisualPRM.from_pretrained(str(tmp_path / "orig"))
    assert converted.system_message == native.system_message  # read from the original config
    a = native.score([_img()], "Q", RESPONSES)
    b = converted.score([_img()], "Q", RESPONSES)
    for x, y in zip(a, b):
        assert np.allclose(x.step_scores, y.step_scores, atol=1e-6)


def test_internlm2_v1_layout_loads_and_matches(tiny_prm_path, tmp_path):
    from transformers import AutoTokenizer, InternVLConfig, InternVLForConditionalGeneration

    base = InternVLConfig.from_pretrained(tiny_prm_path)
    text = {
        "model_type": "llama",
        "vocab_size": base.text_config.vocab_size,
        "hidden_size": 64,
        "intermediate_size": 96,
        "num_hidden_layers": 2,
        "num_attention_heads": 4,
        "num_key_value_heads": 2,
        "rms_norm_eps": 1e-6,
        "max_position_embeddings": 4096,
        "rope_theta": 10000.0,
        "initializer_range": 0.5,
    }
    cfg = InternVLConfig(
        vision_config=base.vision_config.to_dict(),
        text_config=text,
        image_token_id=base.image_token_id,
        tie_word_embeddings=False,
    )
    torch.manual_seed(1)
    model = InternVLForConditionalGeneration(cfg).eval()
    tok = AutoTokenizer.from_pretrained(tiny_prm_path)
    native = VisualPRM(model, tok, "S", "native-llama")
    write_original(model, tiny_prm_path, tmp_path / "v1", internlm2=True, system_message=None)
    converted = VisualPRM.from_pretrained(str(tmp_path / "v1"), system_message="S")
    assert type(converted.model.model.language_model).__name__ == "LlamaModel"
    a = native.score([_img()], "Q", RESPONSES)
    b = converted.score([_img()], "Q", RESPONSES)
    for x, y in zip(a, b):
        assert np.allclose(x.step_scores, y.step_scores, atol=1e-6)
    assert max(abs(s - 0.5) for r in a for s in r.step_scores) > 1e-3  # not a degenerate all-equal model


def test_unmapped_weight_is_named(tiny_prm_path, tmp_path):
    from safetensors.torch import load_file

    native = VisualPRM.from_pretrained(str(tiny_prm_path))
    folder = tmp_path / "broken"
    write_original(native.model, tiny_prm_path, folder, internlm2=False)
    sd = load_file(str(folder / "model.safetensors"))
    sd["vision_model.encoder.layers.0.mystery.weight"] = torch.zeros(1)
    save_file(sd, str(folder / "model.safetensors"))
    with pytest.raises(KeyError, match="mystery"):
        VisualPRM.from_pretrained(str(folder))


def test_tokenizer_needing_remote_code_gets_a_clear_error(tiny_prm_path, tmp_path):
    """Without tokenizer.json a remote-code tokenizer (InternLM2's) cannot load: say what to do."""
    folder = tmp_path / "no-fast-tokenizer"
    shutil.copytree(tiny_prm_path, folder)
    (folder / "tokenizer.json").unlink()
    cfg = json.loads((folder / "tokenizer_config.json").read_text())
    cfg["tokenizer_class"] = "InternLM2Tokenizer"
    cfg["auto_map"] = {"AutoTokenizer": ["tokenization_internlm2.InternLM2Tokenizer", None]}
    (folder / "tokenizer_config.json").write_text(json.dumps(cfg))
    with pytest.raises(ModelError, match="tokenizer.json"):
        VisualPRM.from_pretrained(str(folder))
