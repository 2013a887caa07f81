"""The one sample module: label decoding identical on every route, and the response extractor on
queries built exactly as OpenRLHF builds them for VLM processors (expanded image tokens)."""

from __future__ import annotations

import json

import cpu_stubs  # tests/support/, on sys.path through tests/conftest.py
import pytest
from PIL import Image

from openrlhf_visualprm.errors import PART_IMAGE, PART_LABEL, InputError
from openrlhf_visualprm.labels import Label, decode_label, extract_response, question_text

cpu_stubs.install()
from openrlhf.utils.vlm_utils import process_prompt_with_images  # noqa: E402

QUESTION = "What is the area of the rectangle?"
RESPONSE = "The sides are 9 and 8.\n\nThe area is 9 x 8 = 72.\n\nThe answer is \\boxed{72}."


def _openrlhf_query(processor, prompt: str, images: list, response: str) -> str:
    """What ``SingleTurnAgentExecutor.execute`` hands a reward function: the processor's prompt ids
    (image placeholders expanded) plus the response ids, decoded with special tokens kept."""
    prompt_ids, _, _ = process_prompt_with_images(processor, prompt, images)
    tokenizer = processor.tokenizer
    response_ids = tokenizer(response, add_special_tokens=False)["input_ids"]
    end = tokenizer.convert_tokens_to_ids("<|im_end|>")
    return processor.decode(prompt_ids + response_ids + [end], skip_special_tokens=False)


@pytest.fixture(scope="module")
def qwen_vl_processor(tiny_models):
    from transformers import AutoProcessor

    return AutoProcessor.from_pretrained(str(tiny_models["judge-tiny"]))


@pytest.fixture(scope="module")
def internvl_processor(tiny_models):
    from transformers import AutoProcessor

    return AutoProcessor.from_pretrained(str(tiny_models["visualprm-tiny"]))


# ----------------------------------------------------------------------------- decoding
def test_label_decoder_rules():
    assert decode_label("12") == Label(raw={"answer": "12"})
    assert decode_label(12).truth() == "12" and decode_label(" 12 ").truth() == "12"
    as_dict = {"answer": 72, "images": ["a.png"], "question": " Q ", "reference": "R"}
    assert decode_label(json.dumps(as_dict)) == decode_label(as_dict)
    label = decode_label(as_dict)
    assert (label.truth(), label.images, label.question, label.reference) == ("72", ("a.png",), "Q", "R")
    assert decode_label({"image": "b.png"}).images == ("b.png",)
    assert decode_label(None) == decode_label("") == Label() and Label().truth() is None
    for bad, reason in (
        ("{bad json", "bad_label_json"),
        ([1, 2], "bad_label"),
        ({"question": 3}, "bad_label"),
    ):
        with pytest.raises(InputError) as info:
            decode_label(bad)
        assert info.value.part == PART_LABEL and info.value.reason == reason
    assert "'{bad json'" in str(pytest.raises(InputError, decode_label, "{bad json").value)


def _routes(label, query: str, prompt: str, demo_roots):
    """The same sample through the three routes' transports: (actor, reward_fns, http)."""
    from openrlhf_visualprm.images import ImageRoots
    from openrlhf_visualprm.plugin.plan import OutcomeConfig, RewardPlan
    from openrlhf_visualprm.plugin.reward_host import PluginRewards
    from openrlhf_visualprm.rewards.components import outcome_component
    from openrlhf_visualprm.rewards.runtime import RewardRuntime
    from openrlhf_visualprm.workers.protocol import openrlhf_samples, score_openrlhf
    from openrlhf_visualprm.workers.reward_func import make_reward_func

    plan = RewardPlan(outcome=OutcomeConfig(), weights={"outcome": 1.0}, image_roots=[str(demo_roots)])
    actor = PluginRewards(plan).score_payloads(
        [{"prompt": prompt, "label": label, "images": None, "responses": [extract_response(query, prompt)]}]
    )[0][0]
    fn = make_reward_func("outcome")([query], [prompt], [label])
    samples = openrlhf_samples({"query": [query], "prompts": [prompt], "labels": [label]}, 1 << 20)
    runtime = RewardRuntime({"outcome": outcome_component(OutcomeConfig())})
    (http,) = score_openrlhf(samples, runtime, ImageRoots.of([demo_roots]))
    return (
        (actor["components"]["outcome"], actor["reasons"]),
        (fn["rewards"].item(), fn["extra_logs"]["reward/failed_group"].item()),
        (http["components"]["outcome"], http["reasons"]),
    )


@pytest.mark.parametrize(
    "label, outcome, actor_reasons",
    [
        ("72", 1.0, []),  # a plain string is the answer; the outcome check needs no image
        ("{bad json", 0.0, ["bad_label_json"]),  # never an answer
        ({"answer": "72", "image": "images/rect-000.png"}, 1.0, []),
        (json.dumps({"answer": "72", "image": "images/rect-000.png"}), 1.0, []),
        ({"image": "images/rect-000.png"}, 0.0, ["no_truth"]),  # missing answer: neutral, counted
        ({"answer": "71"}, 0.0, []),
    ],
)
def test_label_matrix_is_identical_across_routes(label, outcome, actor_reasons, demo_data, monkeypatch):
    monkeypatch.setenv("OPENRLHF_VISUALPRM_IMAGE_ROOTS", str(demo_data.parent))
    prompt = f"<|im_start|>user\n<image>{QUESTION}<|im_end|>\n<|im_start|>assistant\n"
    query = prompt + RESPONSE + "<|im_end|>"
    actor, fn, http = _routes(label, query, prompt, demo_data.parent)
    assert actor == (outcome, actor_reasons)
    assert fn == (outcome, float(bool(actor_reasons)))  # reward_fns: same reward, same failure count
    assert http == actor  # the HTTP route's preparation and runtime: the same reward, the same reasons


# ----------------------------------------------------------------------------- question and response
def test_response_extractor_on_a_real_qwen25_vl_query(qwen_vl_processor):
    messages = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": QUESTION}]}]
    prompt = qwen_vl_processor.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    image = Image.new("RGB", (96, 64), (200, 30, 30))
    query = _openrlhf_query(qwen_vl_processor, prompt, [image], RESPONSE)
    assert query.count("<|image_pad|>") > 1 and not query.startswith(prompt)  # what broke the old extractor
    assert extract_response(query, prompt) == RESPONSE
    assert question_text(Label(), prompt) == QUESTION


def test_response_extractor_on_a_real_internvl_query(internvl_processor):
    token = internvl_processor.image_token  # what the HF InternVL processor expands
    prompt = f"<|im_start|>user\n{token}\n{QUESTION}<|im_end|>\n<|im_start|>assistant\n"
    query = _openrlhf_query(internvl_processor, prompt, [Image.new("RGB", (64, 64))], RESPONSE)
    assert query.count("<IMG_CONTEXT>") > 1 and not query.startswith(prompt)
    assert extract_response(query, prompt) == RESPONSE
    assert question_text(Label(), prompt) == QUESTION


def test_response_extractor_text_only_and_refusal():
    prompt = f"<|im_start|>user\n{QUESTION}<|im_end|>\n<|im_start|>assistant\n"
    assert extract_response(prompt + RESPONSE + "<|im_end|><|endoftext|>", prompt) == RESPONSE
    with pytest.raises(InputError, match="does not contain its prompt") as info:
        extract_response("something else entirely", prompt)
    assert info.value.reason == "query_without_prompt"


def test_a_sample_without_an_image_is_an_image_input_error():
    from openrlhf_visualprm.labels import require_images

    with pytest.raises(InputError) as info:
        require_images(decode_label("72"))
    assert (info.value.part, info.value.reason) == (PART_IMAGE, "no_image")
    assert require_images(Label(), ["own.png"]) == ["own.png"]  # the sample's own images come first


def test_image_references_accepted_as_openrlhf_loads_them_but_no_urls(tmp_path):
    import base64
    import io

    from openrlhf_visualprm.images import ImageRoots, image_ref_kind, load_image

    buf = io.BytesIO()
    image = Image.effect_noise((40, 30), 60).convert("RGB")  # noise: a PNG of more than 256 base64 chars
    image.save(buf, format="PNG")
    bare = base64.b64encode(buf.getvalue()).decode()
    assert len(bare) > 256
    assert image_ref_kind(bare) == "base64" and image_ref_kind("data:image/png;base64," + bare) == "data_uri"
    assert image_ref_kind("a/" * 200 + "b" * 300) == "path"  # base64 characters, but no image signature
    assert image_ref_kind("https://example.com/x.png") == image_ref_kind("http://h/x") == "url"
    assert load_image(bare).size == (40, 30) and load_image(bare).tobytes() == image.tobytes()
    with pytest.raises(InputError, match="never fetch") as info:
        load_image("https://example.com/x.png", ImageRoots.of([tmp_path]))
    assert (info.value.part, info.value.reason) == (PART_IMAGE, "image_url")
