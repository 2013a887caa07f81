"""Numeric settings (issue 22 items 3, 6, 10, 12): one check, in the config types, on every route.

NaN, infinity (a JSON ``1e400``), huge integers and values whose cost grows without bound are
refused with a message naming the setting: as flags (the launcher's dry run exits 2), env vars of
the ``reward_fns`` files, service request configs and exported plans.
"""

from __future__ import annotations

import json
import math
import sys
import time
from pathlib import Path

import pytest

from openrlhf_visualprm.bounds import number, parse_number
from openrlhf_visualprm.errors import ConfigError
from openrlhf_visualprm.judge.config import JudgeConfig
from openrlhf_visualprm.outcome.config import OutcomeConfig
from openrlhf_visualprm.prm.aggregate import aggregate
from openrlhf_visualprm.prm.config import PRMConfig

INF = json.loads("1e400")  # valid JSON, a float infinity once parsed
HUGE = 10**5000  # a 5,001-digit integer (repr() of it raises in Python 3.11)


@pytest.mark.parametrize(
    "value",
    [math.nan, INF, -INF, True, "1", None, HUGE, 11],
    ids=["nan", "inf", "-inf", "bool", "str", "none", "huge", "above"],
)
def test_number_refuses_non_finite_non_numbers_and_names_the_setting(value):
    with pytest.raises(ConfigError, match="^my setting must be"):
        number(value, "my setting", low=0, high=10)


def test_number_bounds_and_parse_number():
    assert number(0, "x", low=0) == 0 and number(3, "x", high=3, integer=True) == 3
    with pytest.raises(ConfigError, match=r"x must be a finite number > 0, got 0"):
        number(0, "x", low=0, low_open=True)
    with pytest.raises(ConfigError, match=r"must be an integer"):
        number(2.0, "x", integer=True)
    with pytest.raises(ConfigError, match="about 5001 digits"):
        number(HUGE, "x", integer=True, high=10)
    assert parse_number(" 2.5 ", "VAR") == 2.5
    with pytest.raises(ConfigError, match="^VAR='nan' .*|^VAR must be a finite number, got nan"):
        parse_number("nan", "VAR")
    with pytest.raises(ConfigError, match="^VAR='1.5' is not an integer"):
        parse_number("1.5", "VAR", integer=True)


@pytest.mark.parametrize(
    "make, needle",
    [
        (lambda: PRMConfig(temperature=math.nan), "prm temperature"),
        (lambda: PRMConfig(temperature=INF), "prm temperature"),
        (lambda: PRMConfig(v0=math.nan), "prm v0"),
        (lambda: PRMConfig(v0=INF), "prm v0"),
        (lambda: PRMConfig(max_tiles=100_000), "prm max_tiles must be an integer in [1, 64]"),
        (lambda: PRMConfig(max_steps=0), "prm max_steps"),
        (lambda: PRMConfig(max_tiles=HUGE), "about 5001 digits"),
        (lambda: JudgeConfig(rounds=10**22), "judge rounds must be an integer in [1, 64]"),
        (lambda: JudgeConfig(max_new_tokens=10**9), "judge max_new_tokens"),
        (lambda: OutcomeConfig(timeout_s=math.nan), "outcome timeout"),
        (lambda: OutcomeConfig(timeout_s=INF), "outcome timeout"),
        (lambda: OutcomeConfig(timeout_s=10**400), "outcome timeout"),
        (lambda: PRMConfig().with_request({"temperature": INF}), "prm temperature"),
    ],
)
def test_config_types_refuse_non_finite_and_unbounded_values(make, needle):
    with pytest.raises(ConfigError) as info:
        make()
    assert needle in str(info.value)


def test_service_request_config_with_infinite_temperature_is_a_bad_request():
    from openrlhf_visualprm.errors import InputError
    from openrlhf_visualprm.rewards.groups import request_options

    with pytest.raises(InputError, match="prm temperature"):
        request_options(json.loads('{"temperature": 1e400}'), "prm", "groups[0].config")


def test_exported_plan_with_nan_weight_or_bogus_device_is_refused():
    from openrlhf_visualprm.plugin.plan import RewardPlan

    good = RewardPlan(prm=PRMConfig(), weights={"prm": 1.0})
    assert RewardPlan.from_json(good.to_json()).weights == {"prm": 1.0}
    for change, needle in (({"weights": {"prm": math.nan}}, "--reward.weights prm"),
                           ({"device": "bogus"}, "--reward.device"),
                           ({"max_failed_fraction": math.nan}, "--reward.max_failed_fraction")):  # fmt: skip
        data = {**json.loads(good.to_json()), **change}
        with pytest.raises(ConfigError, match=needle):
            RewardPlan.from_json(json.dumps(data))  # NaN survives json.dumps / loads


sys.path.insert(0, str(Path(__file__).parent))
from test_plugin_launcher import BASE_DOTTED  # noqa: E402  (the launcher tests' argv)


@pytest.mark.parametrize(
    "extra, flag",
    [
        (["--reward.device", "bogus"], "--reward.device"),
        (["--reward.weights", "prm=nan"], "--reward.weights prm"),
        (["--reward.weights", "prm=1e400"], "--reward.weights prm"),
        (["--reward.prm.temperature", "nan"], "prm temperature"),
        (["--reward.prm.v0", "inf"], "prm v0"),
        (["--reward.prm.max_tiles", "100000"], "prm max_tiles"),
        (["--reward.outcome.enable", "--reward.outcome.timeout", "inf"], "outcome timeout"),
        (["--reward.judge.model", "mr-judge", "--reward.judge.rounds", str(10**22)], "judge rounds"),
    ],
)
def test_train_dry_run_refuses_bad_numbers_naming_the_flag(extra, flag, capsys):
    from openrlhf_visualprm.plugin import launcher

    assert launcher.main(BASE_DOTTED + extra + ["--dry-run"]) == 2
    err = capsys.readouterr().err
    assert flag in err and "nan" not in capsys.readouterr().out, err


@pytest.mark.parametrize(
    "var, value, needle",
    [
        ("OPENRLHF_VISUALPRM_MAX_FAILED_FRACTION", "-0.1", "in [0, 1]"),
        ("OPENRLHF_VISUALPRM_MAX_FAILED_FRACTION", "nan", "finite"),
        ("OPENRLHF_VISUALPRM_MAX_FAILED_FRACTION", "1.5", "in [0, 1]"),
        ("OPENRLHF_VISUALPRM_FAILURE_WINDOW", "0", "in [1, 100000]"),
        ("OPENRLHF_VISUALPRM_FAILURE_WINDOW", "nan", "not an integer"),
        ("OPENRLHF_VISUALPRM_FAILURE_WINDOW", "-5", "in [1, 100000]"),
    ],
)
def test_failure_window_env_vars_out_of_range_name_the_variable(monkeypatch, var, value, needle):
    from openrlhf_visualprm.workers.reward_func import _failure_window

    monkeypatch.setenv(var, value)
    with pytest.raises(ConfigError) as info:
        _failure_window("outcome")
    assert str(info.value).startswith(var) and needle in str(info.value)


@pytest.mark.parametrize("value", ["nan", "inf", "1e400"])
def test_answer_timeout_env_var_nan_is_refused_naming_it(monkeypatch, value):
    from openrlhf_visualprm.workers.reward_func import outcome_config_from_env

    monkeypatch.setenv("OPENRLHF_VISUALPRM_ANSWER_TIMEOUT", value)
    with pytest.raises(ConfigError, match="OPENRLHF_VISUALPRM_ANSWER_TIMEOUT"):
        outcome_config_from_env()


def test_tile_grid_search_refuses_a_huge_max_tiles_at_once():
    from openrlhf_visualprm.images import choose_grid

    start = time.monotonic()
    with pytest.raises(ConfigError, match="max_tiles 100000 is over the limit of 64"):
        choose_grid(640, 480, max_tiles=100_000)
    assert time.monotonic() - start < 1
    cols, rows = choose_grid(640, 480, max_tiles=64)
    assert cols * rows <= 64


# ----------------------------------------------------------------------------- softmin (item 12)
SCORES = [0.2, 0.9, 0.5, 0.65]


@pytest.mark.parametrize("temperature", [1e16, 1e300, 1e308])
def test_softmin_with_a_huge_temperature_is_the_mean(temperature):
    assert aggregate(SCORES, "softmin", temperature) == pytest.approx(sum(SCORES) / 4, rel=1e-12)


@pytest.mark.parametrize("temperature", [1e-3, 0.1, 1.0, 30.0])
def test_softmin_equals_its_formula_at_ordinary_temperatures(temperature):
    # -T log(mean(exp(-s / T))), written out directly (fine at these temperatures)
    want = -temperature * math.log(sum(math.exp(-s / temperature) for s in SCORES) / len(SCORES))
    assert aggregate(SCORES, "softmin", temperature) == pytest.approx(want, rel=1e-12, abs=1e-15)
    assert min(SCORES) <= aggregate(SCORES, "softmin", temperature) <= sum(SCORES) / 4


@pytest.mark.parametrize("temperature", [0.0, -1.0, math.nan, INF])
def test_softmin_refuses_a_temperature_that_is_not_finite_and_positive(temperature):
    with pytest.raises(ConfigError, match="softmin temperature"):
        aggregate(SCORES, "softmin", temperature)


def test_serve_refuses_a_huge_max_tiles_at_start():
    import argparse

    from openrlhf_visualprm.workers import serve_cli

    parser = argparse.ArgumentParser()
    serve_cli.add_arguments(parser)
    args = parser.parse_args(["--model", "visualprm", "--max-tiles", "100000"])
    with pytest.raises(ConfigError, match=r"prm max_tiles must be an integer in \[1, 64\]"):
        serve_cli.component_config(args)
