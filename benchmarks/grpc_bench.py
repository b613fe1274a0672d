"""gRPC serving benchmark: Sluice gRPC vs MLServer 1.7 gRPC vs Sluice's own HTTP JSON path.

Same reference model, peers and method as ``serve_bench``: servers run one at a time; each
point is the median of ``--repeats`` runs. gRPC load comes from h2load (nghttp2-client)
replaying one pre-built frame (ModelInfer, 1 row in ``raw_input_contents``) on ``c`` HTTP/2
connections with one request in flight each; success is checked by the bytes answered (see
``loadgen/h2load.py``) after one real gRPC call per server verified the answer. Sluice's HTTP
JSON path runs with wrk at the same concurrencies. The ceiling is h2load against nghttpd
serving a canned ModelInfer response.

    python -m benchmarks.grpc_bench
    python -m benchmarks.grpc_bench --servers mlserver --duration 5 --repeats 1
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import os
import sys
import time
import traceback
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from benchmarks.loadgen import h2load, payloads, profile, wrk
from benchmarks.loadgen.harness import (
    environment,
    ints,
    log,
    point_from_json,
    save_result,
    write_bodies,
)
from benchmarks.loadgen.payloads import Payload
from benchmarks.loadgen.stats import Point, Run, best, ratio, table
from benchmarks.peers import ort_limit, servers
from benchmarks.peers.servers import HOST, Server

GRPC1, JSON1 = "grpc-raw-1", "json-1"
MODES = {True: "servers up together, taking turns each round", False: "servers one at a time"}


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument(
        "--servers",
        default="mlserver,sluice",
        help="comma list of mlserver, sluice (native gRPC), sluice-aio (grpc.aio transport)",
    )
    p.add_argument("--concurrency", type=ints, default=[1, 16, 64])
    p.add_argument("--duration", type=float, default=10.0, help="seconds per run")
    p.add_argument("--repeats", type=int, default=3, help="runs per point (median)")
    p.add_argument("--warmup", type=float, default=3.0)
    p.add_argument(
        "--interleave",
        action="store_true",
        help="run all servers at once and take turns, one run per point per round",
    )
    p.add_argument("--threads", type=int, default=1, help="h2load / wrk threads")
    p.add_argument("--mlserver-workers", type=ints, default=[1], help="parallel_workers")
    p.add_argument("--mlserver-batch-time", type=float, default=0.002, help="seconds")
    p.add_argument("--sluice-workers", type=ints, default=[2])
    p.add_argument("--sluice-python", default=sys.executable)
    p.add_argument("--sluice-arg", action="append", default=[])
    p.add_argument("--profile", type=float, default=0.0, help="py-spy seconds on Sluice gRPC, c=64")
    p.add_argument("--no-http", action="store_true", help="skip Sluice's HTTP JSON path")
    p.add_argument("--no-ceiling", action="store_true")
    p.add_argument("--no-save", action="store_true")
    p.add_argument("--tag", default="")
    return p.parse_args(argv)


def check_grpc(server: Server, payload: Payload, expected: Any, wait_s: float = 30) -> int:
    """One verified ModelInfer call, retried while the gRPC port comes up; the frame size."""
    assert server.grpc_port is not None
    deadline = time.monotonic() + wait_s
    while True:
        try:
            return payloads.check_grpc(HOST, server.grpc_port, server.model, payload, expected)
        except Exception:
            if time.monotonic() > deadline:
                raise
            time.sleep(1)


Store = dict[tuple[str, str, int], list[Run]]


def _log(server: str, payload: str, conns: int, run: Run) -> None:
    log(
        f"{server:14} {payload:10} c={conns:<3} {run.rps:9,.0f} req/s "
        f"p50 {run.p50_ms:7.2f} p99 {run.p99_ms:7.2f} ms errors {run.errors}"
    )


def grpc_sweep(
    server: Server, body: Path, size: int, args: argparse.Namespace, store: Store, repeats: int
) -> None:
    port = server.grpc_port or server.http_port
    h2load.run(HOST, port, body, size, 16, args.warmup, threads=args.threads)
    for conns in args.concurrency:
        for _ in range(repeats):
            run = h2load.run(HOST, port, body, size, conns, args.duration, threads=args.threads)
            store.setdefault((server.name, GRPC1, conns), []).append(run)
            _log(server.name, GRPC1, conns, run)


def http_sweep(
    server: Server,
    payload: Payload,
    body: Path,
    args: argparse.Namespace,
    store: Store,
    repeats: int,
) -> None:
    url = f"http://{HOST}:{server.http_port}/v2/models/{server.model}/infer"
    wrk.run(url, payload, body, 16, args.warmup, args.threads)
    for conns in args.concurrency:
        for _ in range(repeats):
            run = wrk.run(url, payload, body, conns, args.duration, args.threads)
            store.setdefault((server.name, JSON1, conns), []).append(run)
            _log(server.name, JSON1, conns, run)


def run_profile(
    server: Server, proc: Any, body: Path, size: int, args: argparse.Namespace
) -> dict[str, Any]:
    """py-spy on the server's processes while h2load holds c=64 with 1-row ModelInfer."""
    assert server.grpc_port is not None
    out = servers.WORK / f"profile-grpc-{server.name}.txt"
    port = server.grpc_port

    def load(seconds: float) -> object:
        return h2load.run(HOST, port, body, size, 64, seconds, threads=args.threads)

    summary = profile.under_load(proc.pid, args.profile, out, load)
    summary["server"] = server.name
    log(f"profile {server.name} (gRPC): {summary['roles']}")
    return summary


def plan(args: argparse.Namespace) -> list[Server]:
    out: list[Server] = []
    for name in args.servers.split(","):
        if name == "mlserver":
            out += [
                servers.mlserver(w, max_batch_time_s=args.mlserver_batch_time)
                for w in args.mlserver_workers
            ]
        elif name == "sluice":
            out += [
                servers.sluice(w, args.sluice_python, args.sluice_arg) for w in args.sluice_workers
            ]
        elif name == "sluice-aio":
            extra = [*args.sluice_arg, "--grpc-transport", "aio"]
            out += [
                servers.sluice(w, args.sluice_python, extra, name=f"sluice-aio-w{w}")
                for w in args.sluice_workers
            ]
        else:
            raise SystemExit(f"unknown server {name!r} (mlserver, sluice, sluice-aio)")
    return out


def ratios(points: Sequence[Point]) -> dict[str, Any]:
    def best_of(prefix: str, payload: str) -> Point | None:
        cands = [
            b
            for n in {p.server for p in points if p.server.startswith(prefix)}
            if (b := best(points, n, payload)) is not None
        ]
        return max(cands, key=lambda p: p.rps, default=None)

    # The headline is Sluice's default (native) transport; grpc.aio is shown for comparison.
    sluice_grpc, mls = best_of("sluice-w", GRPC1), best_of("mlserver", GRPC1)
    sluice_http = best_of("sluice-w", JSON1)
    return {
        "best": {
            name: p and {"server": p.server, "concurrency": p.concurrency, "rps": p.rps}
            for name, p in (
                ("sluice_grpc", sluice_grpc),
                ("sluice_http_json", sluice_http),
                ("mlserver_grpc", mls),
            )
        },
        "sluice_grpc_over_mlserver_grpc": ratio(sluice_grpc and sluice_grpc.rps, mls and mls.rps),
        "sluice_grpc_over_sluice_http": ratio(
            sluice_grpc and sluice_grpc.rps, sluice_http and sluice_http.rps
        ),
    }


def markdown(result: dict[str, Any]) -> str:
    env, args, r = result["environment"], result["args"], result["ratios"]

    def verdict(x: float | None, want: float) -> tuple[str, str]:
        if x is None:
            return "n/a", "n/a"
        return f"{x:.2f}", "met" if x >= want else "MISSED"

    a, a_ok = verdict(r["sluice_grpc_over_mlserver_grpc"], 5)
    b, b_ok = verdict(r["sluice_grpc_over_sluice_http"], 1)
    lines = [
        f"# Serving benchmark (gRPC) — {result['started']}",
        "",
        f"Machine: {env['cpu_count']} cores (`os.cpu_count()`), shared and noisy; load average "
        f"at start {', '.join(f'{x:.2f}' for x in env['loadavg_start'])}, at end "
        f"{', '.join(f'{x:.2f}' for x in result['loadavg_end'])}. ONNX Runtime "
        f"{env['onnxruntime']}, {env['h2load']}, {env['wrk']}; commit `{env['commit']}`.",
        "",
        f"Each point: median of {args['repeats']} x {args['duration']:g} s runs "
        f"({MODES[bool(args['interleave'])]}); gRPC by h2load "
        "(c HTTP/2 connections, 1 request in flight each, 1-row ModelInfer with "
        "raw_input_contents), HTTP JSON by wrk. Every server runs ORT with 1 intra-op thread, "
        "spinning off.",
        "",
    ]
    if result.get("ceiling"):
        c = result["ceiling"]
        lines.append(
            f"Load generator ceiling: h2load reaches {c['rps']:,.0f} req/s against nghttpd "
            f"serving a canned ModelInfer answer (c={c['concurrency']})."
        )
    lines += ["", "## Points", "", table([point_from_json(p) for p in result["points"]]), ""]
    lines += [
        "## Ratios",
        "",
        "| target | reached | wanted | |",
        "| --- | ---: | ---: | --- |",
        f"| best req/s Sluice gRPC / MLServer gRPC | {a} | >= 5 | {a_ok} |",
        f"| best req/s Sluice gRPC / Sluice HTTP JSON | {b} | >= 1 | {b_ok} |",
        "",
    ]
    if result.get("failures"):
        lines += ["## Failures", ""] + [f"- {f}" for f in result["failures"]] + [""]
    for summary in result.get("profiles", []):
        lines += [
            f"## Profile: {summary['server']} gRPC at c=64",
            "",
            profile.markdown(summary),
            "",
        ]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    started = dt.datetime.now(dt.UTC)
    model = servers.model_file()
    reference = ort_limit.session(model, 1)
    env = environment()
    env["h2load"] = h2load.version()
    result: dict[str, Any] = {
        "started": f"{started:%Y-%m-%d %H:%M} UTC",
        "environment": env,
        "args": dict(vars(args)),
        "failures": [],
        "profiles": [],
    }
    json1 = payloads.json_payload(1)
    expected = reference.run(None, {"input": json1.inputs})[0]
    bodies: dict[str, Path] = write_bodies([json1])
    if not args.no_ceiling:
        frame = payloads.grpc_frame(servers.MODEL, 1)
        body = write_bodies([frame])[frame.name]
        sink = servers.grpc_sink(b"\0" + (83).to_bytes(4, "big") + b"\0" * 83)
        with servers.running(sink):
            top = max(args.concurrency)
            run = h2load.run(
                HOST, sink.http_port, body, 88, top, args.duration, threads=args.threads
            )
        result["ceiling"] = {"concurrency": top, "rps": run.rps}
        log(f"h2load ceiling (nghttpd canned answer, c={top}): {run.rps:,.0f} req/s")
    store: Store = {}
    frame = payloads.grpc_frame(servers.MODEL, 1)
    body = write_bodies([frame])[frame.name]

    def measure(server: Server, size: int, repeats: int) -> None:
        grpc_sweep(server, body, size, args, store, repeats)
        if server.name.startswith("sluice-w") and not args.no_http:
            http_sweep(server, json1, bodies[JSON1], args, store, repeats)

    def check(server: Server) -> int:
        size = check_grpc(server, frame, expected)
        if server.name.startswith("sluice-w") and not args.no_http:
            payloads.check_http(HOST, server.http_port, server.model, json1, expected)
        return size

    def failed(server: Server, exc: Exception) -> None:
        traceback.print_exc()
        result["failures"].append(f"{server.name}: {type(exc).__name__}: {exc}"[:500])

    if args.interleave:
        with contextlib.ExitStack() as stack:
            alive: list[tuple[Server, int, Any]] = []
            for server in plan(args):
                log(f"starting {server.name}")
                try:
                    proc = stack.enter_context(servers.running(server))
                    alive.append((server, check(server), proc))
                except Exception as exc:
                    failed(server, exc)
            for rnd in range(args.repeats):
                log(f"round {rnd + 1}/{args.repeats}")
                for server, size, _ in alive:
                    measure(server, size, 1)
            for server, size, proc in alive:
                if args.profile and server.name.startswith("sluice-w"):
                    result["profiles"].append(run_profile(server, proc, body, size, args))
    else:
        for server in plan(args):
            log(f"starting {server.name}")
            try:
                with servers.running(server) as proc:
                    size = check(server)
                    measure(server, size, args.repeats)
                    if args.profile and server.name.startswith("sluice-w"):
                        result["profiles"].append(run_profile(server, proc, body, size, args))
            except Exception as exc:  # one broken server must not lose the others' numbers
                failed(server, exc)
    points = [Point.of(name, kind, 1, c, runs) for (name, kind, c), runs in store.items()]
    result["points"] = [p.to_json() for p in points]
    result["loadavg_end"] = os.getloadavg()
    result["ratios"] = ratios(points)
    text = markdown(result)
    print("\n" + text)
    if not args.no_save:
        save_result("grpc", started, args.tag, result, text)
    return result


if __name__ == "__main__":
    main()
