"""The foundation: CLI help, tiny checkpoints loading offline, deterministic demo data."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import torch
from PIL import Image

from openrlhf_visualprm import cli
from openrlhf_visualprm.data.demo_data import load_demo_data, make_demo_data


def test_help_lists_every_subcommand(capsys):
    assert cli.main(["--help"]) == 0
    out = capsys.readouterr().out
    for name in cli.SUBCOMMANDS:
        assert name in out


def test_unknown_subcommand_names_it(capsys):
    assert cli.main(["no-such-thing"]) == 2
    assert "no-such-thing" in capsys.readouterr().err


def test_console_script_help_runs():
    out = subprocess.run(
        [sys.executable, "-m", "openrlhf_visualprm.cli", "--help"], capture_output=True, text=True, check=True
    )
    assert "make-tiny-models" in out.stdout


@pytest.mark.parametrize("name", ["visualprm-tiny", "judge-tiny"])
def test_tiny_models_load_offline_and_run(tiny_models, name, monkeypatch):
    from transformers import AutoModelForImageTextToText, AutoProcessor

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    path = tiny_models[name]
    proc = AutoProcessor.from_pretrained(path)
    model = AutoModelForImageTextToText.from_pretrained(path, dtype=torch.float32).eval()
    image = Image.new("RGB", (900, 500), (200, 30, 30))
    if name == "visualprm-tiny":
        assert type(model).__name__ == "InternVLForConditionalGeneration"
        assert model.config.system_message
        assert proc.tokenizer.convert_tokens_to_ids("<IMG_CONTEXT>") == model.config.image_token_id
        text = "<IMG_CONTEXT>\nWhat is shown?"
    else:
        assert type(model).__name__ == "Qwen2_5_VLForConditionalGeneration"
        msgs = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "What is shown?"}]}]
        text = proc.apply_chat_template(msgs, add_generation_prompt=True)
    inputs = proc(images=[image], text=[text], return_tensors="pt")
    with torch.no_grad():
        logits = model(**inputs).logits
    assert logits.shape[:2] == inputs["input_ids"].shape
    assert torch.isfinite(logits).all()
    if name == "visualprm-tiny":
        # 900x500 -> a 2x1 grid plus a thumbnail: 3 tiles of 256 image tokens each.
        assert int((inputs["input_ids"] == model.config.image_token_id).sum()) == 3 * 256


def test_demo_data_is_deterministic_and_consistent(tmp_path):
    a = load_demo_data(make_demo_data(tmp_path / "a", n_items=6, seed=3))
    b = load_demo_data(make_demo_data(tmp_path / "b", n_items=6, seed=3))
    assert a == b
    assert {item["kind"] for item in a} == {"rectangle", "bar_chart", "angle"}
    for item in a:
        assert (tmp_path / "a" / item["image"]).is_file()
        Image.open(tmp_path / "a" / item["image"]).verify()
        kinds = [c["correct"] for c in item["candidates"]]
        assert any(kinds) and not all(kinds)
        for cand in item["candidates"]:
            assert cand["response"] == "\n\n".join(cand["steps"])
            final = cand["steps"][-1]
            # A correct candidate ends on the ground truth; a planted error never does.
            assert (f"The answer is {item['answer']}." == final) == cand["correct"]
            assert (cand["wrong_step"] is None) == cand["correct"]
    assert json.dumps(a)  # serialisable as written
