"""Drive h2load (nghttp2-client) with a pre-built gRPC frame over cleartext HTTP/2.

h2load does not read gRPC trailers, so success is proved by bytes: a successful ModelInfer
answer carries a response message of known size, a failed one carries none (trailers only).
Latency percentiles come from h2load's per-request log.
"""

from __future__ import annotations

import re
import subprocess
import tempfile
from pathlib import Path

import numpy as np

from benchmarks.loadgen.stats import Run

H2LOAD = "h2load"
PATH = "/inference.GRPCInferenceService/ModelInfer"


def version() -> str:
    out = subprocess.run([H2LOAD, "--version"], capture_output=True, text=True, check=False)
    return out.stdout.strip().splitlines()[0]


def run(
    host: str,
    port: int,
    body_file: Path,
    response_bytes: int,
    connections: int,
    duration_s: float,
    streams: int = 1,
    threads: int = 1,
    scheme: str = "http",
) -> Run:
    """One h2load run: ``connections`` HTTP/2 connections, ``streams`` requests in flight on
    each. Concurrency is ``connections * streams``."""
    with tempfile.NamedTemporaryFile(suffix=".log") as log:
        cmd = [
            H2LOAD,
            f"-t{min(threads, connections)}",
            f"-c{connections}",
            f"-m{streams}",
            "-D",
            f"{duration_s:g}",
            "-d",
            str(body_file),
            "-H",
            "content-type: application/grpc",
            "-H",
            "te: trailers",
            f"--log-file={log.name}",
            f"{scheme}://{host}:{port}{PATH}",
        ]
        out = subprocess.run(
            cmd, capture_output=True, text=True, check=True, timeout=duration_s + 60
        )
        elapsed_us = np.loadtxt(log.name, usecols=2, ndmin=1, dtype=np.float64)
    text = out.stdout
    done = re.search(r"requests: \d+ total, \d+ started, (\d+) done, (\d+) succeeded", text)
    data = re.search(
        r"traffic: .*?, [\d.]+\w*B \((\d+)\) headers .*?, [\d.]+\w*B \((\d+)\) data", text
    )
    if done is None or data is None:
        raise RuntimeError(f"cannot parse h2load output:\n{text}\n{out.stderr}")
    completed, succeeded = int(done.group(1)), int(done.group(2))
    # Every successful gRPC answer carries one response message of ``response_bytes``; an
    # error carries none. Tolerate a little slack for responses h2load counts at the edges.
    answered = int(data.group(2)) // response_bytes
    grpc_errors = max(0, succeeded - answered)
    seconds = duration_s
    p50, p90, p99 = np.percentile(elapsed_us, [50, 90, 99]) / 1000 if elapsed_us.size else (0, 0, 0)
    return Run(
        rps=(succeeded - grpc_errors) / seconds,
        p50_ms=float(p50),
        p90_ms=float(p90),
        p99_ms=float(p99),
        errors=(completed - succeeded) + grpc_errors,
    )
