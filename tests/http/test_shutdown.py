"""SIGTERM under load: the server stops accepting, answers every accepted request, exits 0."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from tests import models


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_sigterm_under_load_loses_no_accepted_request(tmp_path: Path) -> None:
    config = "[batching]\nmax_batch_size = 64\nmax_queue_size = 100\n"
    models.write_repository(tmp_path, {"slow": models.slow()}, {"slow": config})
    port = free_port()
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).parents[2])}
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "server",
            "serve",
            str(tmp_path),
            "--http-port",
            str(port),
            "--grpc-port",
            str(free_port()),
            "--log-level",
            "warning",
        ],
        env=env,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                urllib.request.urlopen(f"{base}/v2/health/ready").close()
                break
            except OSError:
                assert time.monotonic() < deadline and proc.poll() is None
                time.sleep(0.1)
        body = json.dumps(
            {
                "inputs": [
                    {
                        "name": "x",
                        "shape": [64, 512],
                        "datatype": "FP32",
                        "data": [0.1] * (64 * 512),
                    }
                ]
            }
        ).encode()

        def call(_: int) -> int:
            req = urllib.request.Request(f"{base}/v2/models/slow/infer", data=body, method="POST")
            with urllib.request.urlopen(req, timeout=60) as resp:
                return resp.status

        with ThreadPoolExecutor(12) as pool:
            futures = [pool.submit(call, i) for i in range(12)]
            # Wait until most requests are queued behind the running batch, then SIGTERM.
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline:
                text = urllib.request.urlopen(f"{base}/metrics").read().decode()
                depth = [x for x in text.splitlines() if x.startswith("sluice_queue_depth{")]
                if depth and float(depth[0].split()[-1]) >= 6:
                    break
                time.sleep(0.01)
            else:
                raise AssertionError("requests never queued up")
            proc.send_signal(signal.SIGTERM)
            statuses = [f.result() for f in futures]
        assert statuses == [200] * 12
        assert proc.wait(60) == 0
    finally:
        proc.kill()
        proc.wait()


def test_workers_share_the_port_and_drain_on_sigterm(tmp_path: Path) -> None:
    models.write_repository(tmp_path, {"mlp": models.small_mlp()}, {})
    port = free_port()
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).parents[2])}
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "server",
            "serve",
            str(tmp_path),
            "--http-port",
            str(port),
            "--grpc-port",
            str(free_port()),
            "--workers",
            "2",
            "--log-level",
            "warning",
        ],
        env=env,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        pids: set[str] = set()
        body = json.dumps(
            {
                "inputs": [
                    {"name": "input", "shape": [1, 16], "datatype": "FP32", "data": [0.5] * 16}
                ]
            }
        ).encode()
        while len(pids) < 2:
            assert time.monotonic() < deadline and proc.poll() is None
            try:
                req = urllib.request.Request(f"{base}/v2/models/mlp/infer", data=body)
                urllib.request.urlopen(req).close()
                text = urllib.request.urlopen(f"{base}/metrics").read().decode()
            except OSError:
                time.sleep(0.1)
                continue
            pid = [x for x in text.splitlines() if x.startswith("sluice_worker_pid")]
            pids.add(pid[0])
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(60) == 0
    finally:
        proc.kill()
        proc.wait()
