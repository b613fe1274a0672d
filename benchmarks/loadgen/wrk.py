"""Drive wrk with ``post.lua`` and read the JSON line its ``done()`` prints."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

from benchmarks.loadgen.payloads import Payload
from benchmarks.loadgen.stats import Run

SCRIPT = Path(__file__).with_name("post.lua")
WRK = "wrk"


def version() -> str:
    out = subprocess.run([WRK, "--version"], capture_output=True, text=True, check=False)
    return (out.stdout + out.stderr).splitlines()[0].strip()


def run(
    url: str,
    payload: Payload,
    body_file: Path,
    connections: int,
    duration_s: float,
    threads: int = 1,
) -> Run:
    """One wrk run of ``duration_s`` with ``connections`` keep-alive connections.

    Non-2xx answers, socket errors and timeouts all count as errors.
    """
    cmd = [
        WRK,
        f"-t{min(threads, connections)}",
        f"-c{connections}",
        f"-d{duration_s:g}s",
        "--timeout",
        "10s",
        "-s",
        str(SCRIPT),
        url,
        "--",
        str(body_file),
        payload.headers["Content-Type"],
    ]
    if "Inference-Header-Content-Length" in payload.headers:
        cmd.append(payload.headers["Inference-Header-Content-Length"])
    out = subprocess.run(cmd, capture_output=True, text=True, check=True, timeout=duration_s + 60)
    line = next((x for x in out.stdout.splitlines() if x.startswith("WRK_JSON ")), None)
    if line is None:
        raise RuntimeError(f"wrk printed no result: {out.stdout}\n{out.stderr}")
    data = json.loads(line.removeprefix("WRK_JSON "))
    lat = data["latency_us"]
    errors = sum(data["errors"].values())
    return Run(
        rps=(data["requests"] - data["errors"]["status"]) / (data["duration_us"] / 1e6),
        p50_ms=lat["p50"] / 1000,
        p90_ms=lat["p90"] / 1000,
        p99_ms=lat["p99"] / 1000,
        errors=errors,
    )
