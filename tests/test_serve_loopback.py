"""``serve`` without ``--address``: every socket its processes listen on is loopback (issue 14.1).

The real command in a subprocess (private Ray, tiny VisualPRM, Serve's HTTP proxy); once
``/health`` answers, the listening TCP sockets of the command and all its descendants (GCS,
raylet, agents, workers, Serve proxy) are listed with psutil.
"""

from __future__ import annotations

import ipaddress
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

import httpx
import psutil
import pytest


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _listening(root: psutil.Process) -> list[tuple[int, str, str, int]]:
    out = []
    for proc in [root, *root.children(recursive=True)]:
        try:
            for conn in proc.net_connections(kind="inet"):
                if conn.status == psutil.CONN_LISTEN:
                    out.append((proc.pid, proc.name(), conn.laddr.ip, conn.laddr.port))
        except psutil.Error:  # a process that ended meanwhile
            continue
    return out


def _is_loopback(ip: str) -> bool:
    addr = ipaddress.ip_address(ip)
    mapped = getattr(addr, "ipv4_mapped", None)
    return (mapped or addr).is_loopback


@pytest.mark.timeout(300)
def test_serve_listens_on_loopback_only(tiny_prm_path, tmp_path):
    port = _free_port()
    ray_dir = tempfile.mkdtemp(prefix="ray-lo-", dir="/tmp")  # AF_UNIX paths: at most 107 bytes
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path), "RAY_ACCEL_ENV_VAR_OVERRIDE_ON_ZERO": "0"}
    env.pop("RAY_ADDRESS", None)
    cmd = [
        sys.executable,
        "-m",
        "openrlhf_visualprm.cli",
        "serve",
        "--model",
        str(tiny_prm_path),
        "--num-gpus",
        "0",
        "--num-cpus",
        "0.5",
        "--port",
        str(port),
        "--pool-name",
        "loopback-test-pool",
        "--ray-temp-dir",
        ray_dir,
    ]
    log = open(tmp_path / "serve.log", "w")
    proc = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.monotonic() + 240
        while True:
            assert proc.poll() is None, (tmp_path / "serve.log").read_text()[-3000:]
            try:
                if httpx.get(f"http://127.0.0.1:{port}/health", timeout=5).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, (tmp_path / "serve.log").read_text()[-3000:]
            time.sleep(1)
        sockets = _listening(psutil.Process(proc.pid))
        names = {name for _, name, _, _ in sockets}
        assert (
            len(sockets) >= 5 and any("gcs_server" in n for n in names) and any("raylet" in n for n in names)
        )
        exposed = [s for s in sockets if not _is_loopback(s[2])]
        assert not exposed, f"listening beyond loopback: {exposed}"
        assert port in {p for _, _, _, p in sockets}
        # Issue 22 item 1: a second service on the same port used to start and take half the traffic
        second = subprocess.run(
            [*cmd[:-3], "second-pool", "--ray-temp-dir", ray_dir],
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert second.returncode == 2, second.stdout[-2000:] + second.stderr[-2000:]
        assert f"--port {port}: 127.0.0.1:{port} is already in use" in second.stdout + second.stderr
        assert httpx.get(f"http://127.0.0.1:{port}/health", timeout=5).status_code == 200
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        log.close()
        shutil.rmtree(ray_dir, ignore_errors=True)
