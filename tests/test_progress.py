"""Long work shows a progress bar with its total and an ETA on stderr (issue 20 item 14): the judge
command, the demo and the benchmarks; the results on stdout stay clean."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

from openrlhf_visualprm import cli

ROOT = Path(__file__).resolve().parents[1]
# tqdm's line: "DESC: 100%|####| N/N [elapsed<remaining, rate]": a total and an ETA
BAR = r"{desc}: +100%\|[^|]*\| (\d+)/\1 \[[0-9:]+<[0-9:]+"


def test_judge_command_shows_its_calls_with_total_and_eta(tiny_judge_path, demo_data, tmp_path, capsys):
    responses = tmp_path / "r.jsonl"
    responses.write_text('"It is 3."\n"It is 4."\n"It is 5."\n')
    image = str(next((demo_data.parent / "images").iterdir()))
    argv = ["judge", "--model", str(tiny_judge_path), "--image", image, "--question", "q?"]
    argv += ["--responses", str(responses), "--max-new-tokens", "2", "--rounds", "2", "--json"]
    assert cli.main(argv) == 0
    out, err = capsys.readouterr()
    assert json.loads(out)["rewards"]  # stdout is the JSON alone
    assert re.search(BAR.format(desc="judge calls"), err), err[-2000:]
    assert cli.main(argv + ["--no-progress"]) == 0
    assert "judge calls" not in capsys.readouterr().err


def _bench(script: str, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "HF_HUB_OFFLINE": "1"}
    return subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / script), *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
        cwd=ROOT,
    )


def test_prm_benchmark_shows_its_passes(tmp_path):
    proc = _bench("prm_throughput.py", "--tiny", "--group", "2", "--steps", "2", "--words-per-step", "4",
                  "--tiles", "1", "--repeats", "1", "--methods", "single,shared")  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-2000:]
    match = re.search(BAR.format(desc="prm benchmark passes"), proc.stderr)
    assert match and match.group(1) == "4", proc.stderr[-2000:]  # 2 methods x (warm-up + 1 repeat)


def test_reward_step_benchmark_shows_its_runs():
    proc = _bench("reward_step.py", "--tiny", "--components", "outcome", "--groups", "2", "--group", "2",
                  "--repeats", "2", "--json")  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-2000:]
    json.loads(proc.stdout.strip().splitlines()[-1])  # the result line (DeepSpeed logs a line first)
    assert re.search(BAR.format(desc="batched runs"), proc.stderr), proc.stderr[-2000:]
    assert re.search(BAR.format(desc="per-group runs"), proc.stderr), proc.stderr[-2000:]
