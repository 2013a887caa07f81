"""A new user's mistakes get one line and exit 2, never a traceback (issue 20 items 8, 9, 11), and
the commands that load a model say which device they use."""

from __future__ import annotations

import json
import shutil

import pytest

from openrlhf_visualprm import cli
from openrlhf_visualprm.errors import ModelError
from openrlhf_visualprm.judge.judge import MRJudge
from openrlhf_visualprm.plugin import launcher, preflight


def _one_line_error(capsys, command: str, *phrases: str) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    last = err[-1]
    assert last.startswith(f"openrlhf-visualprm {command}: error: "), err
    assert not any("Traceback" in line for line in err)
    for phrase in phrases:
        assert phrase in last, last
    return last


@pytest.fixture
def responses(tmp_path):
    path = tmp_path / "r.jsonl"
    path.write_text('"It is 3."\n"It is 4."\n')
    return path


# ----------------------------------------------------------------------------- item 11
def test_reference_schedule_without_a_reference(tiny_judge_path, demo_data, responses, capsys):
    image = next((demo_data.parent / "images").iterdir())
    argv = ["judge", "--model", str(tiny_judge_path), "--image", str(image), "--question", "q?"]
    assert cli.main(argv + ["--responses", str(responses), "--schedule", "reference"]) == 2
    _one_line_error(capsys, "judge", "--schedule reference", "--reference")


def test_demo_with_a_missing_data_file(tmp_path, capsys):
    assert cli.main(["demo", "--out", str(tmp_path / "o"), "--data", str(tmp_path / "nope.jsonl")]) == 2
    _one_line_error(capsys, "demo", "--data", "nope.jsonl")


@pytest.mark.skipif(__import__("torch").cuda.is_available(), reason="needs a machine without a GPU")
@pytest.mark.parametrize("command", ["score", "judge", "demo", "check-model"])
def test_cuda_asked_for_without_a_gpu(
    command, tiny_prm_path, tiny_judge_path, demo_data, responses, tmp_path, capsys
):
    image = str(next((demo_data.parent / "images").iterdir()))
    argv = {
        "score": ["score", "--model", str(tiny_prm_path), "--image", image, "--question", "q", "--responses", str(responses)],
        "judge": ["judge", "--model", str(tiny_judge_path), "--image", image, "--question", "q", "--responses", str(responses)],
        "demo": ["demo", "--out", str(tmp_path / "o"), "--no-judge"],
        "check-model": ["check-model", str(tiny_prm_path)],
    }[command]  # fmt: skip
    assert cli.main(argv + ["--device", "cuda"]) == 2
    _one_line_error(capsys, command, "--device cuda", "no CUDA GPU")


# ----------------------------------------------------------------------------- item 9
def test_score_defaults_to_auto_and_prints_the_device(tiny_prm_path, demo_data, responses, capsys):
    image = str(next((demo_data.parent / "images").iterdir()))
    argv = [
        "score",
        "--model",
        str(tiny_prm_path),
        "--image",
        image,
        "--question",
        "q",
        "--responses",
        str(responses),
    ]
    assert cli.main(argv) == 0
    expected = "cuda" if __import__("torch").cuda.is_available() else "cpu"
    assert f"device: {expected} (auto:" in capsys.readouterr().err


@pytest.mark.parametrize(
    "command", ["score", "eval-prm", "eval-judge", "eval-bon", "demo", "judge", "check-model"]
)
def test_every_model_command_defaults_to_device_auto(command):
    import argparse
    import importlib

    parser = argparse.ArgumentParser()
    importlib.import_module(cli.SUBCOMMANDS[command][0]).add_arguments(parser)
    assert parser.get_default("device") == "auto"


# ----------------------------------------------------------------------------- item 8
@pytest.fixture
def prm_as_judge(tiny_prm_path, tmp_path):
    return tiny_prm_path


@pytest.fixture
def text_only_model(tiny_judge_path, tmp_path):
    folder = tmp_path / "text-only"
    shutil.copytree(tiny_judge_path, folder)
    config = json.loads((folder / "config.json").read_text())
    config.pop("vision_config", None)
    config["model_type"] = "qwen2"
    (folder / "config.json").write_text(json.dumps(config))
    return folder


def test_the_judge_loader_refuses_a_prm_or_a_text_only_model(prm_as_judge, text_only_model):
    with pytest.raises(ModelError, match="VisualPRM .*not a chat VLM judge"):
        MRJudge.from_pretrained(str(prm_as_judge))
    with pytest.raises(ModelError, match="no vision config"):
        MRJudge.from_pretrained(str(text_only_model))


def test_judge_command_names_the_wrong_model_kind(prm_as_judge, demo_data, responses, capsys):
    image = str(next((demo_data.parent / "images").iterdir()))
    argv = [
        "judge",
        "--model",
        str(prm_as_judge),
        "--image",
        image,
        "--question",
        "q",
        "--responses",
        str(responses),
    ]
    assert cli.main(argv) == 2
    _one_line_error(capsys, "judge", "VisualPRM", "not a chat VLM judge")


def test_eval_judge_names_the_wrong_model_kind(prm_as_judge, tmp_path, capsys):
    from openrlhf_visualprm.data import samples

    samples.write_samples(tmp_path / "s")
    argv = ["eval-judge", "--judge", str(prm_as_judge), "--data", str(tmp_path / "s" / "vlrewardbench.jsonl")]
    assert cli.main(argv + ["--image-root", str(tmp_path / "s"), "--out", str(tmp_path / "o")]) == 2
    _one_line_error(capsys, "eval-judge", "not a chat VLM judge")


def test_train_refuses_a_prm_as_the_judge(prm_as_judge, tmp_path, monkeypatch):
    (tmp_path / "train.jsonl").write_text(json.dumps({"prompt": "p", "label": "1", "images": []}) + "\n")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(preflight, "missing_dependencies", list)
    argv = [
        "--actor.model_name_or_path", "m", "--reward.judge.model", str(prm_as_judge),
        "--algo.advantage.estimator", "group_norm", "--rollout.n_samples_per_prompt", "4",
        "--data.prompt_dataset", "train.jsonl", "--data.input_key", "prompt", "--vllm.num_engines", "1",
    ]  # fmt: skip
    with pytest.raises(launcher.FlagError, match="is a VisualPRM .*not a chat VLM judge") as err:
        launcher.prepare(argv)
    assert err.value.flag == "--reward.judge.model"
