"""One prepared run for the day a GPU is lent: every ``gpu`` test and benchmark, one JSON of figures.

``make gpu-check`` (or ``python benchmarks/gpu_check.py``) runs, each stage in its own process with
its own time limit so one hang cannot eat the lease, and writes ``--out`` after every stage
(nothing is lost when the lease ends mid-run):

- ``gpu_tests``: ``pytest -m gpu tests/test_gpu.py`` (real-size VisualPRM and judge, random weights);
- ``prm_throughput``: per-step / single / shared PRM paths at the default workload (8 responses, 7 tiles, 8 steps);
- ``judge_throughput``: listwise judge rounds, HF backend;
- ``reward_step``: one RL step of PRM + outcome rewards through the reward actor's runtime;
- ``credit``: ``credit_probe.py --json`` (hack wins per credit mode) and the time ``step_returns``
  takes per RL step (512 groups x 8 responses x 16 steps) for each mode;
- ``pool_overhead``: the Ray pool against direct scoring (skipped where Ray is not installed, as on
  the lent machines).

``--tiny`` runs the same stages on CPU with the tiny random models (a smoke run: it proves the
script and every stage start, so a typo cannot waste the GPU time; its figures mean nothing).
The whole GPU run is sized for under 8 minutes on one H100/H200. Exit status: 0 when every stage
passed or was skipped for a named reason, 1 otherwise.

    python benchmarks/gpu_check.py --out gpu-check.json            # on the GPU machine
    python benchmarks/gpu_check.py --tiny --out /tmp/gpu-check.json   # CPU smoke run
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BENCH = ROOT / "benchmarks"


def _stages(tiny: bool, work: Path) -> list[dict]:
    """``{name, argv, timeout_s, json (file the stage writes) | stdout_json, needs}`` per stage."""
    py = sys.executable
    t = ["--tiny"] if tiny else []
    return [
        {
            "name": "gpu_tests",
            "argv": [
                py,
                "-m",
                "pytest",
                "tests/test_gpu.py",
                "-m",
                "gpu",
                "-q",
                "-p",
                "no:cacheprovider",
                "-rs",
            ],
            "timeout_s": 120 if tiny else 200,
            "needs": ["pytest"],
        },
        {
            "name": "prm_throughput",
            "argv": [py, str(BENCH / "prm_throughput.py"), *t, "--repeats", "1" if tiny else "2"]
            + (["--group", "2", "--steps", "2", "--words-per-step", "8", "--tiles", "1"] if tiny else [])
            + ["--json", str(work / "prm_throughput.json")],
            "json": work / "prm_throughput.json",
            "timeout_s": 240 if tiny else 120,
        },
        {
            "name": "judge_throughput",
            "argv": [py, str(BENCH / "judge_throughput.py"), *t]
            + (
                ["--scenarios", "listwise-1r", "--group", "4", "--gen-tokens", "4", "--words", "10"]
                if tiny
                else []
            )
            + ([] if tiny else ["--scenarios", "listwise-1r,listwise-4r"])
            + ["--json", str(work / "judge_throughput.json")],
            "json": work / "judge_throughput.json",
            "timeout_s": 240 if tiny else 150,
        },
        {
            "name": "reward_step",
            "argv": [py, str(BENCH / "reward_step.py"), *t, "--components", "prm,outcome", "--json"]
            + (["--groups", "1", "--group", "2", "--skip-per-group"] if tiny else ["--groups", "32"]),
            "stdout_json": True,
            "timeout_s": 240 if tiny else 120,
        },
        {
            "name": "credit",
            "argv": [
                py,
                str(Path(__file__).resolve()),
                "--credit-stage",
                "--groups",
                "16" if tiny else "512",
            ],
            "stdout_json": True,
            "timeout_s": 120,
        },
        {
            "name": "pool_overhead",
            "argv": [py, str(BENCH / "pool_overhead.py"), "--tiny", "--groups", "1" if tiny else "12"]
            + ["--repeats", "1" if tiny else "3", "--out", str(work / "pool_overhead.json")]
            + ([] if tiny else ["--device", "cuda", "--num-gpus", "1"]),
            "json": work / "pool_overhead.json",
            "timeout_s": 240 if tiny else 150,
            "needs": ["ray"],
        },
    ]


def credit_stage(groups: int) -> dict:
    """Hack-win table of the credit probe and the cost of ``step_returns`` per mode for one RL step."""
    import random

    probe = subprocess.run(
        [sys.executable, str(BENCH / "credit_probe.py"), "--json"], capture_output=True, text=True, cwd=ROOT
    )
    if probe.returncode != 0:
        raise SystemExit(f"credit_probe.py failed ({probe.returncode}): {probe.stderr[-2000:]}")
    figures: dict = {"probe": json.loads(probe.stdout)}
    from openrlhf_visualprm.prm.aggregate import CREDIT_MODES
    from openrlhf_visualprm.rewards.credit import step_returns

    rng = random.Random(0)
    batch = [
        ([[rng.random() for _ in range(16)] for _ in range(8)], [float(rng.random() < 0.5) for _ in range(8)])
        for _ in range(groups)
    ]
    timing = {}
    for mode in [m for m in CREDIT_MODES if m != "off"]:
        start = time.perf_counter()
        for scores, outcomes in batch:
            step_returns(mode, scores, outcomes)
        timing[mode] = round(time.perf_counter() - start, 4)
    figures["step_returns_s_per_rl_step"] = timing
    figures["groups"], figures["group_size"], figures["steps"] = groups, 8, 16
    return figures


def run_stage(stage: dict) -> dict:
    missing = [m for m in stage.get("needs", []) if importlib.util.find_spec(m) is None]
    if missing:
        return {"status": "skipped", "reason": f"not installed here: {', '.join(missing)}"}
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH")) if p),
    }
    start = time.perf_counter()
    try:
        proc = subprocess.run(
            stage["argv"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=stage["timeout_s"]
        )
    except subprocess.TimeoutExpired as exc:
        tail = (exc.stdout or b"")[-2000:]
        tail = tail.decode(errors="replace") if isinstance(tail, bytes) else tail
        return {"status": "timeout", "seconds": round(time.perf_counter() - start, 1), "output_tail": tail}
    row: dict = {"status": "passed" if proc.returncode == 0 else "failed", "rc": proc.returncode}
    row["seconds"] = round(time.perf_counter() - start, 1)
    try:
        if stage.get("json") and Path(stage["json"]).exists():
            row["figures"] = json.loads(Path(stage["json"]).read_text())
        elif stage.get("stdout_json") and proc.returncode == 0:
            row["figures"] = json.loads(proc.stdout.strip().splitlines()[-1])
    except (ValueError, IndexError) as exc:
        row["status"], row["reason"] = "failed", f"unreadable figures: {exc}"
    if stage["name"] == "gpu_tests":
        lines = [ln for ln in proc.stdout.splitlines() if ln.strip()]
        row["summary"] = lines[-1] if lines else ""
        if proc.returncode == 5:  # nothing collected/selected: not a failure of the code under test
            row["status"] = "failed"
    if row["status"] != "passed":
        row["output_tail"] = (proc.stdout + proc.stderr)[-3000:]
    return row


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument(
        "--tiny", action="store_true", help="CPU smoke run with the tiny models (figures mean nothing)"
    )
    ap.add_argument(
        "--out", type=Path, default=Path("gpu-check.json"), help="JSON of figures (default gpu-check.json)"
    )
    ap.add_argument("--stages", default=None, help="comma list of stages to run (default: all)")
    ap.add_argument("--credit-stage", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--groups", type=int, default=512, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.credit_stage:
        sys.path.insert(0, str(ROOT))
        print(json.dumps(credit_stage(args.groups)))
        return 0
    if not args.tiny:
        import torch

        if not torch.cuda.is_available():
            print(
                "gpu_check: error: no CUDA device visible; use --tiny for the CPU smoke run", file=sys.stderr
            )
            return 2
    work = Path(tempfile.mkdtemp(prefix="gpu-check-"))
    stages = _stages(args.tiny, work)
    names = [s["name"] for s in stages]
    if args.stages:
        wanted = [s.strip() for s in args.stages.split(",") if s.strip()]
        unknown = [w for w in wanted if w not in names]
        if unknown:
            ap.error(f"--stages: unknown {unknown}; choose from {', '.join(names)}")
        stages = [s for s in stages if s["name"] in wanted]
    report: dict = {"tiny": args.tiny, "python": platform.python_version(), "stages": {}}
    try:
        import torch

        report["torch"] = torch.__version__
        report["device"] = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cpu"
    except ImportError:  # pragma: no cover - torch is required by every stage
        report["torch"] = None
    started = time.perf_counter()
    for i, stage in enumerate(stages, 1):
        print(f"[gpu-check {i}/{len(stages)}] {stage['name']} (limit {stage['timeout_s']} s) ...", flush=True)
        row = run_stage(stage)
        report["stages"][stage["name"]] = row
        report["total_seconds"] = round(time.perf_counter() - started, 1)
        args.out.write_text(json.dumps(report, indent=1))
        extra = row.get("reason") or row.get("summary") or ""
        print(
            f"[gpu-check {i}/{len(stages)}] {stage['name']}: {row['status']} {row.get('seconds', '')} s {extra}"
        )
    bad = [n for n, r in report["stages"].items() if r["status"] not in ("passed", "skipped")]
    print(
        f"[gpu-check] {len(stages) - len(bad)}/{len(stages)} stages passed or skipped; figures in {args.out}"
    )
    return 1 if bad else 0


if __name__ == "__main__":
    raise SystemExit(main())
