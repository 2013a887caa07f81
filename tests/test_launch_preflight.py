"""``train``'s pre-flight beyond OpenRLHF's parser (issue 20 items 5, 6, 7, 13): generation needs
vLLM engines and the ``vllm`` extra, gae's critic, dataset columns, a dry run that fails when the
launch would, and a plan that prints its GPU total."""

from __future__ import annotations

import importlib.util
import json

import pytest

from openrlhf_visualprm.plugin import launcher, preflight

BASE = [
    "--actor.model_name_or_path", "Qwen/Qwen2.5-VL-7B-Instruct",
    "--reward.model_name_or_path", "visualprm",
    "--algo.advantage.estimator", "group_norm",
    "--rollout.n_samples_per_prompt", "8",
    "--data.prompt_dataset", "data/train.jsonl",
    "--data.input_key", "prompt", "--data.label_key", "label", "--data.image_key", "images",
    "--data.max_images_per_prompt", "1",
    "--rollout.batch_size", "16", "--vllm.num_engines", "2",
    "--actor.num_gpus_per_node", "4", "--reward.num_gpus_per_node", "2",
    "--reward.image_roots", "data", "--algo.kl.init_coef", "0",
]  # fmt: skip
ROW = {"prompt": "<image>Find x.", "images": ["data/0.png"], "label": {"answer": "12"}}


def _without(argv: list[str], flag: str) -> list[str]:
    i = argv.index(flag)
    return argv[:i] + argv[i + 2 :]


def _with(argv: list[str], flag: str, value: str) -> list[str]:
    out = list(argv)
    out[out.index(flag) + 1] = value
    return out


@pytest.fixture
def launch_dir(tmp_path, monkeypatch):
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "train.jsonl").write_text(json.dumps(ROW) + "\n")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv(launcher.SKIP_MODEL_CHECK_ENV, "1")
    monkeypatch.setattr(preflight, "missing_dependencies", list)
    return tmp_path


def _refused(argv: list[str], flag: str, *phrases: str, capsys=None) -> str:
    with pytest.raises(launcher.FlagError) as err:
        launcher.prepare(argv)
    assert err.value.flag == flag, str(err.value)
    for phrase in phrases:
        assert phrase in str(err.value)
    plan = launcher.prepare(argv + ["--dry-run"])
    assert any(flag in r for r in plan.refusals), plan.refusals
    return str(err.value)


def test_the_base_plan_passes(launch_dir):
    plan = launcher.prepare(BASE)
    assert plan.refusals == [] and plan.gpu_plan["total_gpus"] == 8


# ----------------------------------------------------------------------------- generation (items 5, 6)
def test_a_plan_without_vllm_engines_is_refused(launch_dir):
    _refused(_without(BASE, "--vllm.num_engines"), "--vllm.num_engines", "generates rollouts only with vLLM")
    _refused(_with(BASE, "--vllm.num_engines", "0"), "--vllm.num_engines")


def test_colocate_all_needs_engines_covering_the_actor_gpus(launch_dir):
    _refused(BASE + ["--train.colocate_all"], "--vllm.num_engines", "(2 x 1)", "(4)")
    assert launcher.prepare(_with(BASE, "--vllm.num_engines", "4") + ["--train.colocate_all"]).refusals == []


@pytest.mark.parametrize(
    "module, hint", [("vllm", "openrlhf-visualprm[vllm]"), ("flash_attn", "pip install flash-attn==2.8.3")]
)
def test_a_missing_training_dependency_is_one_line_naming_what_to_install(
    module, hint, launch_dir, monkeypatch, capsys
):
    monkeypatch.undo()  # the real check, with only `module` unimportable
    monkeypatch.chdir(launch_dir)
    monkeypatch.setenv(launcher.SKIP_MODEL_CHECK_ENV, "1")
    real = importlib.util.find_spec

    def find_spec(name, *args):
        if name in preflight.TRAIN_DEPENDENCIES:
            return None if name == module else object()
        return real(name, *args)

    monkeypatch.setattr(importlib.util, "find_spec", find_spec)
    launched = []
    monkeypatch.setattr(launcher, "launch", launched.append)
    assert launcher.main(BASE) == 2 and not launched
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and f"{module}: not installed" in err[0] and hint in err[0], err
    # a dry run plans for another machine: it says so, and does not fail for it
    assert launcher.main(BASE + ["--dry-run"]) == 0
    assert f"this machine cannot launch: {module}: not installed" in capsys.readouterr().out


def test_the_gpu_total_is_printed_on_a_launch_and_in_the_dry_run(launch_dir, monkeypatch, capsys):
    monkeypatch.setattr(launcher, "launch", lambda plan: None)
    assert launcher.main(BASE) == 0
    assert "total 8 (fits one 8-GPU node)" in capsys.readouterr().err
    big = _with(_with(BASE, "--actor.num_gpus_per_node", "8"), "--reward.num_gpus_per_node", "8")
    assert launcher.main(big + ["--dry-run"]) == 0
    assert "total 18 (at least 3 nodes of 8 GPUs)" in capsys.readouterr().out


# ----------------------------------------------------------------------------- critic (item 7)
def test_gae_by_default_would_build_the_critic_from_the_prm(launch_dir):
    text_only = _without(_without(BASE, "--algo.advantage.estimator"), "--data.max_images_per_prompt")
    message = _refused(
        text_only, "--algo.advantage.estimator", "gae", "group_norm", "--critic.model_name_or_path"
    )
    assert "VisualPRM" in message
    plan = launcher.prepare(text_only + ["--critic.model_name_or_path", "Qwen/Qwen2.5-7B-Instruct"])
    assert plan.refusals == [] and any("critic is Qwen/Qwen2.5-7B-Instruct" in n for n in plan.notes)


# ----------------------------------------------------------------------------- data columns (item 13)
@pytest.mark.parametrize(
    "flag, value, hint",
    [
        ("--data.input_key", "input", "did you mean --data.input_key prompt"),  # OpenRLHF's default
        ("--data.label_key", "answer", "did you mean --data.label_key label"),
        ("--data.image_key", "image", "did you mean --data.image_key images"),
    ],
)
def test_dataset_keys_are_checked_against_the_first_rows(launch_dir, flag, value, hint):
    _refused(_with(BASE, flag, value), flag, f"{value!r} is not a column of", hint)


def test_image_key_is_not_needed_for_text_only_data(launch_dir):
    argv = _with(_without(BASE, "--data.max_images_per_prompt"), "--data.image_key", "nope")
    assert launcher.prepare(argv).refusals == []


def test_an_unreadable_first_row_is_refused(launch_dir):
    (launch_dir / "data" / "train.jsonl").write_text("{not json\n")
    _refused(BASE, "--data.prompt_dataset", "line 1", "malformed JSON")


# ----------------------------------------------------------------------------- dry run (item 13)
def test_a_dry_run_that_would_refuse_exits_2_and_says_so_first(launch_dir, capsys):
    argv = _with(BASE, "--data.input_key", "input") + ["--dry-run"]
    assert launcher.main(argv) == 2
    out, err = capsys.readouterr()
    first = out.splitlines()[0]
    assert first.startswith("openrlhf-visualprm train --dry-run: REFUSED") and "python -m" not in first
    assert "error: would refuse to launch: --data.input_key" in err
    assert launcher.main(argv + ["--json"]) == 2
    assert json.loads(capsys.readouterr().out)["would_refuse"]
