"""Request-path cost of capture and online drift, against the same server with both off.

    python -m benchmarks.capture_bench [--rounds 3] [--duration 5]

Four Sluice servers on one 20-feature MLP (20 -> 64 -> 64 -> 8), started together and measured
in turns (interleaved, so the shared machine's noise falls on all alike): ``off``, capture at
10 %, capture at 100 %, and capture at 100 % plus online drift on the 20 features (evaluated
every 5 s). Load: wrk replaying Triton binary requests of 1 row and of 64 rows, 16 connections
each (with 4, SO_REUSEPORT's hash sometimes put every connection on one of the two workers and
halved a run's throughput); wrk sends no request id, so sampling hashes a generated one.
Then, in this process: the monitor's ``observe`` cost per call on the event loop, and the time
one drift evaluation of 20 features x 100k rows takes on the worker thread. Prints the ratios
and writes ``results/capture-<date>.{json,md}``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import statistics
import sys
import tempfile
import time
import urllib.request
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
from prometheus_client import CollectorRegistry

from benchmarks.loadgen import wrk
from benchmarks.loadgen.harness import environment, log, save_result
from benchmarks.loadgen.payloads import Payload
from benchmarks.loadgen.stats import Point, Run, table
from benchmarks.models import mlp, save
from benchmarks.peers.servers import HOST, WORK, Server, free_port, running

FEATURES = 20
SIZES = (FEATURES, 64, 64, 8)
MODEL = "m"
CAPTURE = "[capture]\nenabled = true\npath = '{cap}'\nmax_file_seconds = 10\n"
CONFIGS = {
    "off": "",
    "capture-0.1": CAPTURE + "sample_rate = 0.1\n",
    "capture-1.0": CAPTURE + "sample_rate = 1.0\n",
    "capture-1.0+drift": CAPTURE + "sample_rate = 1.0\n"
    "[drift]\nenabled = true\nbaseline = '{baseline}'\nwindow_seconds = 30\n"
    "evaluate_every_s = 5\nmin_rows = 100\n",
}
LOADS = (("binary-1", 1, 16), ("binary-64", 64, 16))


def binary_payload(rows: int) -> Payload:
    x = np.random.default_rng(rows).standard_normal((rows, FEATURES)).astype(np.float32)
    raw = x.astype("<f4").tobytes()
    header = {
        "inputs": [
            {
                "name": "input",
                "shape": [rows, FEATURES],
                "datatype": "FP32",
                "parameters": {"binary_data_size": len(raw)},
            }
        ],
        "outputs": [{"name": "output", "parameters": {"binary_data": True}}],
    }
    head = json.dumps(header).encode()
    headers = {
        "Content-Type": "application/octet-stream",
        "Inference-Header-Content-Length": str(len(head)),
    }
    return Payload(f"binary-{rows}", rows, head + raw, headers, x)


def prepare(work: Path) -> tuple[dict[str, Server], Path]:
    """A repository per configuration (same model file), the baseline, the servers."""
    from server.monitoring.baseline import BaselineOptions, build_baseline, save_baseline

    model = save(mlp(SIZES), work / "capture-mlp.onnx")
    reference = np.random.default_rng(0).standard_normal((100_000, FEATURES))
    baseline = work / "capture-baseline.npz"
    columns = {f"f{j}": reference[:, j] for j in range(FEATURES)}
    save_baseline(build_baseline(pa.table(columns), BaselineOptions()), baseline)
    servers = {}
    for name, config in CONFIGS.items():
        repo = work / f"capture-repo-{name}"
        target = repo / MODEL / "1" / "model.onnx"
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(model.read_bytes())
        cap = work / f"capture-data-{name}"
        (repo / MODEL / "config.toml").write_text(config.format(cap=cap, baseline=baseline))
        http_port = free_port()
        cmd = [sys.executable, "-m", "server.cli", "serve", str(repo), "--host", HOST]
        cmd += ["--http-port", str(http_port), "--grpc-port", str(free_port())]
        servers[name] = Server(
            name, cmd, http_port, model=MODEL, ready_path=f"/v2/models/{MODEL}/ready"
        )
    return servers, baseline


def cpu_s(pid: int) -> tuple[float, float]:
    """User + system CPU seconds of a server's event-loop threads (each worker process's main
    thread) and of its other threads (ONNX Runtime's, the monitor's), over the parent and its
    worker processes (``--workers`` auto starts one per core: the parent only waits)."""
    loop = others = 0.0
    for process in (pid, *_children(pid)):
        for task in Path(f"/proc/{process}/task").iterdir():
            try:
                fields = (task / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue  # the thread ended
            seconds = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
            if int(task.name) == process:
                loop += seconds
            else:
                others += seconds
    return loop, others


def _children(pid: int) -> list[int]:
    found = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            found += [int(c) for c in (task / "children").read_text().split()]
        except OSError:
            continue
    return found


def rss_mib(pid: int) -> float:
    """Resident MiB of the server: the parent and its worker processes together."""
    total = 0.0
    for process in (pid, *_children(pid)):
        for line in Path(f"/proc/{process}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                total += int(line.split()[1]) / 1024
    return total


def metric_lines(port: int, prefix: str) -> list[str]:
    with urllib.request.urlopen(f"http://{HOST}:{port}/metrics") as answer:
        text = answer.read().decode()
    return [line for line in text.splitlines() if line.startswith(prefix)]


def measure_servers(args: argparse.Namespace, work: Path) -> dict[str, Any]:
    servers, _ = prepare(work)
    bodies = {}
    payloads = {name: binary_payload(rows) for name, rows, _ in LOADS}
    for name, payload in payloads.items():
        bodies[name] = work / f"capture-{name}.bin"
        bodies[name].write_bytes(payload.body)
    runs: dict[tuple[str, str], list[Run]] = {}
    cpu: dict[tuple[str, str], list[float]] = {}
    loop_cpu: dict[tuple[str, str], list[float]] = {}
    rss: dict[str, list[float]] = {name: [] for name in servers}
    with _all_running(list(servers.values())) as procs:
        pids = dict(zip(servers, (p.pid for p in procs), strict=True))
        for name in servers:
            rss[name].append(rss_mib(pids[name]))
        for round_ in range(args.rounds):
            for load, _, connections in LOADS:
                order = list(servers)
                order = order[round_ % len(order) :] + order[: round_ % len(order)]
                for name in order:
                    server = servers[name]
                    url = f"http://{HOST}:{server.http_port}/v2/models/{MODEL}/infer"
                    wrk.run(url, payloads[load], bodies[load], connections, 1.0)  # warm-up
                    loop_before, others_before = cpu_s(pids[name])
                    run = wrk.run(url, payloads[load], bodies[load], connections, args.duration)
                    loop_after, others_after = cpu_s(pids[name])
                    runs.setdefault((name, load), []).append(run)
                    # CPU per request resists the shared machine's noise better than req/s:
                    # a saturated server's throughput is the inverse of it.
                    served = run.rps * args.duration
                    used = loop_after - loop_before + others_after - others_before
                    cpu.setdefault((name, load), []).append(used / served * 1e6)
                    loop_cpu.setdefault((name, load), []).append(
                        (loop_after - loop_before) / served * 1e6
                    )
                    rss[name].append(rss_mib(pids[name]))
                    log(
                        f"round {round_ + 1} {name} {load}: {run.rps:,.0f} req/s "
                        f"p99 {run.p99_ms:.2f} ms"
                    )
        time.sleep(6)  # let the drift server evaluate once more
        counters = {
            name: metric_lines(s.http_port, "sluice_capture_")
            + metric_lines(s.http_port, "sluice_drift_window")
            for name, s in servers.items()
        }
    points = [
        Point.of(name, load, rows, connections, runs[(name, load)])
        for load, rows, connections in LOADS
        for name in servers
    ]
    cpu_us = {f"{name} {load}": statistics.median(v) for (name, load), v in cpu.items()}
    loop_us = {f"{name} {load}": statistics.median(v) for (name, load), v in loop_cpu.items()}
    return {
        "points": points,
        "rss_mib": rss,
        "counters": counters,
        "cpu_us": cpu_us,
        "loop_cpu_us": loop_us,
    }


class _all_running:
    """Start every server, then yield their processes (all stopped at the end)."""

    def __init__(self, servers: Sequence[Server]) -> None:
        self.contexts = [running(s) for s in servers]

    def __enter__(self) -> list[Any]:
        return [c.__enter__() for c in self.contexts]

    def __exit__(self, *exc: object) -> None:
        for c in reversed(self.contexts):
            c.__exit__(None, None, None)


def soak(minutes: float, work: Path) -> dict[str, Any]:
    """RSS of the capture + drift server under 64-row load for ``minutes``, every 30 s."""
    servers, _ = prepare(work)
    server = servers["capture-1.0+drift"]
    payload = binary_payload(64)
    body = work / "capture-soak.bin"
    body.write_bytes(payload.body)
    url = f"http://{HOST}:{server.http_port}/v2/models/{MODEL}/infer"
    samples: list[tuple[float, float, float]] = []
    with running(server) as proc:
        started = time.monotonic()
        while time.monotonic() - started < minutes * 60:
            run = wrk.run(url, payload, body, 4, 30.0)
            elapsed = time.monotonic() - started
            samples.append((elapsed, rss_mib(proc.pid), run.rps))
            log(f"soak {elapsed:.0f} s: RSS {samples[-1][1]:.0f} MiB, {run.rps:,.0f} req/s")
        counters = metric_lines(server.http_port, "sluice_capture_")
    return {"minutes": minutes, "samples": samples, "counters": counters}


def monitor_cost(work: Path, baseline: Path, calls: int = 20_000) -> dict[str, dict[str, float]]:
    """CPU µs per request that monitoring adds, in this process: ``loop`` is what ``observe``
    costs the event loop's thread (thread CPU time), ``total`` adds the worker thread's
    conversion, Parquet writing and drift windows (process CPU time, everything flushed).
    Requests arrive in bursts of 500 with pauses, as a server's would. CPU time, unlike
    throughput on a shared machine, does not move with the neighbours' load."""
    from server.engine.observer import Observation, ObservedModel
    from server.engine.requests import InferRequest
    from server.metrics import Metrics
    from server.monitoring.alerts import LoggingAlertSink
    from server.monitoring.monitor import Monitor
    from server.settings import CaptureConfig, DriftConfig, ModelConfig
    from server.tensors import Tensor, TensorSpec

    spec = {"input": TensorSpec("input", "FP32", (-1, FEATURES))}
    out = {"output": TensorSpec("output", "FP32", (-1, 8))}
    result: dict[str, dict[str, float]] = {}
    for rows in (1, 64):
        request = InferRequest(MODEL, [Tensor("input", "FP32", binary_payload(rows).inputs)])
        outputs = [Tensor("output", "FP32", np.zeros((rows, 8), np.float32))]
        for label in CONFIGS:
            config = ModelConfig()
            if label != "off":
                rate = 0.1 if label == "capture-0.1" else 1.0
                path = str(work / f"cost-{label}-{rows}")
                config = ModelConfig(
                    capture=CaptureConfig(enabled=True, sample_rate=rate, path=path)
                )
            if label.endswith("drift"):
                drift = DriftConfig(
                    enabled=True, baseline=str(baseline), evaluate_every_s=3600, window_seconds=3600
                )
                config = ModelConfig(capture=config.capture, drift=drift)
            monitor = Monitor(Metrics(CollectorRegistry()).monitoring, LoggingAlertSink())
            monitor.attach(ObservedModel(MODEL, "1", config, spec, out, True))
            loop_cpu = 0.0
            process_started = time.process_time()
            for _ in range(calls // 500):
                started = time.thread_time()
                for _ in range(500):
                    observation = Observation(
                        MODEL, "1", request, outputs, None, 1000, time.time_ns()
                    )
                    monitor.observe(observation)
                loop_cpu += time.thread_time() - started
                time.sleep(0.01)
            monitor.close()
            total = time.process_time() - process_started
            result[f"{label} binary-{rows}"] = {
                "loop_us": loop_cpu / calls * 1e6,
                "total_us": total / calls * 1e6,
            }
            log(f"monitor cost {label} rows={rows}: {result[f'{label} binary-{rows}']}")
    return result


def evaluation_cost(rows: int = 100_000, repeats: int = 5) -> dict[str, float]:
    """Seconds to add ``rows`` x 20 in 64-row requests and to evaluate that window once."""
    from server.monitoring.baseline import BaselineOptions, build_baseline
    from server.monitoring.features import FeatureSource
    from server.monitoring.online import OnlineDrift
    from server.monitoring.profile import NumericProfile
    from server.settings import DriftConfig

    rng = np.random.default_rng(1)
    names = [f"f{j}" for j in range(FEATURES)]
    reference = rng.standard_normal((100_000, FEATURES))
    baseline = build_baseline(
        pa.table({n: reference[:, j] for j, n in enumerate(names)}), BaselineOptions()
    )
    profiles = {n: p for n, p in baseline.profiles.items() if isinstance(p, NumericProfile)}
    sources = [FeatureSource(n, "input", j, FEATURES) for j, n in enumerate(names)]
    config = DriftConfig(
        enabled=True, baseline="b", window_seconds=60, evaluate_every_s=60, reservoir_rows=rows
    )
    current = rng.standard_normal((rows, FEATURES)).astype(np.float32)
    adds, evaluations = [], []
    for _ in range(repeats):
        online = OnlineDrift(sources, profiles, config, {})
        started = time.perf_counter()
        for chunk in np.array_split(current, rows // 64):
            online.add({"input": [chunk]}, now=0.0)
        adds.append(time.perf_counter() - started)
        started = time.perf_counter()
        online.evaluate(now=0.0)
        evaluations.append(time.perf_counter() - started)
    return {
        "rows": rows,
        "features": FEATURES,
        "add_s_median": statistics.median(adds),
        "evaluate_s_median": statistics.median(evaluations),
        "evaluate_s_runs": evaluations,
    }


def _cell(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}"


def ratios(points: Sequence[Point], cpu_us: dict[str, float]) -> list[dict[str, Any]]:
    found = []
    for load, _, _ in LOADS:
        off = next(p for p in points if p.server == "off" and p.payload == load)
        for p in points:
            if p.payload == load and p.server != "off":
                found.append(
                    {
                        "load": load,
                        "server": p.server,
                        "throughput_vs_off": p.rps / off.rps,
                        "p99_vs_off": p.p99_ms / off.p99_ms,
                        "cpu_us_per_request": cpu_us[f"{p.server} {load}"],
                        # None where the off server's CPU reading came back empty.
                        "cpu_vs_off": cpu_us[f"{p.server} {load}"] / cpu_us[f"off {load}"]
                        if cpu_us[f"off {load}"]
                        else None,
                    }
                )
    return found


def render(result: dict[str, Any]) -> str:
    env = result["environment"]
    lines = [
        f"# Capture and online drift overhead ({result['started']})",
        "",
        f"{env['cpu_count']} cores, load average {env['loadavg_start']} at start, "
        f"{result['loadavg_end']} at end; interleaved, {result['rounds']} rounds of "
        f"{result['duration_s']} s per point (medians).",
        "",
        table(result["points_obj"]),
        "",
        "Server CPU per request (µs, median of the rounds; in brackets the event-loop "
        "thread's share): "
        + ", ".join(
            f"{k} {v:.0f} ({result['loop_cpu_us'][k]:.0f})" for k, v in result["cpu_us"].items()
        ),
        "",
        "| load | server | throughput vs off | p99 vs off | CPU/request vs off "
        "| throughput implied by CPU |",
        "| --- | --- | ---: | ---: | ---: | ---: |",
    ]
    for r in result["ratios"]:
        lines.append(
            f"| {r['load']} | {r['server']} | {r['throughput_vs_off']:.3f} "
            f"| {r['p99_vs_off']:.3f} | {_cell(r['cpu_vs_off'])} | "
            f"{_cell(1 / r['cpu_vs_off'] if r['cpu_vs_off'] else None)} |"
        )
    lines += ["", "Server RSS (MiB) at start and after each run:", ""]
    for name, values in result["rss_mib"].items():
        lines.append(f"- {name}: " + ", ".join(f"{v:.0f}" for v in values))
    cost = result["monitor_cpu_us"]
    cpu = result["cpu_us"]
    evaluation = result["evaluation"]
    lines += [
        "",
        "CPU that monitoring adds per request, measured in process (µs; loop = on the event "
        "loop's thread, total = with the worker), against the off server's CPU per request:",
        "",
        "| config | loop µs | total µs | off server µs/request | implied throughput |",
        "| --- | ---: | ---: | ---: | ---: |",
        *[
            f"| {k} | {v['loop_us']:.1f} | {v['total_us']:.1f} | {cpu['off ' + k.split()[1]]:.0f} "
            f"| {cpu['off ' + k.split()[1]] / (cpu['off ' + k.split()[1]] + v['total_us']):.3f} |"
            for k, v in cost.items()
        ],
        "",
        f"Online drift, {evaluation['features']} features x {evaluation['rows']:,} rows: "
        f"adding them in 64-row requests {evaluation['add_s_median']:.2f} s, one evaluation "
        f"{evaluation['evaluate_s_median'] * 1000:.0f} ms (medians of "
        f"{len(evaluation['evaluate_s_runs'])}).",
        "",
        "Capture and drift counters at the end:",
        "",
        "```",
        *[f"{name}: {line}" for name, lines_ in result["counters"].items() for line in lines_],
        "```",
    ]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--duration", type=float, default=5.0)
    parser.add_argument("--tag")
    parser.add_argument("--soak-minutes", type=float, help="only the RSS soak, this long")
    args = parser.parse_args(argv)
    started = dt.datetime.now(dt.UTC)
    env = environment()
    WORK.mkdir(parents=True, exist_ok=True)
    if args.soak_minutes:
        soaked = soak(args.soak_minutes, WORK)
        rss = [s[1] for s in soaked["samples"]]
        text = "\n".join(
            [
                f"# Capture + drift RSS soak ({started:%Y-%m-%d %H:%M} UTC)",
                "",
                f"{env['cpu_count']} cores, load average {env['loadavg_start']} at start, "
                f"{os.getloadavg()} at end. capture-1.0+drift, binary-64, 4 connections, "
                f"{args.soak_minutes:g} minutes.",
                "",
                "| elapsed s | RSS MiB | req/s |",
                "| ---: | ---: | ---: |",
                *[f"| {e:.0f} | {r:.0f} | {q:,.0f} |" for e, r, q in soaked["samples"]],
                "",
                f"RSS first/last/max: {rss[0]:.0f} / {rss[-1]:.0f} / {max(rss):.0f} MiB",
                "",
                "```",
                *soaked["counters"],
                "```",
            ]
        )
        print(text)
        save_result("capture-soak", started, args.tag, {"environment": env, **soaked}, text)
        return soaked
    measured = measure_servers(args, WORK)
    with tempfile.TemporaryDirectory() as tmp:
        _, baseline = prepare(WORK)
        cost = monitor_cost(Path(tmp), baseline)
    evaluation = evaluation_cost()

    result: dict[str, Any] = {
        "started": f"{started:%Y-%m-%d %H:%M} UTC",
        "environment": env,
        "loadavg_end": os.getloadavg(),
        "rounds": args.rounds,
        "duration_s": args.duration,
        "points": [p.to_json() for p in measured["points"]],
        "points_obj": measured["points"],
        "cpu_us": measured["cpu_us"],
        "loop_cpu_us": measured["loop_cpu_us"],
        "ratios": ratios(measured["points"], measured["cpu_us"]),
        "rss_mib": measured["rss_mib"],
        "counters": measured["counters"],
        "monitor_cpu_us": cost,
        "evaluation": evaluation,
    }
    text = render(result)
    print(text)
    del result["points_obj"]
    save_result("capture", started, args.tag, result, text)
    return result


if __name__ == "__main__":
    main()
