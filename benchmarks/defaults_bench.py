"""Do Sluice's defaults use the machine? ``sluice serve model.onnx`` with no flags against a grid
of explicit configurations, one interleaved run, as ratios to the best and to raw ORT.

Every server serves the reference MLP file (256 -> 1024 -> 1024 -> 512 -> 8, FP32) on its own
loopback ports (the only flags the "auto" server gets). All servers run at once (idle ones
sleep); each round gives every server one wrk run per payload, in a rotated order, and
measures raw in-process ONNX Runtime at batch 1 and 64 (the ``ort_limit`` configurations, the
best of which is the limit). Payloads: Triton's binary tensor extension, 1 row (c=64) and 64
rows (c=8). On a shared machine, run it under ``nice -n -10`` (recorded with the result) so the
other tenants' load moves every configuration less. A configuration's figure is the median of
its rounds; its ratio to the best is the median of its per-round ratios to the best
configuration's run in the same round.

    python -m benchmarks.defaults_bench                                  # ~5 min
    python -m benchmarks.defaults_bench --rounds 1 --duration 3 --grid 2x1x1x0 --no-save
    python -m benchmarks.defaults_bench --profile 8 --grid 1x2x1x0       # + py-spy of each

Grid entries are ``WORKERSxINSTANCESxINTRAxDELAY_US``; by default every configuration with
workers x instances x intra-op threads <= cores, at queue delays 0 and 200 us (and, with
``--oversubscribed``, two configurations that use more threads than cores).
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import datetime as dt
import itertools
import json
import os
import statistics
import sys
import traceback
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from benchmarks.loadgen import payloads, profile, wrk
from benchmarks.loadgen.harness import environment, log, save_result, write_bodies
from benchmarks.loadgen.payloads import Payload
from benchmarks.loadgen.stats import Run
from benchmarks.peers import ort_limit, servers
from benchmarks.peers.servers import HOST, Server

CORES = len(os.sched_getaffinity(0))
MODEL = "mlp"
BIN1, BIN64, JSON1 = "binary-1", "binary-64", "json-1"
CONCURRENCY = {BIN1: 64, BIN64: 8, JSON1: 64}


@dataclass(frozen=True, slots=True)
class Config:
    """One server configuration; ``None`` fields are left to Sluice ("auto")."""

    workers: int | None = None
    instances: int | None = None
    intra: int | None = None
    delay_us: int | None = None

    @property
    def name(self) -> str:
        if self == Config():
            return "auto (no flags)"
        return f"w{self.workers} i{self.instances} t{self.intra} d{self.delay_us}"

    @classmethod
    def parse(cls, text: str) -> Config:
        w, i, t, d = (int(x) for x in text.split("x"))
        return cls(w, i, t, d)


def default_grid(cores: int, oversubscribed: bool) -> list[Config]:
    grid = [
        Config(w, i, t, d)
        for d, w, i, t in itertools.product((0, 200), (1, 2), (1, 2), (1, 2))
        if w * i * t <= cores
    ]
    if oversubscribed:
        grid += [Config(2, 2, 1, 0), Config(1, 2, 2, 0)]
    return grid


def server_for(config: Config, python: str) -> tuple[Server, Path | None]:
    """The server command; an explicit configuration gets its model settings from a TOML."""
    http_port, grpc_port = servers.free_port(), servers.free_port()
    cmd = [python, "-m", "server.cli", "serve", str(model_file())]
    cmd += ["--host", HOST, "--http-port", str(http_port), "--grpc-port", str(grpc_port)]
    toml = None
    if config != Config():
        toml = servers.WORK / "defaults" / f"{config.name.replace(' ', '-')}.toml"
        toml.parent.mkdir(parents=True, exist_ok=True)
        toml.write_text(
            f"[server]\nworkers = {config.workers}\n"
            f"[runtime]\ninstances = {config.instances}\nintra_op_threads = {config.intra}\n"
            f"[batching]\nmax_queue_delay_us = {config.delay_us}\n"
        )
        cmd += ["--config", str(toml)]
    name = "sluice-" + config.name.replace(" ", "-").replace("(", "").replace(")", "")
    return Server(name=name, cmd=cmd, http_port=http_port, grpc_port=grpc_port), toml


def model_file() -> Path:
    """The reference MLP as ``mlp.onnx`` (served as model ``mlp``)."""
    return servers.model_file()


TICK_S = 1 / os.sysconf("SC_CLK_TCK")


def group_cpu_s(pgid: int) -> float:
    """User + system CPU seconds of every live process in a process group (a server and its
    workers): what a configuration costs, which the other tenants' load does not change."""
    total = 0
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError):
            fields = stat.read_text().rsplit(")", 1)[1].split()
            if int(fields[2]) == pgid:  # after the name: state, ppid, pgrp, ...
                total += int(fields[11]) + int(fields[12])  # utime, stime
    return total * TICK_S


def resolved(port: int) -> dict[str, Any]:
    """What the server says it runs: instances and thread counts from the config endpoint."""
    with urllib.request.urlopen(f"http://{HOST}:{port}/v2/models/{MODEL}/config") as resp:
        config = json.load(resp)
    params = {k: v["string_value"] for k, v in config.get("parameters", {}).items()}
    return {
        "instances": config["instance_group"][0]["count"],
        "queue_delay_us": config.get("dynamic_batching", {}).get("max_queue_delay_microseconds"),
        **params,
    }


def measure_limit(store: dict[str, list[float]], duration_s: float) -> None:
    """Raw ORT rows/s at batch 1 and 64 in every ``ort_limit`` configuration."""
    for rows in (1, 64):
        for label, threads, sessions in ort_limit.CONFIGS:
            median, _ = ort_limit.rows_per_s(model_file(), rows, threads, duration_s, 1, sessions)
            store.setdefault(f"{label} batch {rows}", []).append(median)
    log(
        "limit: "
        + ", ".join(f"{k} {v[-1]:,.0f}" for k, v in store.items() if k.endswith("batch 64"))
    )


def round_limits(store: dict[str, list[float]], rows: int) -> list[float]:
    """Each round's best raw ORT rows/s at ``rows`` rows."""
    series = [v for k, v in store.items() if k.endswith(f" batch {rows}")]
    return [max(values) for values in zip(*series, strict=True)]


def limit_of(store: dict[str, list[float]], rows: int) -> tuple[str, float]:
    medians = {
        k: statistics.median(v) for k, v in store.items() if k.endswith(f" batch {rows}") and v
    }
    label = max(medians, key=lambda k: medians[k])
    return label, medians[label]


def report(result: dict[str, Any]) -> str:
    env = result["environment"]
    lines = [
        f"# Defaults vs the configuration grid ({result['started']})",
        "",
        f"{env['cpu_count']} cores (affinity {result['cores']}), load average "
        f"{' / '.join(f'{x:.1f}' for x in env['loadavg_start'])} at start, "
        f"{' / '.join(f'{x:.1f}' for x in result['loadavg_end'])} at end; "
        f"{result['args']['rounds']} interleaved rounds of {result['args']['duration']:g} s; "
        f"commit {env['commit']}; niceness {result.get('niceness', 0)} (servers, wrk and the "
        "limit alike).",
        "",
        "Best: the configuration with the highest median rows/s. Paired ratios: the median over "
        "rounds of a configuration's run over the best configuration's run (or the best raw "
        "ORT configuration's) in the same round. Server CPU: user + system CPU of the "
        "server's processes per 1,000 rows answered (median over rounds), which the other "
        "tenants' load changes far less than throughput. Load average per round: "
        + ", ".join(f"{x:.1f}" for x in result.get("loadavg_rounds", []))
        + ".",
        "",
    ]
    for payload, rows in result["payloads"].items():
        label, limit = result["limit"][payload]["label"], result["limit"][payload]["rows_per_s"]
        lines += [
            f"## {payload} (c={CONCURRENCY[payload]}); raw ORT limit {limit:,.0f} rows/s ({label})",
            "",
            "| configuration | resolved (workers / instances / intra) | rows/s (median) "
            "| / best (paired) | / best (medians) | / raw ORT (paired) | p99 ms "
            "| server CPU ms / 1k rows | runs (rows/s) |",
            "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | --- |",
        ]
        for row in sorted(rows, key=lambda r: -r["rows_per_s"]):
            runs = " / ".join(f"{x:,.0f}" for x in row["runs"])
            res = row["resolved"]
            lines.append(
                f"| {row['config']} | {res.get('workers', '?')} / {res.get('instances', '?')} / "
                f"{res.get('intra_op_thread_count', '?')} | {row['rows_per_s']:,.0f} "
                f"| {row['over_best']:.2f} | {row['medians_over_best']:.2f} "
                f"| {row['over_limit']:.2f} | {row['p99_ms']:.1f} "
                f"| {row.get('server_cpu_ms_per_1k_rows', float('nan')):.1f} "
                f"| {runs} |"
            )
        auto = next((r for r in rows if r["config"] == Config().name), None)
        if auto is not None:
            verdict = "met" if auto["over_best"] >= 0.85 else "MISSED"
            lines += ["", f"Defaults: {auto['over_best']:.2f} of the best (goal 0.85: {verdict})."]
            twin = next((r for r in rows if r is not auto and twins(r, auto)), None)
            if twin is not None:
                lines.append(
                    f"Noise: `{twin['config']}` is the configuration auto resolves to; the two "
                    f"differ by {abs(twin['over_best'] - auto['over_best']):.2f} of the best "
                    f"(paired), {abs(twin['medians_over_best'] - auto['medians_over_best']):.2f} "
                    "(medians)."
                )
        lines.append("")
    for prof in result.get("profiles", []):
        lines += [f"## py-spy: {prof['server']} under {prof['payload']}", ""]
        lines += [profile.markdown(prof), ""]
    if result["failures"]:
        lines += ["## Failures", "", *[f"- {f}" for f in result["failures"]]]
    return "\n".join(lines)


def twins(a: dict[str, Any], b: dict[str, Any]) -> bool:
    """Two rows whose servers resolved to the same configuration."""
    keys = ("workers", "instances", "intra_op_thread_count", "queue_delay_us")
    return all(str(a["resolved"].get(k)) == str(b["resolved"].get(k)) for k in keys)


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rounds", type=int, default=8)
    # wrk reads whole seconds only ("2.5s" is an invalid duration)
    p.add_argument("--duration", type=int, default=2, help="seconds per wrk run")
    p.add_argument("--warmup", type=int, default=1)
    p.add_argument("--limit-duration", type=float, default=1.0, help="seconds per ORT config")
    p.add_argument("--grid", default="", help="comma list of WxIxTxD; default: the full grid")
    p.add_argument("--oversubscribed", action="store_true", help="add w2 i2 t1, w1 i2 t2")
    p.add_argument("--no-auto", action="store_true", help="leave out the no-flag server")
    p.add_argument("--python", default=sys.executable)
    p.add_argument("--profile", type=float, default=0.0, help="py-spy seconds per server")
    p.add_argument("--json", action="store_true", help="also 1-row JSON (c=64)")
    p.add_argument("--no-save", action="store_true")
    p.add_argument("--tag", default="")
    p.add_argument("--render", type=Path, help="rewrite a saved result's .md, then exit")
    return p.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    if args.render:
        saved: dict[str, Any] = json.loads(args.render.read_text())
        args.render.with_suffix(".md").write_text(report(saved) + "\n")
        return saved
    started = dt.datetime.now(dt.UTC)
    grid = (
        [Config.parse(x) for x in args.grid.split(",") if x]
        if args.grid
        else default_grid(CORES, args.oversubscribed)
    )
    configs = ([] if args.no_auto else [Config()]) + grid
    items = {BIN1: payloads.binary_payload(1), BIN64: payloads.binary_payload(64)}
    if args.json:
        items[JSON1] = payloads.json_payload(1)
    bodies = write_bodies(list(items.values()))
    reference = ort_limit.session(model_file(), 1)
    expected = {k: reference.run(None, {"input": v.inputs})[0] for k, v in items.items()}
    result: dict[str, Any] = {
        "started": f"{started:%Y-%m-%d %H:%M} UTC",
        "environment": environment(),
        "cores": CORES,
        "niceness": os.nice(0),
        "args": vars(args),
        "failures": [],
        "profiles": [],
    }
    runs: dict[tuple[str, str], list[Run]] = {}
    cpu_ms: dict[tuple[str, str], list[float]] = collections.defaultdict(list)
    limit_runs: dict[str, list[float]] = {}
    resolved_by: dict[str, dict[str, Any]] = {}
    with contextlib.ExitStack() as stack:
        alive: list[tuple[Config, Server, Any]] = []
        for config in configs:
            server, _ = server_for(config, args.python)
            try:
                proc = stack.enter_context(servers.running(server))
                for kind, payload in items.items():
                    payloads.check_http(HOST, server.http_port, MODEL, payload, expected[kind])
                resolved_by[config.name] = resolved(server.http_port)
                log(f"up: {config.name:18} {resolved_by[config.name]}")
                alive.append((config, server, proc))
            except Exception as exc:
                traceback.print_exc()
                result["failures"].append(f"{config.name}: {type(exc).__name__}: {exc}"[:500])
        for _config, server, _ in alive:
            for kind, payload in items.items():
                url = f"http://{HOST}:{server.http_port}/v2/models/{MODEL}/infer"
                wrk.run(url, payload, bodies[kind], CONCURRENCY[kind], args.warmup)
        for rnd in range(args.rounds):
            log(f"round {rnd + 1}/{args.rounds}, load average {os.getloadavg()[0]:.1f}")
            result.setdefault("loadavg_rounds", []).append(os.getloadavg()[0])
            measure_limit(limit_runs, args.limit_duration)
            shift = rnd * len(alive) // max(args.rounds, 1)
            for kind, payload in items.items():
                for config, server, proc in alive[shift:] + alive[:shift]:
                    before = group_cpu_s(proc.pid)
                    run = load(server, payload, bodies[kind], args.duration)
                    used = group_cpu_s(proc.pid) - before
                    rows_done = run.rps * payload.rows * args.duration
                    cpu_ms[(config.name, kind)].append(1e6 * used / max(rows_done, 1))
                    runs.setdefault((config.name, kind), []).append(run)
                    log(
                        f"{config.name:18} {kind:9} {run.rps * payload.rows:10,.0f} rows/s "
                        f"p99 {run.p99_ms:6.1f} ms errors {run.errors}"
                    )
        if args.profile:
            for config, server, proc in alive:
                for kind in items:
                    result["profiles"].append(
                        profile_one(config, server, proc, items[kind], bodies[kind], args)
                    )
    result["loadavg_end"] = os.getloadavg()
    result["limit"] = {}
    result["payloads"] = {}
    for kind, payload in items.items():
        label, limit = limit_of(limit_runs, payload.rows)
        result["limit"][kind] = {"label": label, "rows_per_s": limit}
        rows = [
            {
                "config": name,
                "resolved": resolved_by.get(name, {}),
                "rows_per_s": statistics.median(r.rps for r in rs) * payload.rows,
                "p99_ms": statistics.median(r.p99_ms for r in rs),
                "errors": sum(r.errors for r in rs),
                "runs": [r.rps * payload.rows for r in rs],
                "server_cpu_ms_per_1k_rows": statistics.median(cpu_ms[(name, kind)] or [0.0]),
            }
            for (name, k), rs in runs.items()
            if k == kind
        ]
        best = max(rows, key=lambda r: r["rows_per_s"])
        limits = round_limits(limit_runs, payload.rows)
        for row in rows:
            # Paired with the same round: the machine's load moves within minutes, so a
            # ratio of two runs minutes apart says more about the machine than the config.
            row["over_best"] = statistics.median(
                a / b for a, b in zip(row["runs"], best["runs"], strict=True)
            )
            row["over_limit"] = statistics.median(
                a / b for a, b in zip(row["runs"], limits, strict=True)
            )
            row["medians_over_best"] = row["rows_per_s"] / best["rows_per_s"]
        result["payloads"][kind] = rows
    result["limit_runs"] = limit_runs
    text = report(result)
    print("\n" + text)
    if not args.no_save:
        save_result("defaults", started, args.tag, result, text)
    return result


def load(server: Server, payload: Payload, body: Path, duration_s: float) -> Run:
    url = f"http://{HOST}:{server.http_port}/v2/models/{MODEL}/infer"
    return wrk.run(url, payload, body, CONCURRENCY[payload.name], duration_s)


def profile_one(
    config: Config,
    server: Server,
    proc: Any,
    payload: Payload,
    body: Path,
    args: argparse.Namespace,
) -> dict[str, Any]:
    """py-spy over the server's processes while wrk holds the payload's concurrency."""
    out = servers.WORK / f"profile-defaults-{server.name}-{payload.name}.txt"
    summary = profile.under_load(
        proc.pid, args.profile, out, lambda s: load(server, payload, body, s)
    )
    summary.update(server=config.name, payload=payload.name)
    log(f"profile {config.name} {payload.name}: {summary['roles']}")
    return summary


if __name__ == "__main__":
    main()
