"""`--help` and the torch-free modules load no torch, Ray, vLLM, OpenRLHF or transformers.

Checked in a fresh interpreter (a subprocess), since this test process has loaded all of them.
Each check reports the first heavy module that appeared and the command or module that pulled
it in, so a regression names its culprit.
"""

from __future__ import annotations

import json
import subprocess
import sys

from openrlhf_visualprm.cli import SUBCOMMANDS

HEAVY = ("torch", "ray", "vllm", "openrlhf", "transformers")

# Modules a config, a label or a `--help` reads: they must stay importable without the heavy stack.
LIGHT_MODULES = (
    "openrlhf_visualprm",
    "openrlhf_visualprm.cli",
    "openrlhf_visualprm.errors",
    "openrlhf_visualprm.labels",
    "openrlhf_visualprm.registry",
    "openrlhf_visualprm.answers",
    "openrlhf_visualprm.prm.config",
    "openrlhf_visualprm.prm.template",
    "openrlhf_visualprm.judge.config",
    "openrlhf_visualprm.outcome.config",
    "openrlhf_visualprm.rewards",
    "openrlhf_visualprm.steps",
    "openrlhf_visualprm.torch_names",
    "openrlhf_visualprm.images",
    "openrlhf_visualprm.judge",
    "openrlhf_visualprm.judge.parse",
    "openrlhf_visualprm.judge.template",
    "openrlhf_visualprm.judge.schedule",
    "openrlhf_visualprm.judge.aggregate",
    "openrlhf_visualprm.workers",
    "openrlhf_visualprm.workers.errors",
    "openrlhf_visualprm.workers.config",
    "openrlhf_visualprm.workers.protocol",
    "openrlhf_visualprm.plugin.plan",
    "openrlhf_visualprm.plugin.options",
    "openrlhf_visualprm.data.records",
    "openrlhf_visualprm.envs",
    "openrlhf_visualprm.rewards.combine",
    "openrlhf_visualprm.plugin.launcher",
    "reward_fns.outcome",
)

_PROBE = r"""
import contextlib, io, json, sys
HEAVY = {heavy!r}
out = {{}}
for kind, name in json.loads(sys.argv[1]):
    if kind == "module":
        __import__(name)
    else:
        from openrlhf_visualprm import cli
        with contextlib.redirect_stdout(io.StringIO()):
            try:
                cli.main([name, "--help"])
            except SystemExit:
                pass
    loaded = [h for h in HEAVY if h in sys.modules]
    if loaded:
        out = {{"culprit": [kind, name], "loaded": loaded}}
        break
print("PROBE " + json.dumps(out))
"""


def _probe(items: list[tuple[str, str]]) -> dict:
    proc = subprocess.run(
        [sys.executable, "-c", _PROBE.format(heavy=HEAVY), json.dumps(items)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    lines = [line for line in proc.stdout.splitlines() if line.startswith("PROBE ")]
    assert lines, proc.stdout[-2000:] + proc.stderr[-3000:]
    return json.loads(lines[-1].split(" ", 1)[1])


def test_every_subcommand_help_loads_no_heavy_package():
    result = _probe([("help", name) for name in SUBCOMMANDS])
    assert result == {}, f"`openrlhf-visualprm {result['culprit'][1]} --help` loaded {result['loaded']}"


def test_torch_free_modules_load_no_heavy_package():
    result = _probe([("module", name) for name in LIGHT_MODULES])
    assert result == {}, f"importing {result['culprit'][1]} loaded {result['loaded']}"


def test_probe_detects_a_heavy_import():
    # The probe itself must be able to fail: a module that loads torch is reported by name.
    result = _probe([("module", "openrlhf_visualprm.prm.scorer")])
    assert result["culprit"] == ["module", "openrlhf_visualprm.prm.scorer"] and "torch" in result["loaded"]


def test_imports_register_no_exit_hooks_and_leave_logging_alone():
    code = (
        "import atexit, logging\n"
        "ours = []\n"
        "real = atexit.register\n"
        "def spy(fn, *a, **k):\n"
        "    if str(getattr(fn, '__module__', None) or '').startswith('openrlhf_visualprm'): ours.append(fn)\n"
        "    return real(fn, *a, **k)\n"
        "atexit.register = spy\n"
        "import openrlhf_visualprm.answers, openrlhf_visualprm.workers.pool, openrlhf_visualprm.workers.service\n"
        "from openrlhf_visualprm.log import ensure_package_handler\n"
        "ensure_package_handler()\n"
        "pkg = logging.getLogger('openrlhf_visualprm')\n"
        "print('PROBE', len(ours), len(logging.getLogger().handlers), len(pkg.handlers))\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    line = [x for x in proc.stdout.splitlines() if x.startswith("PROBE ")]
    assert line, proc.stderr[-3000:]
    # none of our exit hooks at import; the root logger untouched;
    # the package logger got its own handler because nothing else would print its records
    assert line[-1].split()[1:] == ["0", "0", "1"], line[-1]


def test_readme_flag_and_env_tables_are_the_generated_ones():
    """Both tables come from the config fields; a field added, renamed or re-documented without
    ``make readme-tables`` fails here."""
    from openrlhf_visualprm.plugin import readme_tables

    text = readme_tables.README.read_text(encoding="utf-8")
    assert readme_tables.render(text) == text, "README tables are stale: run make readme-tables"
    generated = readme_tables.tables()
    for table in generated.values():
        assert table in text
    # every config field with a flag / env var is in them, under its generated name
    from openrlhf_visualprm.config_fields import env_name, flag_name, options
    from openrlhf_visualprm.plugin.options import JUDGE_PREFIX, OUTCOME_PREFIX, PRM_PREFIX
    from openrlhf_visualprm.workers.reward_func import env_configs

    prefixes = {"prm": PRM_PREFIX, "judge": JUDGE_PREFIX, "outcome": OUTCOME_PREFIX}
    for component, cls in env_configs().items():
        for opt in options(cls):
            if opt.flag:
                assert f"| `{flag_name(opt, prefixes[component])}` |" in generated["plugin flags"]
            if opt.env:
                assert f"| `{env_name(component, opt)}` |" in generated["environment variables"]


def test_environment_is_read_only_in_envs():
    import re
    from pathlib import Path

    package = Path(__file__).resolve().parents[1] / "openrlhf_visualprm"
    sources = {p: p.read_text(encoding="utf-8") for p in package.rglob("*.py")}
    # names bound to one of our variables anywhere in the package (PLAN_ENV = "OPENRLHF_VISUALPRM_PLAN")
    constants = {
        m.group(1) for t in sources.values() for m in re.finditer(r"(\w+) = \"OPENRLHF_VISUALPRM_", t)
    }
    read = re.compile(
        r"(?:os\.environ\.get|os\.getenv)\(\s*([\"'A-Za-z_][\w\"']*)|os\.environ\[([^\]]+)\](?!\s*=)"
    )
    offenders = []
    for path, text in sources.items():
        if path.name == "envs.py":
            continue
        for match in read.finditer(text):
            arg = (match.group(1) or match.group(2)).strip("\"'")
            if arg.startswith("OPENRLHF_VISUALPRM_") or arg in constants:
                offenders.append(f"{path.relative_to(package)}: {match.group(0)}")
    assert offenders == [], offenders
