"""Flags and env vars generated from the config fields: one name, one default, one parser per option.

The launcher's ``--reward.*`` flags, every command's component flags and the ``reward_fns``
variables come from ``config_fields.option`` metadata on PRMConfig / JudgeConfig / OutcomeConfig /
RewardPlan (issue 21 item 5). These tests hold the generated surfaces to the config types.
"""

from __future__ import annotations

import argparse
import importlib

import pytest

from openrlhf_visualprm.cli import SUBCOMMANDS
from openrlhf_visualprm.config_fields import config_from_flags, env_name, flag_name, options
from openrlhf_visualprm.errors import ConfigError, FlagError
from openrlhf_visualprm.judge.config import JudgeConfig
from openrlhf_visualprm.outcome.config import OutcomeConfig
from openrlhf_visualprm.plugin import options as plugin_options
from openrlhf_visualprm.plugin.plan import RewardPlan
from openrlhf_visualprm.prm.config import PRMConfig
from openrlhf_visualprm.workers import reward_func

LAUNCHER = {
    "prm": (PRMConfig, plugin_options.PRM_PREFIX),
    "judge": (JudgeConfig, plugin_options.JUDGE_PREFIX),
    "outcome": (OutcomeConfig, plugin_options.OUTCOME_PREFIX),
}

# A non-default value per option type, as text (flag / env) and as the config holds it.
OTHER = {
    ("prm", "method"): ("single", "single"),
    ("prm", "aggregation"): ("min", "min"),
    ("prm", "max_steps"): ("3", 3),
    ("prm", "splitter"): ("\\n", "\n"),
    ("prm", "temperature"): ("0.5", 0.5),
    ("prm", "credit"): ("diff", "diff"),
    ("prm", "v0"): ("0.5", 0.5),
    ("prm", "empty_score"): ("0.25", 0.25),
    ("prm", "value_max_steps"): ("4", 4),
    ("prm", "credit_temperature"): ("0.3", 0.3),
    ("prm", "max_tiles"): ("6", 6),
    ("prm", "dtype"): ("bfloat16", "bfloat16"),
    ("prm", "system_message"): ("prm", "prm"),
    ("judge", "schedule"): ("pairwise", "pairwise"),
    ("judge", "rounds"): ("8", 8),
    ("judge", "group_size"): ("3", 3),
    ("judge", "backend"): ("vllm", "vllm"),
    ("judge", "max_new_tokens"): ("64", 64),
    ("judge", "aggregator"): ("borda", "borda"),
    ("judge", "on_failure"): ("skip", "skip"),
    ("outcome", "checker"): ("exact", "exact"),
    ("outcome", "timeout_s"): ("2.5", 2.5),
    ("outcome", "answer_key"): ("gt", "gt"),
}


def test_every_described_field_has_a_test_value():
    described = {(c, o.name) for c, (cls, _) in LAUNCHER.items() for o in options(cls) if o.kind is not bool}
    assert described == set(OTHER)


def test_launcher_flag_defaults_are_the_config_defaults():
    ns, rest = plugin_options.parse_plugin_flags([])
    assert rest == []
    for component, (cls, _) in LAUNCHER.items():
        config = config_from_flags(ns, cls, dest_prefix=f"reward_{component}_")
        assert config == cls(), component
    assert RewardPlan() == config_from_flags(ns, RewardPlan, dest_prefix="reward_")


@pytest.mark.parametrize("component,name", sorted(OTHER))
def test_each_launcher_flag_reaches_its_field(component, name):
    cls, prefix = LAUNCHER[component]
    opt = {o.name: o for o in options(cls)}[name]
    text, value = OTHER[(component, name)]
    ns, rest = plugin_options.parse_plugin_flags([flag_name(opt, prefix), text, "--other", "x"])
    assert rest == ["--other", "x"]
    config = config_from_flags(ns, cls, dest_prefix=f"reward_{component}_")
    assert getattr(config, name) == value
    assert config == cls(**{name: value})  # and nothing else moved


def test_boolean_field_is_a_switch():
    ns, _ = plugin_options.parse_plugin_flags(["--reward.prm.credit_anchor"])
    assert config_from_flags(ns, PRMConfig, dest_prefix="reward_prm_").credit_anchor is True


@pytest.mark.parametrize(
    "argv,flag",
    [
        (["--reward.prm.max_steps", "0"], "--reward.prm.max_steps"),
        (["--reward.judge.rounds", "65"], "--reward.judge.rounds"),
        (["--reward.outcome.timeout", "0"], "--reward.outcome.timeout"),
        (["--reward.max_failed_fraction", "1.5"], "--reward.max_failed_fraction"),
        (["--reward.prm.temperature", "inf"], "--reward.prm.temperature"),
    ],
)
def test_a_refused_value_names_its_flag_even_for_an_unused_component(argv, flag):
    with pytest.raises(FlagError) as err:
        plugin_options.parse_plugin_flags(argv)
    assert err.value.flag == flag and str(err.value).startswith(flag)


@pytest.mark.parametrize("component,name", sorted(k for k in OTHER))
def test_each_env_var_reaches_its_field(component, name, monkeypatch):
    cls = reward_func.env_configs()[component]
    opt = {o.name: o for o in options(cls)}[name]
    var = env_name(component, opt)
    if var is None:  # this route cannot honour the option: no variable, and none is read
        assert name in ("credit", "v0", "empty_score", "value_max_steps", "credit_temperature") or (
            component == "judge" and name in ("schedule", "rounds", "group_size", "aggregator", "on_failure")
        )
        return
    text, value = OTHER[(component, name)]
    monkeypatch.setenv(var, text)
    build = {
        "prm": reward_func.prm_config_from_env,
        "judge": reward_func.judge_config_from_env,
        "outcome": reward_func.outcome_config_from_env,
    }[component]
    assert getattr(build(), name) == value
    assert var in reward_func.env_vars()


def test_env_names_kept_from_before_generation():
    names = set(reward_func.env_vars())
    for var in (
        "OPENRLHF_VISUALPRM_PRM_AGGREGATION",
        "OPENRLHF_VISUALPRM_PRM_SYSTEM_MESSAGE",
        "OPENRLHF_VISUALPRM_JUDGE_MAX_NEW_TOKENS",
        "OPENRLHF_VISUALPRM_OUTCOME_CHECKER",
        "OPENRLHF_VISUALPRM_ANSWER_KEY",
        "OPENRLHF_VISUALPRM_ANSWER_TIMEOUT",
    ):
        assert var in names


def test_bad_env_values_name_the_variable(monkeypatch):
    monkeypatch.setenv("OPENRLHF_VISUALPRM_PRM_METHOD", "fast")
    with pytest.raises(ConfigError, match="OPENRLHF_VISUALPRM_PRM_METHOD must be one of"):
        reward_func.prm_config_from_env()
    monkeypatch.delenv("OPENRLHF_VISUALPRM_PRM_METHOD")
    monkeypatch.setenv("OPENRLHF_VISUALPRM_ANSWER_TIMEOUT", "1e9")
    with pytest.raises(ConfigError, match=r"\(from OPENRLHF_VISUALPRM_ANSWER_TIMEOUT='1e9'\)"):
        reward_func.outcome_config_from_env()
    monkeypatch.setenv("OPENRLHF_VISUALPRM_ANSWER_TIMEOUT", "soon")
    with pytest.raises(ConfigError, match="OPENRLHF_VISUALPRM_ANSWER_TIMEOUT"):
        reward_func.outcome_config_from_env()


def _subcommand_parsers() -> dict[str, argparse.ArgumentParser]:
    out = {}
    for name, (module, _) in SUBCOMMANDS.items():
        if name == "train":  # OpenRLHF's parser plus ours: covered above
            continue
        parser = argparse.ArgumentParser(prog=name)
        importlib.import_module(module).add_arguments(parser)
        out[name] = parser
    return out


def test_one_default_per_option_in_every_command():
    """A command flag named after a config field (``--max-tiles``, ``--rounds``, ``--dtype``...) has
    the field's default and choices; ``--device`` and ``--dtype`` default to auto everywhere."""
    by_flag: dict[str, list] = {}
    from openrlhf_visualprm.workers.config import PoolConfig, ServiceConfig, WorkerConfig

    for cls in (PRMConfig, JudgeConfig, WorkerConfig, PoolConfig, ServiceConfig):
        for opt in options(cls):
            if opt.flag:
                by_flag.setdefault(flag_name(opt, "--"), []).append(opt)
    seen = set()
    for command, parser in _subcommand_parsers().items():
        for action in parser._actions:
            for flag in action.option_strings:
                if flag in ("--device", "--dtype"):
                    assert action.default == "auto", (command, flag)
                for opt in by_flag.get(flag, ()):
                    seen.add(flag)
                    assert action.default == opt.default, (command, flag, action.default, opt.default)
                    if opt.choices:
                        assert tuple(action.choices) == opt.choices, (command, flag)
    # the commands do take the config flags (a renamed command flag would empty this check)
    assert {"--method", "--aggregation", "--max-tiles", "--dtype", "--system-message", "--rounds"} <= seen
    assert {"--max-batch-tokens", "--num-workers", "--cache-size", "--port", "--max-restarts"} <= seen
