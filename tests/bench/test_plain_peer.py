"""Against the benchmarks' plain Starlette + ONNX Runtime server (not Sluice), under uvicorn."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import onnx
import pytest

from benchmarks.models import mlp
from server.bench import Step, run_step
from tests.bench.conftest import quick

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def plain_server(tmp_path: Path) -> Iterator[str]:
    model = tmp_path / "mlp.onnx"
    onnx.save(mlp((8, 16, 8)), str(model))
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {**os.environ, "SLUICE_PLAIN_MODEL": str(model), "PYTHONPATH": str(ROOT)}
    cmd = [sys.executable, "-m", "uvicorn", "benchmarks.peers.plain_server:app",
           "--port", str(port), "--log-level", "warning"]  # fmt: skip
    proc = subprocess.Popen(cmd, env=env, cwd=ROOT)
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/v2/health/ready", timeout=1)
                break
            except OSError:
                if time.monotonic() > deadline or proc.poll() is not None:
                    raise RuntimeError("the plain server did not start") from None
                time.sleep(0.2)
        yield f"127.0.0.1:{port}"
    finally:
        proc.terminate()
        proc.wait(10)


@pytest.mark.slow
def test_plain_starlette_server(plain_server: str) -> None:
    result = run_step(quick(plain_server, rows=4), Step(concurrency=2))
    assert result.errors == 0, result.error_messages
    assert result.requests > 0
    assert result.client["answers_checked"] > 0
    assert result.server is None  # no statistics endpoint there
