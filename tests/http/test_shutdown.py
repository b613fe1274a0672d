"""SIGTERM under load: the server stops accepting, answers every accepted request, exits 0."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from tests import models


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.contextmanager
def sluice_serve(repo: Path, *flags: str) -> Iterator[tuple[subprocess.Popen[bytes], str]]:
    """``sluice serve REPO`` in a child process; yields it and its base URL once ready."""
    port = free_port()
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).parents[2])}
    command = [sys.executable, "-m", "server", "serve", str(repo), "--http-port", str(port)]
    command += ["--grpc-port", str(free_port()), "--log-level", "warning", *flags]
    proc = subprocess.Popen(command, env=env)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                urllib.request.urlopen(f"{base}/v2/health/live").close()
                break
            except OSError:
                assert time.monotonic() < deadline and proc.poll() is None
                time.sleep(0.1)
        yield proc, base
    finally:
        proc.kill()
        proc.wait()


def _body(name: str, rows: int, width: int) -> bytes:
    tensor = {
        "name": name,
        "shape": [rows, width],
        "datatype": "FP32",
        "data": [0.1] * (rows * width),
    }
    return json.dumps({"inputs": [tensor]}).encode()


def test_sigterm_under_load_loses_no_accepted_request(tmp_path: Path) -> None:
    config = "[batching]\nmax_batch_size = 64\nmax_queue_size = 100\n"
    # 64 layers: a 64-row request runs for tens of ms, so requests queue behind it.
    models.write_repository(tmp_path, {"slow": models.slow(layers=64)}, {"slow": config})
    body = _body("x", 64, 512)
    # One worker: /metrics then shows the queue the requests wait in ("auto" would start one
    # per core, each with its own queue).
    with sluice_serve(tmp_path, "--workers", "1") as (proc, base):

        def call(_: int) -> int:
            req = urllib.request.Request(f"{base}/v2/models/slow/infer", data=body, method="POST")
            with urllib.request.urlopen(req, timeout=60) as resp:
                return int(resp.status)

        with ThreadPoolExecutor(16) as pool:
            futures = [pool.submit(call, i) for i in range(16)]
            # Wait until most requests are queued behind the running batch, then SIGTERM.
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline:
                text = urllib.request.urlopen(f"{base}/metrics").read().decode()
                depth = [x for x in text.splitlines() if x.startswith("sluice_queue_depth{")]
                if depth and float(depth[0].split()[-1]) >= 3:
                    break
                time.sleep(0.002)
            else:
                raise AssertionError("requests never queued up")
            proc.send_signal(signal.SIGTERM)
            statuses = [f.result() for f in futures]
        assert statuses == [200] * 16
        assert proc.wait(60) == 0


def test_workers_share_the_port_and_drain_on_sigterm(tmp_path: Path) -> None:
    models.write_repository(tmp_path, {"mlp": models.small_mlp()}, {})
    body = _body("input", 1, 16)
    with sluice_serve(tmp_path, "--workers", "2") as (proc, base):
        deadline = time.monotonic() + 60
        pids: set[str] = set()
        while len(pids) < 2:  # each worker has its own registry, which names its pid
            assert time.monotonic() < deadline and proc.poll() is None
            req = urllib.request.Request(f"{base}/v2/models/mlp/infer", data=body)
            urllib.request.urlopen(req).close()
            text = urllib.request.urlopen(f"{base}/metrics").read().decode()
            pids.update(x for x in text.splitlines() if x.startswith("sluice_worker_pid"))
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(60) == 0


def test_workers_exit_when_the_parent_is_killed(tmp_path: Path) -> None:
    models.write_repository(tmp_path, {"mlp": models.small_mlp()}, {})
    with sluice_serve(tmp_path, "--workers", "2") as (proc, base):
        proc.kill()  # SIGKILL: the parent cannot forward anything
        proc.wait()
        deadline = time.monotonic() + 30
        while True:
            try:
                urllib.request.urlopen(f"{base}/v2/health/live").close()
            except OSError:
                break  # no worker holds the port any more
            assert time.monotonic() < deadline, "orphaned workers still serve"
            time.sleep(0.1)
