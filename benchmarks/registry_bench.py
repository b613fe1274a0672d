"""Registry benchmark: register latency and versions/s (1 and 16 concurrent writers, SQLite and
PostgreSQL, against the limit: copying, hashing and fsyncing the same file alone), and request
p99 while the server swaps versions, against its steady-state p99 (goal: within 1.5x).

    python -m benchmarks.registry_bench [--registers 32] [--swaps 5] [--tag T]
"""

from __future__ import annotations

import argparse
import datetime as dt
import hashlib
import http.client
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.loadgen.closed_loop import ClosedLoop
from benchmarks.loadgen.harness import environment, log, save_result
from benchmarks.loadgen.payloads import binary_payload
from benchmarks.models import mlp, save
from server.registry import open_registry
from tests.http.test_shutdown import free_port
from tests.registry.postgres import Cluster

ROOT = Path(__file__).resolve().parents[1]
_WRITER = """
import json, os, sys, time
from pathlib import Path
from server.registry import open_registry
repo, database, model = sys.argv[1], sys.argv[2] or None, Path(sys.argv[3])
count, start = int(sys.argv[4]), sys.argv[5]
with open_registry(repo, database) as reg:
    reg.register(f"warm-{os.getpid()}", model)  # ONNX Runtime's first session costs ~0.2 s
    print("ready", flush=True)
    while not os.path.exists(start):
        time.sleep(0.001)
    times = []
    for _ in range(count):
        t = time.perf_counter()
        reg.register("m", model, actor="bench")
        times.append(time.perf_counter() - t)
print(json.dumps(times))
"""


def copy_limit(model: Path, runs: int) -> list[float]:
    """The floor of a register: read, sha256, write and fsync the file, rename."""
    times = []
    with tempfile.TemporaryDirectory() as scratch:
        for i in range(runs):
            started = time.perf_counter()
            digest = hashlib.sha256()
            target = Path(scratch) / f"{i}.tmp"
            with model.open("rb") as src, target.open("wb") as out:
                while chunk := src.read(1 << 20):
                    digest.update(chunk)
                    out.write(chunk)
                out.flush()
                os.fsync(out.fileno())
            target.rename(Path(scratch) / f"{i}.onnx")
            times.append(time.perf_counter() - started)
    return times


def register_round(model: Path, database: str | None, writers: int, total: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as scratch:
        repo = Path(scratch) / "repo"
        open_registry(repo, database).close()
        start = Path(scratch) / "go"
        per = total // writers
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        procs = [
            subprocess.Popen(
                [
                    sys.executable,
                    "-c",
                    _WRITER,
                    str(repo),
                    database or "",
                    str(model),
                    str(per),
                    str(start),
                ],
                stdout=subprocess.PIPE,
                text=True,
                env=env,
            )
            for _ in range(writers)
        ]
        for proc in procs:  # every writer has imported and connected
            assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
        began = time.perf_counter()
        start.touch()
        outs = [p.communicate(timeout=600)[0] for p in procs]
        wall = time.perf_counter() - began
        times = [t for out in outs for t in json.loads(out)]
        with open_registry(repo, database) as reg:
            versions = sorted(i.version for i in reg.search("m"))
            assert versions == list(range(1, per * writers + 1)), "versions collided or were lost"
            assert reg.verify().ok
    return {
        "writers": writers,
        "registers": len(times),
        "median_ms": statistics.median(times) * 1000,
        "p95_ms": float(np.percentile(times, 95)) * 1000,
        "versions_per_s": len(times) / wall,
    }


class Load(ClosedLoop):
    """Binary 1-row requests, recording (end time, latency, served version) of each answer."""

    def __init__(self, port: int, clients: int) -> None:
        self.payload = binary_payload(1)
        super().__init__(port, clients, self.payload.headers, "/v2/models/m/infer")
        self.samples: list[tuple[float, float, str]] = []
        self.errors = 0

    def body(self, i: int) -> bytes:
        return self.payload.body

    def record(
        self, response: http.client.HTTPResponse, body: bytes, started: float, ended: float
    ) -> None:
        if response.status != 200:
            self.errors += 1
            return
        head = json.loads(body[: int(response.headers["Inference-Header-Content-Length"])])
        self.samples.append((ended, ended - started, head["model_version"]))

    def window(self, since: float, until: float) -> list[float]:
        return [lat for end, lat, _ in list(self.samples) if since <= end < until]

    def version_since(self, version: str, since: float) -> float | None:
        for end, _, served in list(self.samples):
            if end >= since and served == version:
                return end
        return None


def swap_round(model_a: Path, model_b: Path, swaps: int, steady_s: float) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as scratch:
        repo = Path(scratch) / "repo"
        with open_registry(repo) as reg:
            reg.register("m", model_a)
            reg.register("m", model_b)
            reg.deploy("m", 1)
        port = free_port()
        command = [sys.executable, "-m", "server", "serve", str(repo), "--http-port", str(port)]
        command += ["--grpc-port", str(free_port()), "--log-level", "warning"]
        server = subprocess.Popen(command, env={**os.environ, "PYTHONPATH": str(ROOT)})
        try:
            _wait_ready(port)
            rounds = []
            with Load(port, clients=4) as load, open_registry(repo) as reg:
                time.sleep(2.0)  # warm
                target = 2
                for _ in range(swaps):
                    steady_start = time.perf_counter()
                    time.sleep(steady_s)
                    swap_start = time.perf_counter()
                    reg.deploy("m", target, replace=True, reason="bench")
                    while (seen := load.version_since(str(target), swap_start)) is None:
                        time.sleep(0.01)
                    time.sleep(1.0)  # the old version drains and unloads in here
                    swap_end = time.perf_counter()
                    steady = load.window(steady_start, swap_start)
                    during = load.window(swap_start, swap_end)
                    rounds.append(
                        {
                            "steady_p99_ms": float(np.percentile(steady, 99)) * 1000,
                            "swap_p99_ms": float(np.percentile(during, 99)) * 1000,
                            "swap_max_ms": max(during) * 1000,
                            "switch_s": seen - swap_start,
                            "requests_during_swap": len(during),
                        }
                    )
                    log(f"swap to {target}: {rounds[-1]}")
                    target = 1 if target == 2 else 2
            errors = load.errors
        finally:
            server.terminate()
            server.wait(60)
    ratios = [r["swap_p99_ms"] / r["steady_p99_ms"] for r in rounds]
    return {
        "rounds": rounds,
        "errors": errors,
        "median_steady_p99_ms": statistics.median(r["steady_p99_ms"] for r in rounds),
        "median_swap_p99_ms": statistics.median(r["swap_p99_ms"] for r in rounds),
        "median_ratio": statistics.median(ratios),
        "median_switch_s": statistics.median(r["switch_s"] for r in rounds),
    }


def _wait_ready(port: int) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
            conn.request("GET", "/v2/models/m/ready")
            if conn.getresponse().status == 200:
                return
        except OSError:
            pass
        time.sleep(0.2)
    raise RuntimeError("server did not become ready")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--registers", type=int, default=32, help="registers per round")
    parser.add_argument("--swaps", type=int, default=5)
    parser.add_argument("--steady-s", type=float, default=4.0)
    parser.add_argument("--tag")
    args = parser.parse_args()
    started = dt.datetime.now(dt.UTC)
    env = environment()
    with tempfile.TemporaryDirectory() as scratch:
        model = save(mlp(), Path(scratch) / "mlp.onnx")
        model_b = save(mlp(seed=1), Path(scratch) / "mlp-b.onnx")
        size_mb = model.stat().st_size / 1e6
        cluster = Cluster()
        cluster.start()
        try:
            limit = copy_limit(model, args.registers)
            registers = []
            for writers in (1, 16):  # interleave the backends
                for backend in ("sqlite", "postgresql"):
                    database = cluster.new_database() if backend == "postgresql" else None
                    result = register_round(model, database, writers, args.registers)
                    result["backend"] = backend
                    log(f"register {backend} x{writers}: {result}")
                    registers.append(result)
        finally:
            cluster.stop()
        swap = swap_round(model, model_b, args.swaps, args.steady_s)
    env["loadavg_end"] = os.getloadavg()
    limit_ms = statistics.median(limit) * 1000
    lines = [
        f"# Registry benchmark {started:%Y-%m-%d %H:%M} UTC",
        "",
        f"{env['cpu_count']} cores, load average {env['loadavg_start']} at start, "
        f"{env['loadavg_end']} at end; commit {env['commit']}. Model: reference MLP "
        f"({size_mb:.1f} MB). Register = ONNX Runtime load + warm-up inference + copy, sha256, "
        "fsync + the write transaction (version, audit row, outbox row).",
        "",
        f"Limit (copy + sha256 + fsync + rename of the file alone): median {limit_ms:.1f} ms.",
        "",
        "| backend | writers | registers | median ms | p95 ms | versions/s | median / limit |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in registers:
        lines.append(
            f"| {r['backend']} | {r['writers']} | {r['registers']} | {r['median_ms']:.1f} | "
            f"{r['p95_ms']:.1f} | {r['versions_per_s']:.1f} | {r['median_ms'] / limit_ms:.1f}x |"
        )
    lines += [
        "",
        f"Swap under load (4 closed-loop HTTP binary clients, 1-row requests, {args.swaps} "
        f"swaps alternating versions with `deploy --replace`): steady p99 "
        f"{swap['median_steady_p99_ms']:.2f} ms, p99 during a swap "
        f"{swap['median_swap_p99_ms']:.2f} ms, **median ratio {swap['median_ratio']:.2f}x** "
        f"(goal <= 1.5x); new version served {swap['median_switch_s']:.2f} s after the deploy "
        f"(median); failed requests: {swap['errors']}.",
    ]
    text = "\n".join(lines)
    print(text)
    result = {"environment": env, "limit_ms": limit, "registers": registers, "swap": swap}
    save_result("registry", started, args.tag, result, text)


if __name__ == "__main__":
    main()
