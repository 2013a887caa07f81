"""Launch-time checks: the resolver classifies reward models (never a guess), relative paths are
made absolute against the launcher's directory and checked, the plan's warnings print on every
launch, and an option a route cannot honour is refused."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest

from openrlhf_visualprm import registry
from openrlhf_visualprm.errors import ConfigError
from openrlhf_visualprm.plugin import launcher, preflight

BASE = [
    "--actor.model_name_or_path", "Qwen/Qwen2.5-VL-7B-Instruct",
    "--algo.advantage.estimator", "group_norm",
    "--rollout.n_samples_per_prompt", "8",
    "--data.prompt_dataset", "data/train.jsonl",
    "--data.input_key", "prompt", "--data.label_key", "label",
    "--rollout.batch_size", "16", "--vllm.num_engines", "1",
]  # fmt: skip


@pytest.fixture
def launch_dir(tmp_path, monkeypatch):
    """The user's working directory: data and images relative to it; Ray would run elsewhere."""
    (tmp_path / "data" / "images").mkdir(parents=True)
    (tmp_path / "data" / "train.jsonl").write_text('{"prompt": "Find x.", "label": "1"}\n')
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(preflight, "missing_dependencies", list)  # a GPU machine with the vllm extra
    monkeypatch.setenv(launcher.SKIP_MODEL_CHECK_ENV, "1")
    return tmp_path


def _checkpoint(folder: Path, model_type: str, vision: bool = True) -> Path:
    folder.mkdir(parents=True)
    config = {"model_type": model_type, **({"vision_config": {}} if vision else {})}
    (folder / "config.json").write_text(json.dumps(config))
    return folder


# ----------------------------------------------------------------------------- classification
def test_a_registered_repo_id_not_in_the_cache_stays_a_plugin_prm(launch_dir):
    resolved = registry.resolve_model("OpenGVLab/VisualPRM-8B-v1_1")
    assert (resolved.kind, resolved.source, resolved.path) == ("prm", "missing", None)
    for extra in ([], ["--reward.image_roots", "data/images"]):
        plan = launcher.prepare(BASE + ["--reward.model_name_or_path", "OpenGVLab/VisualPRM-8B-v1_1", *extra])
        assert plan.reward_plan is not None and plan.reward_plan.components == ["prm"]
        assert plan.gpu_plan["reward_actor"].startswith("plugin")


def test_an_unknown_uncached_hub_id_or_missing_folder_is_refused_by_name(launch_dir):
    with pytest.raises(launcher.FlagError, match="'someone/unknown-rm' is not a registered reward model"):
        launcher.prepare(BASE + ["--reward.model_name_or_path", "someone/unknown-rm"])
    with pytest.raises(launcher.FlagError, match="'./ckpt/nope'"):
        launcher.prepare(BASE + ["--reward.model_name_or_path", "./ckpt/nope"])


def test_mr_judge_env_override_is_honoured_by_train(launch_dir, monkeypatch):
    judge = _checkpoint(launch_dir / "my-judge", "qwen2_5_vl")
    monkeypatch.setenv(registry.JUDGE_MODEL_ENV, str(judge))
    plan = launcher.prepare(BASE + ["--reward.model_name_or_path", "mr-judge"])
    assert plan.reward_plan.judge.path == str(judge.resolve())
    from openrlhf_visualprm.judge.judge import resolve_judge_model

    assert resolve_judge_model("mr-judge") == str(judge.resolve())  # the judge CLI's route: the same


def test_a_local_stock_reward_model_still_passes_through(launch_dir):
    rm = _checkpoint(launch_dir / "rm", "llama", vision=False)
    plan = launcher.prepare(BASE + ["--reward.model_name_or_path", str(rm)])
    assert plan.reward_plan is None and str(rm) in plan.openrlhf_argv


# ----------------------------------------------------------------------------- paths
def test_relative_roots_and_data_become_absolute_against_the_launch_dir(launch_dir):
    plan = launcher.prepare(
        BASE + ["--reward.model_name_or_path", "visualprm", "--reward.image_roots", "data/images"]
    )
    assert plan.reward_plan.image_roots == [str(launch_dir / "data" / "images")]
    i = plan.openrlhf_argv.index("--data.prompt_dataset")
    assert plan.openrlhf_argv[i + 1] == str(launch_dir / "data" / "train.jsonl")


def test_missing_roots_or_data_are_refused_before_ray_and_noted_by_dry_run(launch_dir, capsys):
    argv = BASE + ["--reward.model_name_or_path", "visualprm", "--reward.image_roots", "data/imgs"]
    with pytest.raises(launcher.FlagError, match="'data/imgs'.*not an existing folder") as err:
        launcher.prepare(argv)
    assert err.value.flag == "--reward.image_roots"
    assert any("data/imgs" in refusal for refusal in launcher.prepare(argv + ["--dry-run"]).refusals)
    assert launcher.main(argv + ["--dry-run"]) == 2  # it would refuse, so the dry run fails too
    assert "error: would refuse to launch: --reward.image_roots" in capsys.readouterr().err
    bad_data = [t if t != "data/train.jsonl" else "data/other.jsonl" for t in BASE]
    with pytest.raises(launcher.FlagError, match="--data.prompt_dataset: 'data/other.jsonl'"):
        launcher.prepare(bad_data + ["--reward.model_name_or_path", "visualprm"])


def test_plan_notes_are_printed_on_a_real_launch(launch_dir, monkeypatch, capsys):
    launched = []
    monkeypatch.setattr(launcher, "launch", launched.append)
    assert launcher.main(BASE + ["--reward.model_name_or_path", "visualprm"]) == 0
    assert launched and "note: no --reward.image_roots" in capsys.readouterr().err


# ----------------------------------------------------------------------------- one config per component
def test_every_route_shares_the_judge_rounds_default():
    import argparse
    import inspect

    from openrlhf_visualprm.judge import cli as judge_cli
    from openrlhf_visualprm.judge.config import JudgeConfig
    from openrlhf_visualprm.judge.judge import MRJudge
    from openrlhf_visualprm.plugin.options import parse_plugin_flags

    parser = argparse.ArgumentParser()
    judge_cli.add_arguments(parser)
    rounds = {
        "config": JudgeConfig().rounds,
        "plugin flag": parse_plugin_flags([])[0].reward_judge_rounds,
        "MRJudge": inspect.signature(MRJudge.__init__).parameters["rounds"].default,
        "judge CLI": parser.get_default("rounds"),
    }
    assert len(set(rounds.values())) == 1, rounds


def test_a_pool_loaded_with_other_model_options_is_refused():
    from openrlhf_visualprm.judge.config import JudgeConfig
    from openrlhf_visualprm.plugin.plan import PRMConfig
    from openrlhf_visualprm.rewards.components import loaded_config_diff

    assert loaded_config_diff(PRMConfig(), PRMConfig(aggregation="min")) == []  # scoring options travel
    assert loaded_config_diff(PRMConfig(max_tiles=6), PRMConfig()) == ["max_tiles 6 (asked 12)"]
    assert loaded_config_diff(JudgeConfig(rounds=1), JudgeConfig()) == ["rounds 1 (asked 4)"]
    with pytest.raises(ConfigError, match="unknown keys \\['max_tiles'\\]"):
        PRMConfig().with_request({"max_tiles": 6})
    options = PRMConfig().with_request({"splitter": "re:\\n+", "temperature": 0.5}).score_kwargs()
    assert options["temperature"] == 0.5 and options["splitter"].pattern == "\\n+"


def test_the_prm_system_message_reaches_the_plan_and_a_pool_cannot_ignore_it(launch_dir):
    from openrlhf_visualprm.plugin.plan import PRMConfig, RewardPlan

    argv = BASE + [
        "--reward.model_name_or_path",
        "OpenGVLab/VisualPRM-8B-v1_1",
        "--reward.image_roots",
        "data/images",
    ]
    assert launcher.prepare(argv).reward_plan.prm.system_message is None  # the checkpoint's, as released
    plan = launcher.prepare(argv + ["--reward.prm.system_message", "prm"]).reward_plan
    assert plan.prm.system_message == "prm"
    assert RewardPlan.from_json(plan.to_json()).prm.system_message == "prm"  # what the reward actor reads
    from openrlhf_visualprm.rewards.components import loaded_config_diff

    pool_default = replace(plan.prm, system_message=None)  # pools load with the checkpoint's message
    assert loaded_config_diff(pool_default, plan.prm) == ["system_message None (asked 'prm')"]
    with pytest.raises(ConfigError, match="system_message"):
        PRMConfig(system_message="  ")
