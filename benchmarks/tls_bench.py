"""What TLS costs: the same Sluice served in cleartext and over TLS, side by side.

Two servers (one worker each, the reference MLP) run at once and take turns each round, so
machine noise hits both alike; each point is the median of ``--repeats`` runs. gRPC (the
native edge) is driven by h2load with a pre-built ModelInfer frame, over ``http://`` and
``https://`` (ALPN h2, TLS 1.3); HTTP by wrk. Payloads: 1 row, and 4096 rows (a 4 MiB FP32
tensor). The answers of both servers are checked before the load, and h2load's byte count
proves every gRPC answer carried a response message. Beside throughput (which the load
generators, on the same cores, also bound), the server's own CPU per request (from /proc)
isolates what TLS costs the server.

    python -m benchmarks.tls_bench
    python -m benchmarks.tls_bench --duration 3 --repeats 1      # a quick look
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import os
import statistics
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import onnxruntime as ort
import trustme

from benchmarks.loadgen import h2load, payloads, wrk
from benchmarks.loadgen.harness import environment, log, save_result, write_bodies
from benchmarks.loadgen.stats import Point, Run, ratio, table
from benchmarks.peers import servers
from benchmarks.peers.servers import HOST, MODEL, WORK

BIG = 4096  # rows: 4096 x 256 FP32 = 4 MiB


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--concurrency", type=int, default=64, help="1-row requests in flight")
    p.add_argument("--big-concurrency", type=int, default=16, help="4 MiB requests in flight")
    p.add_argument("--duration", type=float, default=5.0, help="seconds per run")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--tag", default=None)
    return p.parse_args(argv)


def certificates() -> tuple[Path, Path]:
    root = WORK / "tls"
    root.mkdir(parents=True, exist_ok=True)
    ca = trustme.CA()
    cert = ca.issue_cert(HOST, "localhost")
    cert.private_key_pem.write_to_path(str(root / "key.pem"))
    cert.cert_chain_pems[0].write_to_path(str(root / "cert.pem"))
    return root / "cert.pem", root / "key.pem"


def cpu_seconds(pid: int) -> float:
    """User + system CPU the process has used, from /proc (clock ticks)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)
    started = dt.datetime.now(dt.UTC)
    env = environment()
    cert, key = certificates()
    config = WORK / "tls" / "config.toml"  # a 4096-row request is one batch
    config.write_text(f"[batching]\nmax_batch_size = {BIG}\n")
    common = ["--config", str(config)]
    clear = servers.sluice(1, name="cleartext", extra=common)
    tls = servers.sluice(
        1, name="tls", extra=[*common, "--tls-cert", str(cert), "--tls-key", str(key)]
    )
    # Its HTTP port speaks only TLS: ready once it accepts (it binds after the model loads).
    tls = dataclasses.replace(tls, ready_path=None)
    small_grpc, big_grpc = payloads.grpc_frame(MODEL, 1), payloads.grpc_frame(MODEL, BIG)
    small_json, big_binary = payloads.json_payload(1), payloads.binary_payload(BIG)
    bodies = write_bodies([small_grpc, big_grpc, small_json, big_binary])
    session = ort.InferenceSession(str(servers.model_file()))
    runs: dict[tuple[str, str, int], list[Run]] = {}
    cpu_us: dict[tuple[str, str, int], list[float]] = {}
    with servers.running(clear) as clear_proc, servers.running(tls, timeout_s=180) as tls_proc:
        pids = {clear.name: clear_proc.pid, tls.name: tls_proc.pid}
        sizes = {}
        for p in (small_grpc, big_grpc):
            expected = session.run(None, {payloads.INPUT: p.inputs})[0]
            assert clear.grpc_port is not None
            sizes[p.name] = payloads.check_grpc(HOST, clear.grpc_port, MODEL, p, expected)
        for p in (small_json, big_binary):
            expected = session.run(None, {payloads.INPUT: p.inputs})[0]
            payloads.check_http(HOST, clear.http_port, MODEL, p, expected)
        log("answers checked; load starts")
        cases: list[tuple[str, Any, int]] = [
            ("grpc", small_grpc, args.concurrency),
            ("grpc", big_grpc, args.big_concurrency),
            ("http", small_json, args.concurrency),
            ("http", big_binary, args.big_concurrency),
        ]
        for round_ in range(args.repeats):
            for protocol, payload, c in cases:
                for server, scheme in ((clear, "http"), (tls, "https")):
                    cpu_before = cpu_seconds(pids[server.name])
                    if protocol == "grpc":
                        assert server.grpc_port is not None
                        run = h2load.run(
                            HOST,
                            server.grpc_port,
                            bodies[payload.name],
                            sizes[payload.name],
                            c,
                            args.duration,
                            scheme=scheme,
                        )
                    else:
                        url = f"{scheme}://{HOST}:{server.http_port}/v2/models/{MODEL}/infer"
                        run = wrk.run(url, payload, bodies[payload.name], c, args.duration)
                    key_ = (f"{server.name} {protocol}", payload.name, c)
                    runs.setdefault(key_, []).append(run)
                    served = max(run.rps * args.duration, 1.0)
                    used = cpu_seconds(pids[server.name]) - cpu_before
                    cpu_us.setdefault(key_, []).append(used / served * 1e6)
                    log(f"round {round_}: {key_} c={c}: {run.rps:.0f} req/s, {run.errors} errors")
    points = [
        Point.of(name, payload, 1 if payload.endswith("-1") else BIG, c, r)
        for (name, payload, c), r in runs.items()
    ]
    lines = [
        "| protocol | payload | cleartext req/s | TLS req/s | TLS / cleartext "
        "| server CPU µs/request, cleartext | TLS | TLS / cleartext |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for protocol, payload, c in cases:
        a = next(
            p for p in points if p.server == f"cleartext {protocol}" and p.payload == payload.name
        )
        b = next(p for p in points if p.server == f"tls {protocol}" and p.payload == payload.name)
        share = ratio(b.rps, a.rps) or 0.0
        cpu_a = statistics.median(cpu_us[(a.server, a.payload, c)])
        cpu_b = statistics.median(cpu_us[(b.server, b.payload, c)])
        lines.append(
            f"| {protocol} (c={c}) | {payload.name} | {a.rps:,.0f} | {b.rps:,.0f} | {share:.2f} "
            f"| {cpu_a:,.0f} | {cpu_b:,.0f} | {cpu_b / cpu_a:.2f} |"
        )
    env["loadavg_end"] = os.getloadavg()
    text = "\n".join(
        [
            f"# TLS against cleartext, {started:%Y-%m-%d %H:%M} UTC",
            "",
            f"{env['cpu_count']} cores, load average {env['loadavg_start']} at start, "
            f"{env['loadavg_end']} at end; commit {env['commit']}; h2load and wrk on the "
            f"same machine; medians of {args.repeats} runs of {args.duration:g}s, interleaved.",
            "",
            *lines,
            "",
            table(points),
        ]
    )
    print(text)
    result = {
        "environment": env,
        "points": [p.to_json() for p in points],
        "server_cpu_us_per_request": {" ".join(map(str, k)): v for k, v in cpu_us.items()},
    }
    save_result("tls", started, args.tag, result, text)


if __name__ == "__main__":
    main()
