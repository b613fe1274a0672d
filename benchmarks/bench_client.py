"""``sluice bench`` against wrk, h2load and tritonclient, on one Sluice server, in one run.

Every load generator drives the same Sluice server (reference MLP, 1-row requests) at the same
concurrency with the same request bytes: the V2 JSON body and the gRPC ModelInferRequest frame
are encoded once by ``server.bench.payloads`` and written to the files wrk and h2load replay.
Contestants take turns (``--repeats`` rounds), so the machine's noise falls on all alike;
medians are quoted. Client CPU per request: wrk and h2load from ``wait4`` (their whole run),
tritonclient from its own ``process_time`` in the window, ``sluice bench`` from its report.

    python -m benchmarks.bench_client                         # ~4 min
    python -m benchmarks.bench_client --concurrency 16,64 --repeats 2 --duration 5
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import resource
import statistics
import subprocess
import sys
import tempfile
from collections.abc import Callable, Sequence
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort

from benchmarks.loadgen import h2load, wrk
from benchmarks.loadgen.harness import environment, log, save_result, write_bodies
from benchmarks.loadgen.payloads import Payload, check_grpc, check_http
from benchmarks.peers import servers
from server.bench import BenchConfig
from server.bench.http2 import message
from server.bench.model import ModelInfo
from server.bench.payloads import encode, random_inputs
from server.tensors import TensorSpec

CONTESTANTS = ("wrk", "sluice-http", "triton-http", "h2load", "sluice-grpc", "triton-grpc")
PEER_OF = {"sluice-http": "wrk", "sluice-grpc": "h2load"}
TRITON_OF = {"sluice-http": "triton-http", "sluice-grpc": "triton-grpc"}
INFO = ModelInfo("mlp", "", (TensorSpec("input", "FP32", (-1, 256)),),
                 (TensorSpec("output", "FP32", (-1, 8)),))  # fmt: skip


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--concurrency", default="64", help="comma-separated (default 64)")
    p.add_argument("--duration", type=float, default=8.0, help="measured seconds per run")
    p.add_argument("--warmup", type=float, default=1.0, help="sluice bench / tritonclient warm-up")
    p.add_argument("--repeats", type=int, default=3, help="interleaved rounds")
    p.add_argument("--sluice-workers", type=int, default=2)
    p.add_argument("--contestants", default=",".join(CONTESTANTS))
    p.add_argument("--tag", default=None)
    p.add_argument("--no-save", action="store_true")
    return p.parse_args(argv)


def payloads() -> tuple[Payload, Payload, np.ndarray]:
    """The JSON body and gRPC frame, as ``sluice bench`` encodes its first payload."""
    inputs = random_inputs(INFO, {"input": (1, 256)}, seed=0)
    http = encode(BenchConfig(url="h:1", model="mlp"), INFO, inputs)
    grpc = encode(BenchConfig(url="h:1", model="mlp", protocol="grpc"), INFO, inputs)
    x = inputs["input"]
    json_payload = Payload("bench-json-1", 1, http.body, dict(http.headers), x)
    frame = Payload("bench-grpc-1", 1, message(grpc.body), {}, x)
    return json_payload, frame, x


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def run_sluice(url: str, protocol: str, conc: int, args: argparse.Namespace) -> dict[str, Any]:
    with tempfile.NamedTemporaryFile(suffix=".json") as out:
        cmd = [sys.executable, "-m", "server.bench_cli", "--url", url, "--model", "mlp",
               "--protocol", protocol, "--concurrency", str(conc), "--duration",
               str(args.duration), "--warmup", str(args.warmup), "--processes", "1",
               "--no-progress", "--json", out.name]  # fmt: skip
        subprocess.run(cmd, check=True, capture_output=True, timeout=args.duration + 120)
        (r,) = json.loads(Path(out.name).read_text())["results"]
    lat = r["latency_ms"]
    return {"rps": r["throughput"], "p50_ms": lat["p50"], "p99_ms": lat["p99"],
            "errors": r["errors"], "cpu_us": r["client"]["cpu_us_per_request"],
            "client_cpu_max": max(r["client"]["cpu_per_process"]),
            "saturated": r["client"]["saturated"]}  # fmt: skip


def run_triton(url: str, protocol: str, conc: int, args: argparse.Namespace) -> dict[str, Any]:
    cmd = [sys.executable, "-m", "benchmarks.loadgen.triton_client", protocol, url, "mlp",
           str(conc), str(args.duration), str(args.warmup)]  # fmt: skip
    out = subprocess.run(
        cmd, check=True, capture_output=True, text=True, timeout=args.duration + 120
    )
    r = json.loads(out.stdout.strip().splitlines()[-1])
    done = r["requests"] + r["errors"]
    return {"rps": r["requests"] / r["duration_s"], "p50_ms": r["p50_ms"], "p99_ms": r["p99_ms"],
            "errors": r["errors"], "cpu_us": 1e6 * r["cpu_s"] / done if done else None,
            "client_cpu_max": r["cpu_s"] / r["duration_s"]}  # fmt: skip


def run_c_tool(run: Callable[[], Any], duration: float) -> dict[str, Any]:
    before = _children_cpu()
    r = run()
    cpu = _children_cpu() - before
    done = r.rps * duration + r.errors
    return {
        "rps": r.rps, "p50_ms": r.p50_ms, "p99_ms": r.p99_ms, "errors": r.errors,
        "cpu_us": 1e6 * cpu / done if done else None, "client_cpu_max": cpu / duration,
    }  # fmt: skip


def median_of(runs: list[dict[str, Any]]) -> dict[str, Any]:
    def med(key: str) -> float | None:
        values = [r[key] for r in runs if r.get(key) is not None]
        return statistics.median(values) if values else None

    keys = ("rps", "p50_ms", "p99_ms", "errors", "cpu_us", "client_cpu_max")
    return {k: med(k) for k in keys} | {"runs": runs}


def markdown(result: dict[str, Any]) -> str:
    env = result["environment"]
    lines = [
        f"# sluice bench vs wrk, h2load and tritonclient ({result['started']})",
        "",
        f"Sluice {result['sluice_workers']} workers, reference MLP, 1-row requests, "
        f"{result['repeats']} interleaved rounds x {result['duration_s']:g} s; "
        f"{env['cpu_count']} cores, load average {env['loadavg_start'][0]:.1f} at start, "
        f"{result['loadavg_end'][0]:.1f} at end.",
        "",
        "| conc | client | req/s (median) | p50 ms | p99 ms | errors | client CPU µs/req | "
        "client CPU share |",
        "| ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for conc, points in result["points"].items():
        for name, p in points.items():
            cpu = "-" if p["cpu_us"] is None else f"{p['cpu_us']:.1f}"
            lines.append(
                f"| {conc} | {name} | {p['rps']:,.0f} | {p['p50_ms']:.2f} | {p['p99_ms']:.2f} | "
                f"{p['errors']:.0f} | {cpu} | {p['client_cpu_max']:.0%} |"
            )
    lines += [
        "",
        "Ratios are the median of the per-round ratios (each round runs the contestants back to "
        "back, in reverse order every other round).",
        "",
        "| ratio | median of rounds | of medians | per round | wanted |",
        "| --- | ---: | ---: | --- | ---: |",
    ]
    for row in result["ratios"]:
        rounds = ", ".join(f"{x:.2f}" for x in row["rounds"])
        lines.append(
            f"| {row['name']} | {row['value']:.2f} | {row['of_medians']:.2f} | {rounds} | "
            f"{row['wanted']} |"
        )
    return "\n".join(lines)


def ratios(points: dict[int, dict[str, dict[str, Any]]]) -> list[dict[str, Any]]:
    rows = []
    for conc, by_name in points.items():
        for ours, peers in ((k, (PEER_OF[k], TRITON_OF[k])) for k in PEER_OF):
            for peer in peers:
                if ours in by_name and peer in by_name:
                    a, b = by_name[ours], by_name[peer]
                    pairs = zip(a["runs"], b["runs"], strict=False)
                    rounds = [x["rps"] / y["rps"] for x, y in pairs if y["rps"]]
                    rows.append({
                        "name": f"{ours} / {peer} (c={conc})",
                        "value": statistics.median(rounds) if rounds else float("nan"),
                        "of_medians": a["rps"] / b["rps"] if b["rps"] else float("nan"),
                        "rounds": rounds,
                        "wanted": ">= 0.90" if peer in ("wrk", "h2load") else "far above 1",
                    })  # fmt: skip
    return rows


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    started = dt.datetime.now(dt.UTC)
    contestants = [c for c in args.contestants.split(",") if c]
    concs = [int(c) for c in args.concurrency.split(",")]
    env = environment() | {"h2load": h2load.version()}
    json_payload, frame, x = payloads()
    files = write_bodies([json_payload, frame])
    expected = ort.InferenceSession(str(servers.model_file())).run(None, {"input": x})[0]
    server = servers.sluice(args.sluice_workers)
    runs: dict[int, dict[str, list[dict[str, Any]]]] = {
        c: {n: [] for n in contestants} for c in concs
    }
    with servers.running(server):
        host, port, gport = servers.HOST, server.http_port, server.grpc_port
        assert gport is not None
        check_http(host, port, "mlp", json_payload, expected)
        response_bytes = check_grpc(host, gport, "mlp", frame, expected)
        http_url, grpc_url = f"{host}:{port}", f"{host}:{gport}"
        for round_ in range(args.repeats):
            order = contestants if round_ % 2 == 0 else contestants[::-1]  # ABBA: drift cancels
            for conc in concs:
                for name in order:
                    if name == "wrk":
                        path = f"http://{http_url}/v2/models/mlp/infer"
                        body = files[json_payload.name]
                        job = partial(wrk.run, path, json_payload, body, conc, args.duration)
                        r = run_c_tool(job, args.duration)
                    elif name == "h2load":
                        body = files[frame.name]
                        job = partial(
                            h2load.run, host, gport, body, response_bytes, conc, args.duration
                        )
                        r = run_c_tool(job, args.duration)
                    elif name.startswith("sluice-"):
                        proto = name.removeprefix("sluice-")
                        r = run_sluice(http_url if proto == "http" else grpc_url, proto, conc, args)
                    else:
                        proto = name.removeprefix("triton-")
                        r = run_triton(http_url if proto == "http" else grpc_url, proto, conc, args)
                    runs[conc][name].append(r)
                    log(f"round {round_ + 1} c={conc} {name}: {r['rps']:,.0f} req/s, p99 "
                        f"{r['p99_ms']:.2f} ms, errors {r['errors']}, client CPU "
                        f"{r['cpu_us'] or 0:.1f} µs/req")  # fmt: skip
    points = {c: {n: median_of(rs) for n, rs in by.items() if rs} for c, by in runs.items()}
    result = {
        "started": f"{started:%Y-%m-%d %H:%M} UTC", "environment": env,
        "loadavg_end": list(__import__("os").getloadavg()), "sluice_workers": args.sluice_workers,
        "repeats": args.repeats, "duration_s": args.duration, "warmup_s": args.warmup,
        "payloads": {"json_bytes": len(json_payload.body), "grpc_frame_bytes": len(frame.body)},
        "points": points, "ratios": ratios(points),
    }  # fmt: skip
    text = markdown(result)
    print(text)
    if not args.no_save:
        save_result("bench-client", started, args.tag, result, text)
    return result


if __name__ == "__main__":
    main()
