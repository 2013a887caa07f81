"""Launch one real OpenRLHF training step in a subprocess and read back what it did.

What a launch leaves in its case folder (written by the stand-ins under ``standins/``):
- ``experiences-1.pkl``: the experiences the policy actor received, after OpenRLHF's advantage
  code (``e2e_policy.RecordingPolicy.fit``);
- ``vllm.jsonl``: every generation request, with the md5 of each image the engine got;
- ``output.log``: the launch's stdout and stderr; ``tb/``: the TensorBoard event files.
Everything a test compares against is computed here independently of the plugin: the PRM called
directly on the decoded response and the dataset image, outcomes from the demo set's own
``correct`` flags, advantages from OpenRLHF's documented formulas.
"""

from __future__ import annotations

import hashlib
import json
import os
import pickle
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch

HERE = Path(__file__).resolve().parent
STANDINS = HERE / "standins"
PROJECT_ROOT = HERE.parents[1]
N_SAMPLES = 4  # responses per prompt in every case
LAUNCH_TIMEOUT_S = 900


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def image_md5(path: str | Path) -> str:
    from PIL import Image

    with Image.open(path) as image:
        return hashlib.md5(image.convert("RGB").tobytes()).hexdigest()


def python_path(*extra: Path) -> str:
    parts = [str(STANDINS), str(PROJECT_ROOT), *map(str, extra)]
    if os.environ.get("PYTHONPATH"):
        parts.append(os.environ["PYTHONPATH"])
    return os.pathsep.join(parts)


# ----------------------------------------------------------------------------- the Ray cluster
@dataclass
class RayCluster:
    """``ray start --head`` with logical GPUs in its own temp dir and process group."""

    temp_dir: Path
    cwd: Path
    env: dict[str, str]
    log_path: Path
    address: str = ""
    process: subprocess.Popen | None = None

    def start(self, timeout_s: float = 180) -> None:
        port = free_port()
        ports = {
            flag: free_port()
            for flag in (
                "--ray-client-server-port",
                "--dashboard-agent-grpc-port",
                "--dashboard-agent-listen-port",
                "--metrics-export-port",
                "--runtime-env-agent-port",
                "--node-manager-port",
                "--object-manager-port",
            )
        }
        cmd = [
            str(Path(sys.executable).parent / "ray"),
            "start",
            "--head",
            "--block",
            f"--port={port}",
            "--num-cpus=8",
            "--num-gpus=4",
            f"--temp-dir={self.temp_dir}",
            "--include-dashboard=false",
            "--disable-usage-stats",
            *(f"{flag}={value}" for flag, value in ports.items()),
        ]
        self.address = f"127.0.0.1:{port}"
        self.log = self.log_path.open("w")  # noqa: SIM115 - closed in stop()
        self.process = subprocess.Popen(
            cmd, cwd=self.cwd, env=self.env, stdout=self.log, stderr=subprocess.STDOUT, start_new_session=True
        )
        deadline = time.time() + timeout_s
        while time.time() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"ray start exited with {self.process.returncode}: {self.log.name}")
            probe = subprocess.run(
                [str(Path(sys.executable).parent / "ray"), "status", f"--address={self.address}"],
                env=self.env,
                capture_output=True,
                text=True,
            )
            if probe.returncode == 0 and "GPU" in probe.stdout:
                return
            time.sleep(2)
        self.stop()
        raise RuntimeError(f"the e2e Ray cluster did not come up in {timeout_s}s: {self.log.name}")

    def stop(self) -> None:
        """Ends this cluster's processes only: its process group, then anything left that runs
        from its temp dir (Ray's own processes name it on their command lines)."""
        import signal

        if self.process is not None and self.process.poll() is None:
            for sig, wait in ((signal.SIGTERM, 30), (signal.SIGKILL, 10)):
                try:
                    os.killpg(self.process.pid, sig)
                except ProcessLookupError:
                    break
                try:
                    self.process.wait(wait)
                    break
                except subprocess.TimeoutExpired:
                    continue
        self.log.close()
        marker = str(self.temp_dir)
        for proc in Path("/proc").iterdir():
            if not proc.name.isdigit():
                continue
            try:
                cmdline = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            except OSError:
                continue
            if marker in cmdline and int(proc.name) != os.getpid():
                try:
                    os.kill(int(proc.name), signal.SIGKILL)
                except ProcessLookupError:
                    pass


# ----------------------------------------------------------------------------- one launch
@dataclass
class Launch:
    returncode: int
    output: str
    case_dir: Path
    seconds: float

    def records(self) -> dict:
        path = self.case_dir / "experiences-1.pkl"
        assert path.exists(), f"the policy stand-in recorded no experiences:\n{self.tail()}"
        with path.open("rb") as f:
            return pickle.load(f)

    def vllm_requests(self) -> list[dict]:
        path = self.case_dir / "vllm.jsonl"
        assert path.exists(), f"the vLLM stand-in got no request:\n{self.tail()}"
        return [json.loads(line) for line in path.read_text().splitlines()]

    def tail(self, chars: int = 6000) -> str:
        return self.output[-chars:]


def launch(
    route: str, argv: list[str], case_dir: Path, cluster: RayCluster, cwd: Path, env: dict | None = None
) -> Launch:
    """Run ``e2e_launch ROUTE ARGV`` in ``cwd`` against ``cluster``; output goes to the case folder."""
    case_dir.mkdir(parents=True, exist_ok=True)
    full_env = {
        **cluster.env,
        "RAY_ADDRESS": cluster.address,
        "E2E_CASE_DIR": str(case_dir),
        **(env or {}),
    }
    start = time.time()
    proc = subprocess.run(
        [sys.executable, "-m", "e2e_launch", route, *argv],
        cwd=cwd,
        env=full_env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        timeout=LAUNCH_TIMEOUT_S,
    )
    (case_dir / "output.log").write_text(proc.stdout)
    return Launch(proc.returncode, proc.stdout, case_dir, time.time() - start)


# ----------------------------------------------------------------------------- what reached the policy
@dataclass
class Sample:
    """One response as the policy actor received it."""

    prompt: str
    label: dict
    images: list
    index: int
    response_ids: list[int]
    reward: float
    returns: torch.Tensor
    advantages: torch.Tensor
    info: dict[str, float]
    extra: dict = field(default_factory=dict)

    @property
    def group(self) -> int:
        return self.index // N_SAMPLES

    @property
    def slot(self) -> int:
        return self.index % N_SAMPLES


def samples(records: dict) -> list[Sample]:
    out = []
    for exp in records["experiences"]:
        batch = exp["action_mask"].shape[0]
        for row in range(batch):
            mask = exp["action_mask"][row].bool()
            label = exp["labels"][row]
            info = {}
            for key, value in exp["info"].items():
                if isinstance(value, torch.Tensor) and value.dim() >= 1 and value.numel() == batch:
                    info[key] = float(value.reshape(batch)[row])  # (B,) or (B, 1) from HTTP rewards
                elif isinstance(value, list) and len(value) == batch and isinstance(value[row], (int, float)):
                    info[key] = float(value[row])
            out.append(
                Sample(
                    prompt=exp["prompts"][row],
                    label=json.loads(label) if isinstance(label, str) else label,
                    images=list(exp["images"][row] or []),
                    index=int(exp["index"][row]),
                    response_ids=exp["sequences"][row, 1:][mask].tolist(),
                    reward=float(exp["rewards"][row]),
                    returns=exp["returns"][row][mask].float(),
                    advantages=exp["advantages"][row][mask].float(),
                    info=info,
                )
            )
    return sorted(out, key=lambda s: s.index)


def groups(rows: list[Sample]) -> dict[int, list[Sample]]:
    out: dict[int, list[Sample]] = {}
    for s in rows:
        out.setdefault(s.group, []).append(s)
    for g in out.values():
        g.sort(key=lambda s: s.slot)
    return out


# ----------------------------------------------------------------------------- independent expectations
def question_of(dataset_row: dict) -> str:
    """The question the policy was asked: the dataset prompt without its image placeholder."""
    return dataset_row["prompt"].replace("<image>", "").strip()


def token_end_positions(tokenizer, ids: list[int], char_ends: list[int]) -> list[int]:
    """For each character offset, the first response token whose decoded prefix reaches it."""
    lengths = [len(tokenizer.decode(ids[: t + 1], skip_special_tokens=True)) for t in range(len(ids))]
    out = []
    for end in char_ends:
        out.append(next(t for t, n in enumerate(lengths) if n >= end))
    return out


def cumulative_returns(token_rewards: torch.Tensor) -> torch.Tensor:
    """gamma = 1: returns[t] = sum of rewards from t to the end."""
    return token_rewards.flip(0).cumsum(0).flip(0)


def batch_whiten(values: list[torch.Tensor]) -> list[torch.Tensor]:
    """OpenRLHF's advantage normalisation for reinforce / reinforce_baseline: over every action
    token of the step, mean 0 and (population) variance 1."""
    flat = torch.cat(values).double()
    mean = flat.mean()
    rstd = flat.var(unbiased=False).clamp(min=1e-8).rsqrt()
    return [((v.double() - mean) * rstd).float() for v in values]


def tensorboard_scalars(tb_dir: Path) -> dict[str, list[float]]:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    out: dict[str, list[float]] = {}
    runs = {p.parent for p in Path(tb_dir).rglob("events.out.tfevents.*")}
    assert runs, f"no TensorBoard event file under {tb_dir}"
    for run in runs:
        acc = EventAccumulator(str(run))
        acc.Reload()
        for tag in acc.Tags()["scalars"]:
            out.setdefault(tag, []).extend(e.value for e in acc.Scalars(tag))
    return out
