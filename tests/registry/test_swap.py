"""A deploy under steady HTTP and gRPC load, with several workers: no request fails."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
import urllib.request
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient

from benchmarks.models import mlp, save
from server.registry import open_registry
from tests.http.test_shutdown import free_port

X = np.ones((2, 16), np.float32)


def _http_caller(url: str, seen: Counter[str], errors: list[str], stop: threading.Event) -> None:
    with httpclient.InferenceServerClient(url) as client:
        inp = httpclient.InferInput("input", [2, 16], "FP32")
        inp.set_data_from_numpy(X, binary_data=True)
        while not stop.is_set():
            try:
                result = client.infer("m", [inp])
                seen[f"http:{result.get_response()['model_version']}"] += 1
            except Exception as exc:  # every failure is the finding
                errors.append(f"http: {exc}")


def _grpc_caller(url: str, seen: Counter[str], errors: list[str], stop: threading.Event) -> None:
    with grpcclient.InferenceServerClient(url) as client:
        inp = grpcclient.InferInput("input", [2, 16], "FP32")
        inp.set_data_from_numpy(X)
        while not stop.is_set():
            try:
                result = client.infer("m", [inp])
                seen[f"grpc:{result.get_response().model_version}"] += 1
            except Exception as exc:
                errors.append(f"grpc: {exc}")


@pytest.mark.slow
def test_swap_under_load_fails_no_request(tmp_path: Path, database: str | None) -> None:
    repo = tmp_path / "repo"
    with open_registry(repo, database) as reg:
        reg.register("m", save(mlp((16, 32, 4), seed=1), tmp_path / "v1.onnx"))
        reg.register("m", save(mlp((16, 32, 4), seed=2), tmp_path / "v2.onnx"))
        reg.deploy("m", 1)
    http_port, grpc_port = free_port(), free_port()
    command = [sys.executable, "-m", "server", "serve", str(repo), "--workers", "2"]
    command += ["--http-port", str(http_port), "--grpc-port", str(grpc_port)]
    command += ["--log-level", "warning"] + (["--registry", database] if database else [])
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).parents[2])}
    proc = subprocess.Popen(command, env=env)
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{http_port}/v2/models/m/ready").close()
                break
            except OSError:
                time.sleep(0.2)
        seen: Counter[str] = Counter()
        errors: list[str] = []
        stop = threading.Event()
        callers = [
            threading.Thread(target=call, args=(url, seen, errors, stop))
            for call, url in [
                (_http_caller, f"127.0.0.1:{http_port}"),
                (_http_caller, f"127.0.0.1:{http_port}"),
                (_grpc_caller, f"127.0.0.1:{grpc_port}"),
                (_grpc_caller, f"127.0.0.1:{grpc_port}"),
            ]
        ]
        for caller in callers:
            caller.start()
        time.sleep(1.0)
        with open_registry(repo, database) as reg:
            reg.deploy("m", 2, replace=True, reason="swap under load")
        before = sum(seen.values())
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and not (seen["http:2"] > 20 and seen["grpc:2"] > 20):
            time.sleep(0.1)
        time.sleep(1.0)
        stop.set()
        for caller in callers:
            caller.join(30)
    finally:
        proc.terminate()
        proc.wait(60)
    assert errors == []
    assert seen["http:1"] > 0 and seen["grpc:1"] > 0 and before > 0
    assert seen["http:2"] > 20 and seen["grpc:2"] > 20
