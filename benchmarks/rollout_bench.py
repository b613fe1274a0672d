"""Rollout benchmark: throughput and p99 of the served version with 20% of its requests
mirrored to a candidate against no mirroring (goal: >= 85% of the throughput, p99 within
1.3x), interleaved; and the time from a bad version's first failed request to its automatic
rollback.

    python -m benchmarks.rollout_bench [--rounds 3] [--duration 10] [--connections 8]
"""

from __future__ import annotations

import argparse
import datetime as dt
import http.client
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from benchmarks.loadgen import wrk
from benchmarks.loadgen.closed_loop import ClosedLoop
from benchmarks.loadgen.harness import environment, log, save_result, write_bodies
from benchmarks.loadgen.payloads import binary_payload
from benchmarks.models import lookup_mlp, mlp, save
from benchmarks.registry_bench import _wait_ready
from server.registry import open_registry
from server.registry.rollouts import RolloutPolicy, Rollouts
from server.rollout.validation import Request, validate
from tests.http.test_shutdown import free_port

ROOT = Path(__file__).resolve().parents[1]
WORKERS = 2  # sluice serve's default on this 2-core machine, passed explicitly


def _weight_is(port: int, version: str, weight: str) -> bool:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    conn.request("GET", "/metrics")
    text = conn.getresponse().read().decode()
    return f'sluice_rollout_weight{{model="m",version="{version}"}} {weight}' in text


def _wait(check: Any, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise RuntimeError("condition not reached")
        time.sleep(0.05)


def mirror_rounds(
    repo: Path, port: int, rounds: int, duration: float, connections: int
) -> list[dict[str, Any]]:
    payload = binary_payload(1)
    body = write_bodies([payload])[payload.name]
    url = f"http://127.0.0.1:{port}/v2/models/m/infer"
    wrk.run(url, payload, body, connections, 3)  # warm
    results = []
    # A loose policy: the controller must not end the rollout while it is being measured.
    policy = RolloutPolicy(canary=0, mirror=20, interval_s=3600, max_disagreement=1.0)
    with open_registry(repo) as reg:
        for i in range(rounds):
            for mode in ("none", "mirror20") if i % 2 == 0 else ("mirror20", "none"):
                if mode == "mirror20":
                    Rollouts(reg).start("m", 2, policy, reason="bench")
                    _wait(lambda: _weight_is(port, "1", "100.0"))
                before = _mirrored(port)
                run = wrk.run(url, payload, body, connections, duration)
                after = _mirrored(port)
                if mode == "mirror20":
                    Rollouts(reg).rollback("m", reason="bench")
                    _wait(lambda: not _weight_is(port, "1", "100.0"))
                row = {"round": i, "mode": mode, "rps": run.rps, "p99_ms": run.p99_ms}
                row["errors"] = run.errors
                row.update({k: after[k] - before[k] for k in after})
                row["requests"] = run.rps * duration
                log(f"{row}")
                results.append(row)
    return results


def _mirrored(port: int, workers: int = WORKERS) -> dict[str, float]:
    """The mirror's counters (compared, dropped, failed) and version 1's batches and rows
    now, summed over the server's worker processes (each has its own metrics: new
    connections are opened until every worker has answered)."""
    seen: dict[str, dict[str, float]] = {}
    for _ in range(200):
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
        conn.request("GET", "/metrics")
        text = conn.getresponse().read().decode()
        conn.close()
        counts = dict.fromkeys(("compared", "dropped", "failed", "batches", "rows"), 0.0)
        pid = ""
        for line in text.splitlines():
            if line.startswith("sluice_worker_pid "):
                pid = line.split()[1]
            elif line.startswith('sluice_batch_size_count{model="m",version="1"}'):
                counts["batches"] = float(line.rsplit(" ", 1)[1])
            elif line.startswith('sluice_batch_size_sum{model="m",version="1"}'):
                counts["rows"] = float(line.rsplit(" ", 1)[1])
            elif line.startswith("sluice_mirror_requests_total{"):
                result = line.split('result="')[1].split('"')[0]
                counts[result] += float(line.rsplit(" ", 1)[1])
        seen[pid] = counts
        if len(seen) >= workers:
            return {key: sum(c[key] for c in seen.values()) for key in counts}
    raise RuntimeError(f"only {len(seen)} of {workers} workers answered /metrics")


class Poisoned(ClosedLoop):
    """Closed-loop clients; every 20th request's first feature is out of the bad version's
    lookup range. Records when the first request failed."""

    def __init__(self, port: int, clients: int = 4) -> None:
        good, bad = binary_payload(1), binary_payload(1)
        x = bad.inputs.copy()
        x[0, 0] = 50.0
        head_len = int(bad.headers["Inference-Header-Content-Length"])
        self.bodies = [good.body, bad.body[:head_len] + x.astype("<f4").tobytes()]
        super().__init__(port, clients, good.headers, "/v2/models/m/infer")
        self.first_failure: float | None = None
        self.failures = 0

    def body(self, i: int) -> bytes:
        return self.bodies[i % 20 == 0]

    def record(
        self, response: http.client.HTTPResponse, body: bytes, started: float, ended: float
    ) -> None:
        if response.status != 200:
            self.failures += 1
            if self.first_failure is None:
                self.first_failure = time.time()


def rollback_rounds(repo: Path, port: int, rounds: int) -> list[dict[str, Any]]:
    results = []
    policy = RolloutPolicy(canary=50, interval_s=60, min_requests=20, max_error_rate=0.01)
    with open_registry(repo) as reg:
        for i in range(rounds):
            with Poisoned(port) as load:
                time.sleep(1.0)
                Rollouts(reg).start("m", 3, policy, reason="bench")
                while reg.history("m")[-1].action != "rollout_rollback":
                    time.sleep(0.01)
                rolled_back = _audit_time(reg.history("m")[-1].time)
                time.sleep(0.5)
            assert load.first_failure is not None
            row = {
                "round": i,
                "seconds_to_rollback": rolled_back - load.first_failure,
                "failed_requests": load.failures,
                "reason": reg.history("m")[-1].reason,
            }
            log(f"{row}")
            results.append(row)
    return results


def _audit_time(text: str) -> float:
    return dt.datetime.strptime(text, "%Y-%m-%dT%H:%M:%S.%f%z").timestamp()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--duration", type=float, default=10.0)
    parser.add_argument("--connections", type=int, default=8)
    parser.add_argument("--tag")
    args = parser.parse_args()
    started = dt.datetime.now(dt.UTC)
    env = environment()
    with tempfile.TemporaryDirectory() as scratch:
        repo = Path(scratch) / "repo"
        with open_registry(repo) as reg:
            reg.register("m", save(mlp(), Path(scratch) / "v1.onnx"))
            reg.register("m", save(mlp(seed=1), Path(scratch) / "v2.onnx"))
            reg.register("m", save(lookup_mlp(), Path(scratch) / "v3.onnx"))
            validate(reg, Request("m", 1))
            reg.alias("m", "production", 1)
            for version in (1, 2, 3):
                reg.deploy("m", version)
        port = free_port()
        command = [sys.executable, "-m", "server", "serve", str(repo), "--http-port", str(port)]
        command += ["--grpc-port", str(free_port()), "--log-level", "warning"]
        command += ["--workers", str(WORKERS)]
        server = subprocess.Popen(command, env={**os.environ, "PYTHONPATH": str(ROOT)})
        try:
            _wait_ready(port)
            mirror = mirror_rounds(repo, port, args.rounds, args.duration, args.connections)
            rollback = rollback_rounds(repo, port, args.rounds)
        finally:
            server.terminate()
            server.wait(60)
    env["loadavg_end"] = os.getloadavg()
    by_round: dict[int, dict[str, dict[str, Any]]] = {}
    for row in mirror:
        by_round.setdefault(row["round"], {})[row["mode"]] = row
    rps_ratio = statistics.median(
        r["mirror20"]["rps"] / r["none"]["rps"] for r in by_round.values()
    )
    p99_ratio = statistics.median(
        r["mirror20"]["p99_ms"] / r["none"]["p99_ms"] for r in by_round.values()
    )
    compared = statistics.median(
        r["mirror20"]["compared"] / r["mirror20"]["requests"] for r in by_round.values()
    )
    seconds = statistics.median(r["seconds_to_rollback"] for r in rollback)
    times = ", ".join(f"{r['seconds_to_rollback']:.2f}" for r in rollback)
    failed = ", ".join(str(r["failed_requests"]) for r in rollback)
    lines = [
        f"# Rollout benchmark {started:%Y-%m-%d %H:%M} UTC",
        "",
        f"{env['cpu_count']} cores, load average {env['loadavg_start']} at start, "
        f"{env['loadavg_end']} at end; commit {env['commit']}. Model: reference MLP; "
        f"`sluice serve --workers {WORKERS}`; wrk, {args.connections} connections, 1-row "
        f"binary requests, {args.duration:g} s per run, modes interleaved over {args.rounds} "
        "rounds. Mirror counts are summed over the workers; 'compared' is the share of all "
        "requests whose copy ran on the candidate and was compared (20% offered; the rest of "
        "the offered copies were dropped because the server was saturated).",
        "",
        "| round | mode | req/s | p99 ms | errors | compared | dropped | rows/batch (v1) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for row in mirror:
        share = row["compared"] / max(row["requests"], 1)
        lines.append(
            f"| {row['round']} | {row['mode']} | {row['rps']:.0f} | {row['p99_ms']:.2f} | "
            f"{row['errors']} | {row['compared']:.0f} ({share:.1%}) | {row['dropped']:.0f} | "
            f"{row['rows'] / max(row['batches'], 1):.2f} |"
        )
    lines += [
        "",
        f"20% mirrored against none: **throughput {rps_ratio:.2f}x** (goal >= 0.85), "
        f"**p99 {p99_ratio:.2f}x** (goal <= 1.3), medians of the per-round ratios; "
        f"{compared:.1%} of the requests were compared on the candidate (median).",
        "",
        "Bad version (fails the 1 in 20 requests whose first feature is out of its range; "
        "canary 50%, limit +1% error rate, 20 requests minimum), 4 closed-loop clients: "
        f"**median {seconds:.2f} s from the first failed request to the rollback** "
        f"(rounds: {times} s; failed requests per round: {failed}).",
    ]
    text = "\n".join(lines)
    print(text)
    result = {"environment": env, "mirror": mirror, "rollback": rollback}
    save_result("rollout", started, args.tag, result, text)


if __name__ == "__main__":
    main()
