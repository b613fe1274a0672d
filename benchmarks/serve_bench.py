"""HTTP serving benchmark: Sluice vs MLServer 1.7 vs a plain Starlette + ORT server, one run.

Every server runs the reference MLP (256 -> 1024 -> 1024 -> 512 -> 8, FP32) with 1 intra-op
thread and spinning off, alone on the machine, one after the other: start, wait for ready,
check one answer against in-process ONNX Runtime, warm up, sweep concurrency with wrk, stop.
Each point is the median of ``--repeats`` runs of ``--duration`` seconds. The same run
measures wrk's own ceiling (a canned-response endpoint) and the limit (raw in-process ORT at
batch 64), then prints the ratios the serving-core issue asks for and writes
``benchmarks/results/serve-<UTC time>.json`` and ``.md``.

    python -m benchmarks.serve_bench                       # everything, ~15 min
    python -m benchmarks.serve_bench --servers plain,mlserver --duration 5 --repeats 1
    python -m benchmarks.serve_bench --servers sluice --sluice-workers 1,2 --profile 10
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import json
import os
import statistics
import sys
import traceback
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from benchmarks.loadgen import payloads, profile, wrk
from benchmarks.loadgen.harness import (
    environment,
    ints,
    log,
    point_from_json,
    save_result,
    write_bodies,
)
from benchmarks.loadgen.payloads import Payload
from benchmarks.loadgen.stats import Point, Run
from benchmarks.peers import ort_limit, servers
from benchmarks.peers.servers import HOST, Server
from benchmarks.serve_report import BIN64, JSON1, JSON64, markdown, ratios


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--servers", default="mlserver,plain,sluice", help="comma list")
    p.add_argument("--concurrency", type=ints, default=[1, 16, 64], help="1-row JSON sweep")
    p.add_argument("--batch-concurrency", type=ints, default=[4, 16], help="64-row sweep")
    p.add_argument("--no-batch", action="store_true", help="skip the 64-row payloads")
    p.add_argument("--duration", type=float, default=10.0, help="seconds per run")
    p.add_argument("--repeats", type=int, default=3, help="runs per point (median)")
    p.add_argument("--warmup", type=float, default=3.0, help="seconds of load before a sweep")
    p.add_argument(
        "--interleave",
        action="store_true",
        help="run all servers at once and take turns, one run per point per round",
    )
    p.add_argument("--threads", type=int, default=1, help="wrk threads")
    p.add_argument("--plain-workers", type=ints, default=[1, 2])
    p.add_argument("--mlserver-workers", type=ints, default=[1], help="parallel_workers")
    p.add_argument("--mlserver-batch-time", type=float, default=0.002, help="seconds")
    p.add_argument("--sluice-workers", type=ints, default=[2])
    p.add_argument("--sluice-python", default=sys.executable)
    p.add_argument("--sluice-arg", action="append", default=[], help="extra serve flag")
    p.add_argument("--profile", type=float, default=0.0, help="py-spy seconds on Sluice at c=64")
    p.add_argument("--no-ceiling", action="store_true")
    p.add_argument("--no-limit", action="store_true")
    p.add_argument("--no-save", action="store_true")
    p.add_argument("--tag", default="", help="appended to the result file names")
    p.add_argument(
        "--render", type=Path, help="recompute ratios and the .md of a saved result JSON, then exit"
    )
    return p.parse_args(argv)


Store = dict[tuple[str, str, int], list[Run]]


def sweep(
    server: Server,
    payload: Payload,
    body: Path,
    levels: Sequence[int],
    args: argparse.Namespace,
    store: Store,
    repeats: int,
) -> None:
    """Warm up, then ``repeats`` runs at each concurrency, appended to ``store``."""
    url = f"http://{HOST}:{server.http_port}/v2/models/{server.model}/infer"
    wrk.run(url, payload, body, 16, args.warmup, args.threads)
    for conns in levels:
        for _ in range(repeats):
            run = wrk.run(url, payload, body, conns, args.duration, args.threads)
            store.setdefault((server.name, payload.name, conns), []).append(run)
            log(
                f"{server.name:14} {payload.name:9} c={conns:<3} {run.rps:9,.0f} req/s "
                f"{run.rps * payload.rows:10,.0f} rows/s p50 {run.p50_ms:7.2f} "
                f"p99 {run.p99_ms:7.2f} ms errors {run.errors}"
            )


def ceiling(body: Path, payload: Payload, args: argparse.Namespace) -> dict[str, Any]:
    """wrk against a canned-response endpoint at the highest concurrency."""
    sink = servers.sink()
    conns = max(args.concurrency)
    with servers.running(sink):
        url = f"http://{HOST}:{sink.http_port}/v2/models/mlp/infer"
        wrk.run(url, payload, body, conns, 1, args.threads)
        run = wrk.run(url, payload, body, conns, args.duration, args.threads)
    log(f"wrk ceiling (canned endpoint, c={conns}): {run.rps:,.0f} req/s")
    return {"concurrency": conns, "rps": run.rps, "p99_ms": run.p99_ms}


LimitRuns = dict[str, list[float]]


def measure_limit(store: LimitRuns, repeats: int, duration_s: float) -> None:
    """Raw in-process ORT at batch 64 in each configuration; rows/s runs appended."""
    model = servers.model_file()
    for label, threads, sessions in ort_limit.CONFIGS:
        median, runs = ort_limit.rows_per_s(model, 64, threads, duration_s, repeats, sessions)
        store.setdefault(label, []).extend(runs)
        log(f"limit {label:26} batch 64: {median:,.0f} rows/s")


def limit_result(store: LimitRuns) -> dict[str, Any]:
    """Median per configuration; the limit is the best configuration."""
    result: dict[str, Any] = {
        label: {"rows_per_s": statistics.median(runs), "runs": runs}
        for label, runs in store.items()
    }
    result["rows_per_s"] = max(v["rows_per_s"] for v in result.values())
    return result


def plan(args: argparse.Namespace) -> list[tuple[Server, list[str]]]:
    """Each server config and the payloads it gets (binary extension: Sluice only)."""
    batch = [] if args.no_batch else [JSON64]
    wanted = args.servers.split(",")
    out: list[tuple[Server, list[str]]] = []
    for name in wanted:
        if name == "mlserver":
            out += [
                (servers.mlserver(w, max_batch_time_s=args.mlserver_batch_time), [JSON1])
                for w in args.mlserver_workers
            ]
        elif name == "plain":
            out += [(servers.plain(w), [JSON1, *batch]) for w in args.plain_workers]
        elif name == "sluice":
            extra = [] if args.no_batch else [JSON64, BIN64]
            out += [
                (servers.sluice(w, args.sluice_python, args.sluice_arg), [JSON1, *extra])
                for w in args.sluice_workers
            ]
        else:
            raise SystemExit(f"unknown server {name!r} (mlserver, plain, sluice)")
    return out


def run_profile(
    server: Server,
    proc: Any,
    items: dict[str, Payload],
    bodies: dict[str, Path],
    args: argparse.Namespace,
) -> dict[str, Any]:
    """py-spy on the server's processes while wrk holds c=64 with 1-row JSON."""
    out = servers.WORK / f"profile-{server.name}.txt"
    url = f"http://{HOST}:{server.http_port}/v2/models/{server.model}/infer"

    def load(seconds: float) -> object:
        return wrk.run(url, items[JSON1], bodies[JSON1], 64, seconds, args.threads)

    summary = profile.under_load(proc.pid, args.profile, out, load)
    summary["server"] = server.name
    log(f"profile {server.name}: {summary['roles']}")
    return summary


def measure_interleaved(
    planned: list[tuple[Server, list[str]]],
    items: dict[str, Payload],
    bodies: dict[str, Path],
    expected: dict[str, Any],
    args: argparse.Namespace,
    store: Store,
    result: dict[str, Any],
    limit_runs: LimitRuns,
) -> None:
    """All servers up at once (the idle ones sleep); each round gives every server one run
    per point, and the limit one run, so noise from a shared machine spreads over all of them
    alike."""
    with contextlib.ExitStack() as stack:
        alive: list[tuple[Server, list[str], Any]] = []
        for server, kinds in planned:
            log(f"starting {server.name}")
            try:
                proc = stack.enter_context(servers.running(server))
                for kind in kinds:
                    payloads.check_http(
                        HOST, server.http_port, server.model, items[kind], expected[kind]
                    )
                alive.append((server, kinds, proc))
            except Exception as exc:
                traceback.print_exc()
                result["failures"].append(f"{server.name}: {type(exc).__name__}: {exc}"[:500])
        for rnd in range(args.repeats):
            log(f"round {rnd + 1}/{args.repeats}")
            limit_due = not args.no_limit
            for server, kinds, _ in alive:
                for kind in kinds:
                    # The limit runs right before the first binary-64 sweep it is compared
                    # with: on a shared machine the noise changes within minutes.
                    if limit_due and kind == BIN64:
                        measure_limit(limit_runs, 1, min(args.duration, 5.0))
                        limit_due = False
                    levels = args.concurrency if kind == JSON1 else args.batch_concurrency
                    sweep(server, items[kind], bodies[kind], levels, args, store, 1)
            if limit_due:
                measure_limit(limit_runs, 1, min(args.duration, 5.0))
        for server, _, proc in alive:
            if args.profile and server.name.startswith("sluice"):
                result["profiles"].append(run_profile(server, proc, items, bodies, args))


def render(path: Path) -> dict[str, Any]:
    """Rewrite a saved result's ratios and Markdown with this version of the report code."""
    result: dict[str, Any] = json.loads(path.read_text())
    result["args"].setdefault("interleave", False)
    points = [point_from_json(p) for p in result["points"]]
    result["ratios"] = ratios(points, result.get("limit", {}))
    path.write_text(json.dumps(result, indent=2, default=str) + "\n")
    path.with_suffix(".md").write_text(markdown(result) + "\n")
    log(f"rewrote {path} and {path.with_suffix('.md').name}")
    return result


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    if args.render:
        return render(args.render)
    started = dt.datetime.now(dt.UTC)
    model = servers.model_file()
    items = {
        JSON1: payloads.json_payload(1),
        JSON64: payloads.json_payload(64),
        BIN64: payloads.binary_payload(64),
    }
    bodies = write_bodies(list(items.values()))
    reference = ort_limit.session(model, 1)
    expected = {k: reference.run(None, {"input": v.inputs})[0] for k, v in items.items()}
    result: dict[str, Any] = {
        "started": f"{started:%Y-%m-%d %H:%M} UTC",
        "environment": environment(),
        "args": {k: v for k, v in vars(args).items()},
        "points": [],
        "failures": [],
        "profiles": [],
    }
    points: list[Point] = []
    if not args.no_ceiling:
        result["ceiling"] = ceiling(bodies[JSON1], items[JSON1], args)
    limit_runs: LimitRuns = {}
    limit_s = min(args.duration, 5)
    if not args.no_limit and not args.interleave:
        measure_limit(limit_runs, args.repeats, limit_s)
    store: Store = {}
    planned = plan(args)
    if args.interleave:
        measure_interleaved(planned, items, bodies, expected, args, store, result, limit_runs)
    else:
        for server, kinds in planned:
            log(f"starting {server.name}")
            try:
                with servers.running(server) as proc:
                    for kind in kinds:
                        payloads.check_http(
                            HOST, server.http_port, server.model, items[kind], expected[kind]
                        )
                    for kind in kinds:
                        levels = args.concurrency if kind == JSON1 else args.batch_concurrency
                        sweep(server, items[kind], bodies[kind], levels, args, store, args.repeats)
                    if args.profile and server.name.startswith("sluice"):
                        result["profiles"].append(run_profile(server, proc, items, bodies, args))
            except Exception as exc:  # one broken server must not lose the others' numbers
                traceback.print_exc()
                result["failures"].append(f"{server.name}: {type(exc).__name__}: {exc}"[:500])
    points = [
        Point.of(name, kind, items[kind].rows, c, runs) for (name, kind, c), runs in store.items()
    ]
    result["points"] = [p.to_json() for p in points]
    result["loadavg_end"] = os.getloadavg()
    if limit_runs:
        result["limit"] = limit_result(limit_runs)
    result["ratios"] = ratios(points, result.get("limit", {}))
    text = markdown(result)
    print("\n" + text)
    if not args.no_save:
        save_result("serve", started, args.tag, result, text)
    return result


if __name__ == "__main__":
    main()
