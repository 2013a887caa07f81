"""VisualPRM fidelity to the released checkpoints: the tokenizer's BOS rule, the named system
messages, ``check-model``, and the CLI's handling of the project's own errors."""

from __future__ import annotations

import hashlib
import json

import pytest
from PIL import Image

from openrlhf_visualprm import cli
from openrlhf_visualprm.prm import template as T
from openrlhf_visualprm.steps import split_steps

# sha256 of PRM_SYSTEM_PROMPT as written in OpenGVLab/InternVL
# internvl_chat/tools/reasoning_data_pipeline/utils/constants.py (commit 19b0da2), .strip()ped.
PRM_PROMPT_SHA256 = "18279fe8e6c5f76aebb619b266e665b89b2d0b1cb181b6aa3fded44d24b8fa1e"


@pytest.fixture(scope="module")
def sample_dir(tmp_path_factory):
    from openrlhf_visualprm.data import samples

    out = tmp_path_factory.mktemp("samples")
    samples.write_samples(out)
    return out


@pytest.fixture(scope="module")
def bos_tokenizer():
    """A Qwen2 tokenizer configured the way InternLM2's is: it prepends a BOS to every text."""
    from transformers import AutoTokenizer

    from openrlhf_visualprm.tiny_models import INTERNVL_IMAGE_TOKENS, qwen2_tokenizer_dir

    tok = AutoTokenizer.from_pretrained(
        str(qwen2_tokenizer_dir()),
        extra_special_tokens=INTERNVL_IMAGE_TOKENS,
        bos_token="<|endoftext|>",
        add_bos_token=True,
    )
    assert tok("x")["input_ids"][0] == tok.bos_token_id  # the premise of the tests below
    return tok


@pytest.fixture(scope="module")
def tiny_prm(tiny_prm_path):
    from openrlhf_visualprm.prm.scorer import VisualPRM

    return VisualPRM.from_pretrained(str(tiny_prm_path))


def _reference_ids(tokenizer, system: str, question: str, steps: list[str], tiles: int) -> list[int]:
    """The reference algorithm: the whole prompt text, tokenised with the tokenizer's defaults."""
    image = "<img>" + "<IMG_CONTEXT>" * (256 * tiles) + "</img>"
    text = f"<|im_start|>system\n{system}<|im_end|>\n<|im_start|>user\n### Question:\n{image}\n{question}"
    for k, step in enumerate(steps):
        text += ("\n\n### Solution Process:\n" if k == 0 else "<|im_start|>user\n") + step
        text += "<|im_end|>\n<|im_start|>assistant\n+<|im_end|>\n"
    return list(tokenizer(text)["input_ids"])


@pytest.mark.parametrize("with_bos", [False, True])
def test_prompt_ids_follow_the_tokenizers_bos_rule(tiny_prm, bos_tokenizer, with_bos):
    from openrlhf_visualprm.prm.scorer import VisualPRM

    tok = bos_tokenizer if with_bos else tiny_prm.tokenizer
    prm = VisualPRM(tiny_prm.model, tok, "SYS", "tiny")
    steps = split_steps("x + 1 = 3\n\nso x = 2\n\nAnswer: 2")
    enc = prm._encode(prm.prefix_text("Solve for x.", [1]), steps)
    expected = _reference_ids(tok, "SYS", "Solve for x.", [s.text for s in steps], 1)
    assert enc.ids == expected
    assert (enc.ids[0] == tok.bos_token_id) is with_bos
    plus = [i for i, t in enumerate(expected) if t == prm.plus_id]
    assert enc.score_positions == [i - 1 for i in plus]


def test_bos_prompt_scores_agree_across_methods(tiny_prm, bos_tokenizer):
    """The shared-prefix path must carry the BOS too (its prefix cache is reused by every response)."""
    from openrlhf_visualprm.prm.scorer import VisualPRM

    prm = VisualPRM(tiny_prm.model, bos_tokenizer, "SYS", "tiny")
    img = Image.new("RGB", (448, 448), (120, 30, 200))
    responses = ["a = 1\n\nb = 2", "c = 3\n\nd = 4\n\ne = 5"]
    shared = prm.score([img], "Q?", responses=responses, method="shared")
    single = prm.score([img], "Q?", responses=responses, method="single")
    (grouped,) = prm.score_many([([img], "Q?", responses)], method="shared")  # the RL batch path
    for a, b, c in zip(shared, single, grouped, strict=True):
        assert a.step_scores == pytest.approx(b.step_scores, abs=1e-5)
        assert c.step_scores == pytest.approx(b.step_scores, abs=1e-5)
    no_bos = VisualPRM(tiny_prm.model, tiny_prm.tokenizer, "SYS", "tiny")
    plain = no_bos.score([img], "Q?", responses=responses, method="single")
    assert any(abs(x - y) > 1e-4 for x, y in zip(plain[0].step_scores, single[0].step_scores))


def test_prm_system_prompt_is_the_pipelines_text():
    assert hashlib.sha256(T.PRM_SYSTEM_PROMPT.encode()).hexdigest() == PRM_PROMPT_SHA256


def test_system_message_named_choices():
    assert T.resolve_system_message("prm", "CFG").text == T.PRM_SYSTEM_PROMPT
    assert T.resolve_system_message("internvl2_5", "CFG").text == T.INTERNVL2_5_SYSTEM_MESSAGE
    assert T.resolve_system_message("config", "CFG").text == "CFG"
    assert T.resolve_system_message(None, "CFG").choice == "config"
    default = T.resolve_system_message(None, None)
    assert default.text == T.INTERNVL2_5_SYSTEM_MESSAGE and "no system_message" in default.source
    own = T.resolve_system_message("Judge each step.", "CFG")
    assert own.text == "Judge each step." and own.choice == "text"
    with pytest.raises(ValueError, match="has no system_message"):
        T.resolve_system_message("config", None, "ckpt")


def test_score_cli_uses_and_names_the_chosen_system_message(tiny_prm_path, tmp_path, capsys):
    img = tmp_path / "fig.png"
    Image.new("RGB", (64, 64), (10, 200, 30)).save(img)
    resp = tmp_path / "r.jsonl"
    resp.write_text(json.dumps({"response": "a\n\nb"}) + "\n")
    common = [
        "score",
        "--model",
        str(tiny_prm_path),
        "--image",
        str(img),
        "--question",
        "Q",
        "--responses",
        str(resp),
    ]
    scores = {}
    for choice in ("prm", "config"):
        assert cli.main([*common, "--system-message", choice, "--json"]) == 0
        captured = capsys.readouterr()
        assert f"system message '{choice}'" in captured.err
        scores[choice] = json.loads(captured.out)["step_scores"]
    assert scores["prm"] != pytest.approx(scores["config"], abs=1e-6)  # the text reaches the model


def test_prm_prompt_cli_named_choice(capsys):
    argv = ["prm-prompt", "--question", "Q", "--steps-json", '["a"]', "--system-message", "prm"]
    assert cli.main(argv) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"<|im_start|>system\n{T.PRM_SYSTEM_PROMPT}<|im_end|>\n")


# ------------------------------------------------------------------ check-model


def test_check_model_reports_what_the_scorer_relies_on(tiny_prm_path, capsys):
    assert cli.main(["check-model", str(tiny_prm_path), "--json"]) == 0
    rep = json.loads(capsys.readouterr().out)
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(tiny_prm_path))
    assert rep["image_tokens_per_tile"] == (448 // 14) ** 2 // 4 == 256
    assert rep["plus_id"] == tok.convert_tokens_to_ids("+") and rep["minus_id"] == tok.convert_tokens_to_ids(
        "-"
    )
    assert rep["image_token_id"] == tok.convert_tokens_to_ids("<IMG_CONTEXT>")
    assert rep["bos_ids"] == [] and rep["bos_rule"].startswith("no BOS")
    assert rep["system_message_choice"] == "config"
    assert rep["system_message"] == json.loads((tiny_prm_path / "config.json").read_text())["system_message"]
    assert "0 missing, 0 unexpected" in rep["weights"]
    assert rep["warnings"] == []


def test_check_model_warns_about_a_bos_rule_unlike_the_release(tiny_prm, bos_tokenizer):
    from openrlhf_visualprm.prm.check import check_loaded
    from openrlhf_visualprm.prm.scorer import VisualPRM

    prm = VisualPRM(tiny_prm.model, bos_tokenizer, "SYS", "tiny")
    rep = check_loaded(prm, raw_config={"model_type": "internvl"})
    assert rep.bos_ids == [bos_tokenizer.bos_token_id]
    assert any("prepends ['<|endoftext|>']" in w and "Qwen2" in w for w in rep.warnings)


def test_check_model_refuses_missing_weights(tiny_prm_path, tmp_path, capsys):
    import shutil

    from safetensors.torch import load_file, save_file

    broken = tmp_path / "broken"
    shutil.copytree(tiny_prm_path, broken)
    (weights,) = broken.glob("*.safetensors")
    sd = load_file(str(weights))
    dropped = next(k for k in sd if "multi_modal_projector" in k)
    del sd[dropped]
    save_file(sd, str(weights), metadata={"format": "pt"})
    rc = cli.main(["check-model", str(broken)])
    assert rc == 2
    err = capsys.readouterr().err
    last = err.strip().splitlines()[-1]  # earlier lines: the weight loader's progress bar
    assert last.startswith("openrlhf-visualprm check-model: error:") and "missing 1" in last
    assert "Traceback" not in err


# ------------------------------------------------------------------ CLI errors


def test_score_with_a_broken_image_is_one_line_not_a_traceback(tiny_prm_path, tmp_path, capsys):
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"not a png at all")
    resp = tmp_path / "r.jsonl"
    resp.write_text(json.dumps({"response": "a"}) + "\n")
    argv = ["score", "--model", str(tiny_prm_path), "--image", str(broken), "--question", "Q"]
    rc = cli.main([*argv, "--responses", str(resp)])
    err = capsys.readouterr().err
    assert rc == 2
    assert "Traceback" not in err
    assert err.strip().splitlines()[-1].startswith("openrlhf-visualprm score: error:") and "broken.png" in err


def test_eval_prm_exits_nonzero_when_nothing_was_evaluated(tiny_prm_path, tmp_path, capsys):
    data = tmp_path / "pb.jsonl"
    data.write_text(json.dumps({"question": "q", "image": ["gone.png"], "response": "not steps"}) + "\n")
    rc = cli.main(
        ["eval-prm", "--model", str(tiny_prm_path), "--data", str(data), "--image-root", str(tmp_path)]
        + ["--out", str(tmp_path / "o"), "--no-progress"]
    )
    assert rc == 2 and "evaluated nothing" in capsys.readouterr().err


def test_eval_bon_exits_nonzero_when_nothing_was_evaluated(tiny_prm_path, tmp_path, capsys):
    data = tmp_path / "bon.jsonl"
    data.write_text(json.dumps({"id": "1", "question": "q"}) + "\n")
    rc = cli.main(
        ["eval-bon", "--prm", str(tiny_prm_path), "--data", str(data), "--image-root", str(tmp_path)]
        + ["--out", str(tmp_path / "o"), "--no-progress"]
    )
    assert rc == 2 and "evaluated nothing" in capsys.readouterr().err


def test_resume_mismatch_goes_through_the_one_handler(tmp_path, capsys):
    from openrlhf_visualprm.eval.results import ResumeMismatchError

    class Boom:
        @staticmethod
        def add_arguments(parser):
            pass

        @staticmethod
        def run(args):
            raise ResumeMismatchError("results.jsonl was written with different settings")

    import sys

    sys.modules["_i13_boom"] = Boom  # a subcommand module the handler does not know anything about
    cli.SUBCOMMANDS["boom"] = ("_i13_boom", "test")
    try:
        assert cli.main(["boom"]) == 2
    finally:
        del cli.SUBCOMMANDS["boom"], sys.modules["_i13_boom"]
    assert (
        capsys.readouterr().err
        == "openrlhf-visualprm boom: error: results.jsonl was written with different settings\n"
    )


def test_eval_prm_records_the_system_message_and_refuses_to_mix_runs(
    tiny_prm_path, sample_dir, tmp_path, capsys
):
    out = tmp_path / "prm"
    argv = ["eval-prm", "--model", str(tiny_prm_path), "--data", str(sample_dir / "visualprocessbench.jsonl")]
    argv += [
        "--image-root",
        str(sample_dir),
        "--out",
        str(out),
        "--limit",
        "1",
        "--max-tiles",
        "1",
        "--no-progress",
    ]
    assert cli.main([*argv, "--system-message", "prm"]) == 0
    report = json.loads((out / "report.json").read_text())
    expected = "prm:" + hashlib.sha256(T.PRM_SYSTEM_PROMPT.encode()).hexdigest()[:12]
    assert report["system_message"] == expected
    assert "system message 'prm'" in capsys.readouterr().err
    assert cli.main([*argv, "--system-message", "Another prompt."]) == 2  # same --out, other prompt
    err = capsys.readouterr().err
    assert (
        "openrlhf-visualprm eval-prm: error:" in err
        and "different settings" in err
        and "system_message" in err
    )


def test_the_reward_actor_loads_the_prm_with_the_planned_system_message(tiny_prm_path):
    """`--reward.prm.system_message prm` reaches the model the reward actor scores with."""
    from types import SimpleNamespace

    import cpu_stubs  # tests/support: OpenRLHF's actor module imports vLLM / flash-attn

    cpu_stubs.install()
    from openrlhf_visualprm.plugin.plan import PRMConfig, RewardPlan
    from openrlhf_visualprm.plugin.reward_actor import RewardActor
    from openrlhf_visualprm.prm.template import PRM_SYSTEM_PROMPT

    actor = RewardActor.__new__(RewardActor)
    for choice, want in (("prm", PRM_SYSTEM_PROMPT), ("Be terse.", "Be terse.")):
        plan = RewardPlan(
            prm=PRMConfig(model="prm", path=str(tiny_prm_path), system_message=choice, dtype="float32"),
            weights={"prm": 1.0},
        )
        actor.init_model_from_pretrained(SimpleNamespace(), plan=plan)
        prm = actor.rewards.runtime.components["prm"].prm
        assert prm.system_message == want
