"""Every command in the README's ``bash`` blocks runs as written (issue 20 item 15), in one folder
laid out the way the README's own commands leave it (``convert-data`` writes the ``prompts.jsonl``
the ``train`` example reads). Files come from ``make-sample-data``; a command that names a real
checkpoint (``visualprm``, ``mr-judge``, a placeholder ``PATH``) or a GPU runs with ``--help``
appended instead (its flags still parse); ``train`` examples carry ``--dry-run`` themselves.
``make`` lines are the Makefile's, tested by running it. Inline commands in the prose must name
real subcommands, and no text recommends the ``huggingface-cli`` that no longer works."""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from openrlhf_visualprm import cli
from openrlhf_visualprm.data import samples

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()
REAL_MODELS = re.compile(r"--(?:model|prm|judge|reward\.model_name_or_path) (?:visualprm|mr-judge|PATH|M)\b")


def readme_commands() -> list[str]:
    """``openrlhf-visualprm ...`` commands of the bash blocks, continuation lines joined, comments
    and the synopsis' optional ``[...]`` groups removed, in README order."""
    out = []
    for block in re.findall(r"```bash\n(.*?)```", README, re.S):
        text = block.replace("\\\n", " ")
        for line in text.splitlines():
            line = re.sub(r"\s+#.*$", "", line).strip()
            if line.startswith("openrlhf-visualprm "):
                out.append(re.sub(r"\s*\[[^\]]*\]", "", line))
    return out


def needs_a_real_checkpoint(command: str) -> bool:
    if "--dry-run" in command:  # train plans without the checkpoint
        return False
    return bool(REAL_MODELS.search(command)) or "--device cuda" in command or " serve " in f"{command} "


@pytest.fixture(scope="module")
def readme_dir(tmp_path_factory) -> Path:
    """The files the README's commands name, from the sample data in the released formats."""
    work = tmp_path_factory.mktemp("readme")
    src = work / "samples"
    samples.write_samples(src)
    (work / "data" / "mathvista").mkdir(parents=True)
    shutil.copy(src / "mathvista.parquet", work / "testmini.parquet")
    shutil.copy(src / "visualprm400k_v1_prm.jsonl", work / "ScienceQA_prm.jsonl")
    shutil.copytree(src / "images", work / "images")
    return work


def _run(command: str, cwd: Path) -> subprocess.CompletedProcess:
    argv = shlex.split(command)
    env = {**os.environ, "PYTHONPATH": str(ROOT), "HF_HUB_OFFLINE": "1"}
    return subprocess.run(
        [sys.executable, "-m", "openrlhf_visualprm.cli", *argv[1:]],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_the_readme_has_the_commands_this_test_expects():
    subcommands = [c.split()[1] for c in readme_commands()]
    assert subcommands == [
        "convert-data",
        "convert-data",
        "eval-prm",
        "eval-judge",
        "eval-bon",
        "judge",
        "train",
    ]


def test_every_readme_command_runs_as_written(readme_dir):
    ran = []
    for command in readme_commands():
        if needs_a_real_checkpoint(command):
            command = f"{command} --help"
        proc = _run(command, readme_dir)
        assert proc.returncode == 0, f"{command}\n exit {proc.returncode}\n{proc.stderr[-3000:]}"
        assert "Traceback" not in proc.stderr, proc.stderr[-3000:]
        ran.append((command, proc))
    # what the runs left behind is what the next commands read
    rows = [json.loads(line) for line in (readme_dir / "prompts.jsonl").read_text().splitlines()]
    assert rows and {"prompt", "images", "label"} <= set(rows[0])
    assert (readme_dir / "steps.jsonl").stat().st_size > 0
    train = next(proc for command, proc in ran if command.split()[1] == "train")
    plan = train.stdout
    assert "nothing started" in plan.splitlines()[0] and "total 8 (fits one 8-GPU node)" in plan
    assert "would refuse" not in plan


def test_inline_commands_run(tmp_path):
    """The prose's complete commands (placeholders DIR / PATH / N filled, ``[...]`` dropped); those
    that need a checkpoint or start a service run with ``--help``. The ``python benchmarks/...``
    lines are the benchmarks' own smoke runs (minutes each): ``tests/test_progress.py`` runs two."""
    commands = sorted(set(re.findall(r"`(openrlhf-visualprm [a-z][^`]*)`", README)))
    ran = 0
    for command in commands:
        if "COMMAND" in command or "ARGS" in command or "error:" in command:
            continue  # a pattern, not a command
        command = re.sub(r"\s*\[[^\]]*\]", "", command).replace("DIR", str(tmp_path / "d"))
        if needs_a_real_checkpoint(command) or command.split()[1] in ("check-model", "prm-prompt"):
            command += " --help"
        proc = _run(command, tmp_path)
        assert proc.returncode == 0 and "Traceback" not in proc.stderr, f"{command}\n{proc.stderr[-2000:]}"
        ran += 1
    assert ran >= 4 and (tmp_path / "d").is_dir()  # make-sample-data wrote its files


def test_inline_commands_name_real_subcommands():
    inline = re.findall(r"`openrlhf-visualprm ([a-z][a-z-]*)", README)
    assert inline and set(inline) - set(cli.SUBCOMMANDS) == set(), set(inline) - set(cli.SUBCOMMANDS)


def test_no_text_recommends_huggingface_cli():
    """``huggingface-cli download`` no longer works in the installed huggingface_hub: ``hf download``."""
    paths = [ROOT / "README.md", *ROOT.glob("openrlhf_visualprm/**/*.py"), *ROOT.glob("examples/*.sh")]
    stale = [str(p.relative_to(ROOT)) for p in paths if "huggingface-cli" in p.read_text()]
    assert stale == []
    assert "hf download OpenGVLab/VisualPRM-8B-v1_1" in README


def test_no_text_cites_a_design_file_the_repo_does_not_ship():
    paths = [ROOT / "README.md", *ROOT.glob("openrlhf_visualprm/**/*.py"), *ROOT.glob("examples/*.sh"),
             *ROOT.glob("benchmarks/*.py")]  # fmt: skip
    cited = {str(p.relative_to(ROOT)) for p in paths if "DESIGN.md" in p.read_text()}
    assert (ROOT / "DESIGN.md").exists() or cited == set(), cited
