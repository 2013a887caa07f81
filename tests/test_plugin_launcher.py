"""The launcher against the installed OpenRLHF: argv rewriting, aliases, checks, dry run, launch."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pytest

from openrlhf_visualprm import registry
from openrlhf_visualprm.plugin import launcher, legacy_flags, openrlhf_cli
from openrlhf_visualprm.plugin.plan import PLAN_ENV, RewardPlan

BASE_LEGACY = [
    "--pretrain", "Qwen/Qwen2.5-VL-7B-Instruct",
    "--reward_pretrain", "visualprm",
    "--advantage_estimator", "group_norm",
    "--n_samples_per_prompt", "8",
    "--prompt_data", "data/geo3k.jsonl",
    "--input_key", "prompt",
    "--label_key", "label",
    "--image_key", "images",
    "--max_images_per_prompt", "1",
    "--vllm_num_engines", "2",
    "--rollout_batch_size", "16",
    "--reward_num_gpus_per_node", "1",
    "--bf16",
]  # fmt: skip
BASE_DOTTED = [
    "--actor.model_name_or_path", "Qwen/Qwen2.5-VL-7B-Instruct",
    "--reward.model_name_or_path", "visualprm",
    "--algo.advantage.estimator", "group_norm",
    "--rollout.n_samples_per_prompt=8",
    "--data.prompt_dataset", "data/geo3k.jsonl",
    "--data.input_key", "prompt",
    "--data.label_key", "label",
    "--data.image_key", "images",
    "--data.max_images_per_prompt", "1",
    "--vllm.num_engines", "2",
    "--rollout.batch_size", "16",
    "--reward.num_gpus_per_node", "1",
    "--ds.param_dtype", "bf16",
]  # fmt: skip
PLUGIN = [
    "--reward.prm.aggregation",
    "min",
    "--reward.outcome.enable",
    "--reward.weights",
    "prm=0.5,outcome=1",
]


@pytest.fixture(autouse=True)
def vllm_installed(monkeypatch):
    """These tests plan launches for a GPU machine with the vllm extra (not installed on CI)."""
    from openrlhf_visualprm.plugin import preflight

    monkeypatch.setattr(preflight, "missing_dependencies", list)


@pytest.fixture
def data_cwd(tmp_path, monkeypatch):
    """Launch from a folder holding the relative data path the argv lists use."""
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "geo3k.jsonl").write_text(
        '{"prompt": "<image>Find x.", "label": "1", "images": []}\n'
    )
    monkeypatch.chdir(tmp_path)
    return tmp_path


def _flatten(ns, prefix=""):
    out = {}
    for key, value in vars(ns).items():
        if hasattr(value, "__dict__") and not isinstance(value, type):
            out.update(_flatten(value, f"{prefix}{key}."))
        else:
            out[prefix + key] = value
    return out


# ----------------------------------------------------------------------------- legacy table
def test_every_legacy_target_is_a_real_openrlhf_flag():
    real = openrlhf_cli.option_strings()
    targets = set(legacy_flags.RENAMED.values())
    targets |= {tok for toks in legacy_flags.EXPANDED.values() for tok in toks if tok.startswith("--")}
    assert targets - real == set()
    # a legacy name must not shadow a flag OpenRLHF 0.11 itself accepts
    assert (set(legacy_flags.RENAMED) | set(legacy_flags.EXPANDED)) & real == set()


def test_rename_legacy_keeps_values_order_and_equals_form():
    tokens, renamed = launcher.rename_legacy(["--pretrain=m", "--bf16", "--x.y", "3", "--ref_reward_offload"])
    assert tokens == ["--actor.model_name_or_path=m", "--ds.param_dtype", "bf16", "--x.y", "3", "--ref.offload",
                      "--reward.offload"]  # fmt: skip
    assert ("--pretrain", "--actor.model_name_or_path") in renamed
    with pytest.raises(launcher.FlagError) as err:
        launcher.rename_legacy(["--bf16=yes"])
    assert err.value.flag == "--bf16"


# ----------------------------------------------------------------------------- prepare (no Ray)
def test_legacy_and_dotted_spellings_give_the_same_openrlhf_namespace():
    a = launcher.prepare(BASE_LEGACY + PLUGIN + ["--dry-run"])
    b = launcher.prepare(BASE_DOTTED + PLUGIN + ["--dry-run"])
    fa, fb = _flatten(a.namespace), _flatten(b.namespace)
    fa.pop("logger.wandb.run_name"), fb.pop("logger.wandb.run_name")  # a timestamp default
    assert fa == fb
    assert fa["actor.model_name_or_path"] == "Qwen/Qwen2.5-VL-7B-Instruct"
    assert (
        fa["reward.model_name_or_path"] == "OpenGVLab/VisualPRM-8B-v1_1"
    )  # alias resolved (not cached here)
    assert fa["rollout.n_samples_per_prompt"] == 8
    assert fa["data.max_images_per_prompt"] == 1
    assert fa["critic.model_name_or_path"] is None  # group_norm: OpenRLHF's own post-parse rule ran
    assert a.reward_plan.to_dict() == b.reward_plan.to_dict()
    plan = a.reward_plan
    assert plan.components == ["prm", "outcome"]
    assert plan.weights == {"prm": 0.5, "outcome": 1.0}
    assert plan.prm.aggregation == "min" and plan.prm.credit == "anchored" and plan.dense_active
    # plugin flags never reach OpenRLHF
    assert not any(
        tok.startswith(("--reward.prm", "--reward.outcome", "--reward.weights")) for tok in a.openrlhf_argv
    )


def test_dry_run_json_prints_argv_reward_plan_and_gpu_plan(capsys, data_cwd):
    rc = launcher.main(BASE_LEGACY + PLUGIN + ["--reward.prm.credit", "diff", "--dry-run", "--json"])
    assert rc == 0
    out = json.loads(capsys.readouterr().out)
    assert out["openrlhf_module"] == "openrlhf.cli.train_ppo_ray"
    argv = out["openrlhf_argv"]
    assert argv[argv.index("--reward.model_name_or_path") + 1] == "OpenGVLab/VisualPRM-8B-v1_1"
    assert "--dry-run" not in argv and "--json" not in argv
    assert out["reward_plan"]["dense_active"] is True  # group_norm consumes credit returns too
    assert out["reward_plan"]["prm"]["credit"] == "diff"
    assert any("appended after a wrong answer" in n for n in out["notes"])
    gpus = out["gpu_plan"]
    # actor 8 + reference 8 (kl init 0.01 > 0) + vLLM 2 + reward 1, nothing colocated
    assert (gpus["actor"], gpus["reference"], gpus["vllm"], gpus["reward"]) == (8, 8, 2, 1)
    assert gpus["total_gpus"] == 19


def test_dry_run_text_shows_the_credit_mode_and_its_note(capsys, data_cwd):
    argv = BASE_DOTTED + [
        "--algo.advantage.estimator",
        "reinforce_baseline",
        "--reward.prm.credit",
        "value",
        "--dry-run",
    ]
    assert launcher.main(argv) == 0
    text = capsys.readouterr().out
    # the first line says what this is: not a stock command a user could paste and lose the plugin
    assert text.startswith("openrlhf-visualprm train --dry-run: nothing started")
    assert not text.splitlines()[0].startswith("python")
    assert "credit value (returns on step-end tokens; prm credited)" in text
    assert "padding with confident steps pays" in text  # value's launch note
    assert launcher.main(BASE_DOTTED + ["--reward.prm.credit", "off", "--dry-run"]) == 0
    assert "credit off: scalar (mean)" in capsys.readouterr().out


@pytest.mark.parametrize(
    "argv, flag, phrase",
    [
        (BASE_DOTTED + ["--rolout.batch_size", "4"], "--rolout.batch_size", "Did you mean --rollout.batch_size"),
        (BASE_DOTTED + ["--reward.prm.agregation", "min"], "--reward.prm.agregation", "--reward.prm.aggregation"),
        (BASE_LEGACY + ["--n_sample_per_prompt", "4"], "--n_sample_per_prompt", "--n_samples_per_prompt"),
        (BASE_DOTTED + ["--reward.prm.aggregation", "median"], "--reward.prm.aggregation", "invalid choice"),
        (BASE_DOTTED + ["--algo.advantage.estimator", "ppo"], "--algo.advantage.estimator", "invalid choice"),
        (BASE_DOTTED + ["--reward.weights", "prm=x"], "--reward.weights", "not a number"),
        (BASE_DOTTED + ["--reward.weights", "judge=1"], "--reward.weights", "not configured"),
        (BASE_DOTTED + ["--reward.remote_url", "r.py"], "--reward.remote_url", "exclude each other"),
        (BASE_DOTTED + ["--reward.outcome.enable", "--data.label_key", ""], "--data.label_key", "ground truth"),
        (BASE_DOTTED + ["--reward.judge.model", "mr-judge", "--rollout.n_samples_per_prompt", "1",
                        "--algo.advantage.estimator", "reinforce"], "--rollout.n_samples_per_prompt", ">= 2"),
        (["--pretrain", "m", "--reward.remote_url", "r.py", "--reward.prm.credit", "diff"], "--reward.prm.credit",
         "no plugin reward model"),
        (BASE_DOTTED + ["--reward.prm.dense", "diff"], "--reward.prm.dense", "replaced by --reward.prm.credit"),
        (BASE_DOTTED + ["--reward.prm.value_max_steps", "0"], "--reward.prm.value_max_steps", ">= 1"),
        (["--pretrain", "m", "--advantage_estimator", "group_norm"], "--reward.model_name_or_path", "no reward source"),
        (BASE_DOTTED + ["--reward.model_name_or_path", "visualprm,visualprm-v1"], "--reward.model_name_or_path",
         "more than one prm"),
        (BASE_DOTTED + ["--reward.model_name_or_path", "visualprm,"], "--reward.model_name_or_path", "empty items"),
        (BASE_DOTTED + ["--reward.model_name_or_path", "no-such-alias"], "--reward.model_name_or_path",
         "not a known alias"),
    ],
)  # fmt: skip
def test_bad_flags_and_combinations_fail_naming_the_flag(argv, flag, phrase, capsys):
    with pytest.raises(launcher.FlagError) as err:
        launcher.prepare(argv)
    assert err.value.flag == flag
    assert flag in str(err.value) and phrase in str(err.value)
    assert launcher.main(argv + ["--dry-run"]) == 2
    assert flag in capsys.readouterr().err


def test_a_real_launch_refuses_a_reward_model_that_is_not_on_this_machine(monkeypatch):
    monkeypatch.delenv(launcher.SKIP_MODEL_CHECK_ENV, raising=False)
    with pytest.raises(launcher.FlagError, match="hf download OpenGVLab/VisualPRM-8B-v1_1") as err:
        launcher.prepare(BASE_DOTTED)  # no --dry-run
    assert err.value.flag == "--reward.model_name_or_path"
    assert any("not on this machine" in n for n in launcher.prepare(BASE_DOTTED + ["--dry-run"]).notes)


def test_openrlhf_post_parse_assertion_surfaces_as_a_launch_error():
    argv = ["--pretrain", "m", "--reward_pretrain", "visualprm", "--advantage_estimator", "rloo"]
    with pytest.raises(launcher.FlagError, match="rloo requires n_samples_per_prompt > 1"):
        launcher.prepare(argv)


# ----------------------------------------------------------------------------- registry
def _fake_checkpoint(root: Path, model_type: str) -> Path:
    root.mkdir(parents=True)
    config = {"model_type": model_type, "architectures": ["X"], "vision_config": {}}
    (root / "config.json").write_text(json.dumps(config))
    return root


def test_registry_resolves_aliases_local_folders_and_user_aliases(tmp_path):
    prm_dir = _fake_checkpoint(tmp_path / "my-prm", "internvl")
    judge_dir = _fake_checkpoint(tmp_path / "my-judge", "qwen2_5_vl")
    assert registry.resolve_model("visualprm").repo_id == "OpenGVLab/VisualPRM-8B-v1_1"
    assert registry.resolve_model("visualprm-v1").repo_id == "OpenGVLab/VisualPRM-8B"
    assert registry.resolve_model("MR-Judge").kind == "judge"
    local = registry.resolve_model(str(prm_dir))
    assert (local.kind, local.source, local.path) == ("prm", "local", str(prm_dir.resolve()))
    assert registry.resolve_model(str(judge_dir)).kind == "judge"
    registry.register("team-prm", registry.RewardModelSpec(str(prm_dir), "prm"))
    try:
        assert registry.resolve_model("team-prm").path == str(prm_dir.resolve())
        with pytest.raises(ValueError, match="already registered"):
            registry.register("team-prm", registry.RewardModelSpec(str(judge_dir), "prm"))
    finally:
        registry.unregister("team-prm")
    assert registry.get_spec("team-prm") is None
    with pytest.raises(registry.ModelNotFoundError, match="no config.json"):
        registry.resolve_model(str(tmp_path))
    with pytest.raises(registry.ModelNotFoundError, match="hf download OpenGVLab/VisualPRM-8B"):
        registry.require_local("visualprm-v1")


def test_local_prm_and_judge_list_is_rewritten_to_paths(tmp_path, data_cwd):
    prm_dir = _fake_checkpoint(tmp_path / "prm", "internvl_chat")
    judge_dir = _fake_checkpoint(tmp_path / "judge", "qwen2_5_vl")
    argv = BASE_DOTTED + [
        "--reward.model_name_or_path",
        f"{prm_dir},{judge_dir}",
        "--reward.judge.rounds",
        "8",
    ]
    plan = launcher.prepare(argv)
    value = plan.openrlhf_argv[len(plan.openrlhf_argv) - 1 - plan.openrlhf_argv[::-1].index(
        "--reward.model_name_or_path") + 1]  # fmt: skip
    assert value == f"{prm_dir.resolve()},{judge_dir.resolve()}"
    assert plan.reward_plan.components == ["prm", "judge"]
    assert plan.reward_plan.judge.rounds == 8 and plan.reward_plan.judge.path == str(judge_dir.resolve())
    assert not any("not on this machine" in n for n in plan.notes)


def test_stock_reward_model_passes_through_untouched(tmp_path, data_cwd):
    rm_dir = _fake_checkpoint(tmp_path / "rm", "llama")
    (rm_dir / "config.json").write_text(
        json.dumps({"model_type": "llama", "architectures": ["LlamaForCausalLM"]})
    )
    plan = launcher.prepare(
        ["--pretrain", "m", "--reward_pretrain", str(rm_dir), "--advantage_estimator", "reinforce",
         "--vllm_num_engines", "1"]
    )  # fmt: skip
    assert plan.reward_plan is None
    assert str(rm_dir) in plan.openrlhf_argv


# ----------------------------------------------------------------------------- the real launch path
@pytest.fixture
def intercepted_train(monkeypatch):
    """Run the real launcher and OpenRLHF's real CLI module; stop inside train() at get_strategy."""
    import cpu_stubs  # tests/support/, on sys.path through tests/conftest.py

    for name in ("flash_attn", "flash_attn.bert_padding", "flash_attn.utils", "flash_attn.utils.distributed", "vllm",
                 "vllm.inputs", "vllm.utils"):  # fmt: skip
        if name in sys.modules:
            monkeypatch.setitem(sys.modules, name, sys.modules[name])
    cpu_stubs.install()
    import openrlhf.trainer.ray.launcher as ray_launcher
    import openrlhf.utils
    import ray

    calls: dict = {"init": []}

    class Reached(Exception):
        pass

    def fake_get_strategy(args):
        caller = sys._getframe(1).f_globals  # train()'s module globals
        calls["args"] = args
        calls["reward_actor_in_train"] = caller["RewardModelActor"]
        calls["launcher_reward_actor"] = ray_launcher.RewardModelActor
        calls["plan_env"] = os.environ.get(PLAN_ENV)
        raise Reached

    monkeypatch.setattr(openrlhf.utils, "get_strategy", fake_get_strategy)
    monkeypatch.setattr(ray, "is_initialized", lambda: False)
    monkeypatch.setattr(ray, "init", lambda **kw: calls["init"].append(kw))
    monkeypatch.delenv(PLAN_ENV, raising=False)
    monkeypatch.setenv(launcher.SKIP_MODEL_CHECK_ENV, "1")  # the 8B checkpoints are not on a CI machine
    original_actor = ray_launcher.RewardModelActor
    yield calls, Reached
    ray_launcher.RewardModelActor = original_actor
    os.environ.pop(PLAN_ENV, None)


@pytest.mark.parametrize("spelling", ["legacy", "dotted"])
def test_launch_runs_openrlhf_cli_and_train_gets_the_namespace(intercepted_train, spelling, data_cwd):
    from openrlhf_visualprm.plugin.reward_actor import plugin_reward_actor

    calls, reached = intercepted_train
    argv = (BASE_LEGACY if spelling == "legacy" else BASE_DOTTED) + PLUGIN
    with pytest.raises(reached):
        launcher.main(argv)
    args = calls["args"]
    assert args.actor.model_name_or_path == "Qwen/Qwen2.5-VL-7B-Instruct"
    assert args.reward.model_name_or_path == "OpenGVLab/VisualPRM-8B-v1_1"
    assert args.algo.advantage.estimator == "group_norm"
    assert args.rollout.n_samples_per_prompt == 8 and args.rollout.batch_size == 16
    assert (args.data.prompt_dataset, args.data.label_key, args.data.image_key) == (
        str(data_cwd / "data" / "geo3k.jsonl"),  # made absolute: Ray workers run elsewhere
        "label",
        "images",
    )
    assert args.vllm.num_engines == 2 and args.reward.num_gpus_per_node == 1
    assert args.reward.remote_url is None and args.critic.model_name_or_path is None
    assert not hasattr(args, "dry_run") and not hasattr(args.reward, "prm")
    # train() would build the plugin's reward actor, and every Ray worker gets the hook and the plan
    assert calls["reward_actor_in_train"] is plugin_reward_actor()
    assert calls["launcher_reward_actor"] is plugin_reward_actor()
    (init,) = calls["init"][:1]
    runtime_env = init["runtime_env"]
    assert runtime_env["worker_process_setup_hook"] == "openrlhf_visualprm.plugin.worker_hook.setup_worker"
    plan = RewardPlan.from_json(runtime_env["env_vars"][PLAN_ENV])
    assert plan.components == ["prm", "outcome"] and plan.prm.aggregation == "min"
    assert calls["plan_env"] == runtime_env["env_vars"][PLAN_ENV]
    assert runtime_env["env_vars"]["RAY_ENABLE_ZERO_COPY_TORCH_TENSORS"] == os.environ.get(
        "RAY_ENABLE_ZERO_COPY_TORCH_TENSORS", "1"
    )


def test_train_subcommand_is_registered_and_passes_flags_through(capsys, data_cwd):
    from openrlhf_visualprm import cli

    assert cli.SUBCOMMANDS["train"][0] == "openrlhf_visualprm.train_ppo_ray"
    assert cli.main(["train", *BASE_LEGACY, "--dry-run"]) == 0
    assert "--actor.model_name_or_path Qwen/Qwen2.5-VL-7B-Instruct" in capsys.readouterr().out
    assert cli.main(["train", "--help"]) == 0
    assert "--reward.prm.aggregation" in capsys.readouterr().out


@pytest.mark.parametrize(
    "typed, meant",
    [
        ("\\n\\n", "\n\n"),
        ("\\x", "\\x"),
        ("。\\n", "。\n"),
        ("re:\\d+\\.\\n", "re:\\d+\\.\\n"),
        ("preset:think", "preset:think"),
    ],
)
def test_splitter_flag_is_taken_literally_but_for_newline_and_tab(typed, meant):
    """Only \\n and \\t are escapes: '\\x' used to be a unicode_escape traceback and '。\\n' garbled."""
    plan = launcher.prepare(BASE_DOTTED + ["--reward.prm.splitter", typed, "--dry-run"]).reward_plan
    assert plan.prm.splitter == meant


def test_bad_splitter_regex_and_preset_name_the_flag():
    for typed, phrase in (("re:\\x", "not a valid regular expression"), ("preset:bullets", "unknown preset")):
        with pytest.raises(launcher.FlagError, match=phrase) as err:
            launcher.prepare(BASE_DOTTED + ["--reward.prm.splitter", typed, "--dry-run"])
        assert "--reward.prm" in str(err.value)


def test_judge_rounds_that_break_label_balancing_are_refused(tmp_path, data_cwd):
    judge_dir = _fake_checkpoint(tmp_path / "judge", "qwen2_5_vl")
    base = BASE_DOTTED + ["--reward.model_name_or_path", str(judge_dir), "--reward.judge.group_size", "4"]
    # groups of 8 in sets of 4: every response holds each of A-D once per 4 rounds
    for rounds in ("1", "2", "6"):
        with pytest.raises(launcher.FlagError, match="breaks label balancing") as err:
            launcher.prepare(base + ["--reward.judge.rounds", rounds])
        assert err.value.flag == "--reward.judge.rounds" and "a multiple of 4" in str(err.value)
    assert launcher.prepare(base + ["--reward.judge.rounds", "4"]).reward_plan.judge.rounds == 4
    # groups of 6 in sets of 3 (k=4 -> 2 sets): blocks of 3
    six = [a if a != "--rollout.n_samples_per_prompt=8" else "--rollout.n_samples_per_prompt=6" for a in base]
    assert launcher.prepare(six + ["--reward.judge.rounds", "3"]).reward_plan.judge.rounds == 3
    with pytest.raises(launcher.FlagError, match="--reward.judge.rounds 6 \\(a multiple of 3\\)"):
        launcher.prepare(six + ["--reward.judge.rounds", "4"])


def test_knockout_gets_a_launch_note(tmp_path, data_cwd):
    judge_dir = _fake_checkpoint(tmp_path / "judge", "qwen2_5_vl")
    argv = BASE_DOTTED + [
        "--reward.model_name_or_path",
        str(judge_dir),
        "--reward.judge.schedule",
        "knockout",
    ]
    notes = launcher.prepare(argv).notes
    assert any("not a learning signal" in n for n in notes), notes
