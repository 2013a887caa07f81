"""One default per option: every function, dataclass and flag default of the PRM's token budget
and the judge's token cap is the one constant, never a copy of its value.

Two checks: the defaults equal the constants (monkeypatching a constant is pointless, defaults are
bound at import, so the value check alone would pass a literal copy), and the source holds no
literal of a ``max_batch_tokens`` / ``max_new_tokens`` default (that one fails on a copy).
"""

from __future__ import annotations

import ast
import inspect
from dataclasses import fields
from pathlib import Path

from openrlhf_visualprm.judge.config import DEFAULT_MAX_NEW_TOKENS, JudgeConfig
from openrlhf_visualprm.prm.config import DEFAULT_MAX_BATCH_TOKENS, PRMConfig

PACKAGE = Path(__file__).resolve().parents[1] / "openrlhf_visualprm"
# option name -> its one default; a parameter, field or flag whose name ends with the option's
# (prm_max_batch_tokens, judge_max_new_tokens too). Other values (the demo's tiny judge budget) are
# choices, not copies.
OPTIONS = {"max_batch_tokens": DEFAULT_MAX_BATCH_TOKENS, "max_new_tokens": DEFAULT_MAX_NEW_TOKENS}


def _default(fn, name: str):
    return inspect.signature(fn).parameters[name].default


def _field_default(cls, name: str):
    return next(f.default for f in fields(cls) if f.name == name)


def test_prm_token_budget_defaults_are_the_one_constant():
    from openrlhf_visualprm.plugin.reward_host import PluginRewards
    from openrlhf_visualprm.prm.scorer import VisualPRM
    from openrlhf_visualprm.rewards.components import PRMComponent, load_prm_component
    from openrlhf_visualprm.workers.config import WorkerConfig

    assert _default(VisualPRM.score_many, "max_batch_tokens") == DEFAULT_MAX_BATCH_TOKENS
    assert _default(PRMComponent.__init__, "max_batch_tokens") == DEFAULT_MAX_BATCH_TOKENS
    assert _default(load_prm_component, "max_batch_tokens") == DEFAULT_MAX_BATCH_TOKENS
    assert _default(PluginRewards.__init__, "prm_max_batch_tokens") == DEFAULT_MAX_BATCH_TOKENS
    assert _field_default(WorkerConfig, "max_batch_tokens") == DEFAULT_MAX_BATCH_TOKENS
    assert WorkerConfig(PRMConfig()).max_batch_tokens == DEFAULT_MAX_BATCH_TOKENS


def test_judge_token_cap_defaults_are_the_one_constant():
    from openrlhf_visualprm.eval.judge_adapter import load_pair_judge
    from openrlhf_visualprm.judge.backends import HFBackend, VLLMBackend
    from openrlhf_visualprm.judge.judge import MRJudge

    assert JudgeConfig().max_new_tokens == DEFAULT_MAX_NEW_TOKENS
    for fn in (HFBackend.__init__, VLLMBackend.__init__, MRJudge.from_pretrained, load_pair_judge):
        assert _default(fn, "max_new_tokens") == DEFAULT_MAX_NEW_TOKENS, fn.__qualname__


def test_scoring_and_judging_defaults_are_the_configs():
    """The scorer's, the component's and the judge's keyword defaults are PRMConfig's / JudgeConfig's."""
    from openrlhf_visualprm.judge.judge import MRJudge
    from openrlhf_visualprm.prm.scorer import VisualPRM
    from openrlhf_visualprm.rewards.components import PRMComponent

    prm = PRMConfig()
    for fn in (VisualPRM.score, VisualPRM.score_many, PRMComponent.__init__):
        for name in ("method", "aggregation", "temperature"):
            assert _default(fn, name) == getattr(prm, name), (fn.__qualname__, name)
    assert _default(PRMComponent.__init__, "splitter") == prm.splitter
    assert _default(PRMComponent.__init__, "max_steps") == prm.max_steps
    judge = JudgeConfig()
    for param, option in [
        ("schedule", "schedule"),
        ("k", "group_size"),
        ("rounds", "rounds"),
        ("aggregator", "aggregator"),
        ("on_failure", "on_failure"),
    ]:
        assert _default(MRJudge.__init__, param) == getattr(judge, option), param
    assert _default(MRJudge.from_pretrained, "backend") == judge.backend


def _literal_defaults(tree: ast.AST):
    """(name, default expression) of each parameter default, class-level field and argparse
    ``default=`` of a ``--flag`` (its name with dashes as underscores)."""
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            args = node.args
            positional = args.posonlyargs + args.args
            pairs = list(zip(positional[len(positional) - len(args.defaults) :], args.defaults))
            pairs += [(a, d) for a, d in zip(args.kwonlyargs, args.kw_defaults) if d is not None]
            for arg, default in pairs:
                yield arg.arg, default
        elif isinstance(node, ast.ClassDef):
            for stmt in node.body:
                if isinstance(stmt, ast.AnnAssign) and isinstance(stmt.target, ast.Name) and stmt.value:
                    yield stmt.target.id, stmt.value
        elif isinstance(node, ast.Call) and node.args and isinstance(node.args[0], ast.Constant):
            flag = node.args[0].value
            if isinstance(flag, str) and flag.startswith("--"):
                for kw in node.keywords:
                    if kw.arg == "default":
                        yield flag.lstrip("-").replace("-", "_"), kw.value


def test_no_literal_copy_of_a_token_default_in_the_source():
    found = []
    for path in sorted(PACKAGE.rglob("*.py")):
        rel = path.relative_to(PACKAGE).as_posix()
        for name, value in _literal_defaults(ast.parse(path.read_text())):
            option = next((o for o in OPTIONS if name.endswith(o)), None)
            if option and isinstance(value, ast.Constant) and value.value == OPTIONS[option]:
                found.append(f"{rel}:{value.lineno}: {name} = {value.value!r}")
    assert found == [], "use prm.config.DEFAULT_MAX_BATCH_TOKENS / judge.config.DEFAULT_MAX_NEW_TOKENS"


def test_lower_layer_function_defaults_are_the_configs():
    """Functions below the config types (aggregation, credit, schedules, verdict aggregation) take
    their defaults from the same constants the config fields use."""
    import importlib

    judge_aggregate = importlib.import_module("openrlhf_visualprm.judge.aggregate")
    schedule = importlib.import_module("openrlhf_visualprm.judge.schedule")
    from openrlhf_visualprm.prm.aggregate import aggregate
    from openrlhf_visualprm.rewards.credit import step_returns

    prm, judge = PRMConfig(), JudgeConfig()
    assert _default(aggregate, "temperature") == prm.temperature
    assert _default(step_returns, "temperature") == prm.credit_temperature
    assert _default(step_returns, "value_max_steps") == prm.value_max_steps
    assert _default(step_returns, "v0") == prm.v0 and _default(step_returns, "empty_score") == prm.empty_score
    assert _default(schedule.listwise, "rounds") == judge.rounds
    assert _default(schedule.plan, "rounds") == judge.rounds
    assert _default(judge_aggregate.aggregate, "aggregator") == judge.aggregator
    assert _default(judge_aggregate.aggregate, "on_failure") == judge.on_failure
    assert _default(judge_aggregate.combine_orders, "on_failure") == judge.on_failure
