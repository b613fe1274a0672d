"""``sluice bench``: argparse → ``BenchConfig`` → ``server.bench.Bench``; no logic here.

``python -m server.bench_cli ...`` runs the same command without the main CLI.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from server.errors import ConfigError, SluiceError

DEFAULT_CONCURRENCY = "1,4,16,64"


def add_bench_parser(subparsers: Any) -> None:
    """Add the ``bench`` subcommand to a ``add_subparsers()`` object."""
    parser = subparsers.add_parser(
        "bench",
        help="load-test an Open Inference Protocol server (HTTP or gRPC)",
        description="Send inference requests to a V2 (KServe / Triton) server at a series of "
        "concurrencies or request rates; print throughput, latency percentiles, errors, the "
        "server's queue and compute time, and the client's own CPU use per step.",
    )
    add_bench_arguments(parser)
    parser.set_defaults(run=run_bench)


def add_bench_arguments(parser: argparse.ArgumentParser) -> None:
    arg = parser.add_argument
    arg("--url", required=True, metavar="HOST:PORT", help="the server (HTTP or gRPC port)")
    arg("--model", required=True, metavar="NAME", help="model name")
    arg("--version", default="", metavar="V", help="model version (default: the server's)")
    arg("--protocol", choices=("http", "grpc"), default="http", help="default http")
    arg("--binary", action="store_true", help="HTTP: Triton's binary tensor extension")
    arg("--streaming", action="store_true", help="gRPC: ModelStreamInfer, one stream each")
    load = parser.add_mutually_exclusive_group()
    load.add_argument(
        "--concurrency",
        metavar="C[,C...]",
        help=f"closed loop: requests in flight per step (default {DEFAULT_CONCURRENCY})",
    )
    load.add_argument(
        "--request-rate", metavar="R[,R...]", help="open loop: requests per second per step"
    )
    arg("--poisson", action="store_true", help="open loop: Poisson arrivals (default: even)")
    arg("--duration", type=float, default=10.0, metavar="S", help="measured seconds per step")
    arg("--warmup", type=float, default=2.0, metavar="S", help="unmeasured seconds first")
    arg("--rows", type=int, default=1, metavar="N", help="rows per request (default 1)")
    arg("--input", type=Path, metavar="DATA.parquet", help="take rows from a Parquet file")
    arg("--features", metavar="a,b,...", help="--input: feature columns (default: numeric)")
    arg(
        "--shape",
        action="append",
        default=[],
        metavar="NAME=D1,D2",
        help="an input's shape (dynamic dimensions other than the batch); repeatable",
    )
    arg(
        "--processes",
        type=int,
        default=0,
        metavar="P",
        help="client processes (default: one per 8 cores, at least 1)",
    )
    arg(
        "--max-connections",
        type=int,
        default=1024,
        metavar="N",
        help="open loop: connections per process at most",
    )
    arg("--timeout", type=float, default=30.0, metavar="S", help="per request (default 30)")
    arg("--tls", action="store_true", help="connect with TLS")
    arg("--ca", type=Path, metavar="FILE", help="--tls: trust only this CA (PEM)")
    arg("--token", metavar="TOKEN", help="send 'authorization: Bearer TOKEN'")
    arg("--seed", type=int, default=0, help="random payloads and Poisson arrivals")
    arg("--json", type=Path, metavar="FILE", help="write the results as JSON")
    arg("--csv", type=Path, metavar="FILE", help="write the results as CSV")
    arg("--plot", type=Path, metavar="FILE.png", help="plot throughput against p99 (matplotlib)")
    arg("--no-progress", action="store_true", help="never draw the progress line")


def config_from_args(args: argparse.Namespace) -> Any:
    from server.bench.config import BenchConfig, Step

    if args.request_rate is not None:
        steps = tuple(
            Step(request_rate=_number(x, "--request-rate"), poisson=args.poisson)
            for x in _items(args.request_rate)
        )
    else:
        if args.poisson:
            raise ConfigError("--poisson needs --request-rate")
        steps = tuple(
            Step(concurrency=int(_number(x, "--concurrency")))
            for x in _items(args.concurrency or DEFAULT_CONCURRENCY)
        )
    return BenchConfig(
        url=args.url,
        model=args.model,
        version=args.version,
        protocol=args.protocol,
        binary=args.binary,
        streaming=args.streaming,
        steps=steps,
        duration_s=args.duration,
        warmup_s=args.warmup,
        rows=args.rows,
        input_path=args.input,
        features=tuple(_items(args.features)) if args.features else None,
        shapes=dict(_shape(text) for text in args.shape),
        processes=args.processes,
        max_connections=args.max_connections,
        timeout_s=args.timeout,
        tls=args.tls,
        ca=args.ca,
        token=args.token,
        seed=args.seed,
    )


def run_bench(args: argparse.Namespace) -> int:
    """Run every step; the table on stdout, progress and problems on stderr.

    Exit status: 0 done, 1 the server could not be used (or no request of a step succeeded),
    2 bad arguments or input, 3 the client could not keep the asked-for rate.
    """
    from server.bench import Bench
    from server.bench.report import print_table, write_csv, write_json, write_plot

    if args.plot is not None:
        _check_matplotlib()
    config = config_from_args(args)
    progress = None
    if not args.no_progress and sys.stderr.isatty():
        progress = _progress_line
    results = []
    try:
        with Bench(config, progress=progress) as bench:
            for warning in bench.warnings:
                print(f"sluice bench: warning: {warning}", file=sys.stderr)
            for step in config.steps:
                results.append(bench.run_step(step))
                if progress is not None:
                    print("\r\033[K", end="", file=sys.stderr)
    except ConfigError:
        raise
    except SluiceError as exc:
        print(f"sluice bench: error: {exc.message}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("\nsluice bench: interrupted", file=sys.stderr)
        if not results:
            return 130
    print_table(results, sys.stdout)
    if args.json is not None:
        write_json(args.json, config, results)
    if args.csv is not None:
        write_csv(args.csv, results)
    if args.plot is not None:
        write_plot(args.plot, results, f"{config.model} over {config.protocol}")
    if any(r.requests == 0 for r in results):
        print("sluice bench: error: no request of a step succeeded", file=sys.stderr)
        return 1
    if any(r.behind for r in results):
        print(
            "sluice bench: error: the client could not send at the asked-for rate; "
            "add --processes or lower --request-rate",
            file=sys.stderr,
        )
        return 3
    return 0


def _progress_line(text: str) -> None:
    print(f"\r\033[K{text}", end="", file=sys.stderr, flush=True)


def _check_matplotlib() -> None:
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        raise ConfigError(
            "--plot needs matplotlib, which is not installed: pip install matplotlib"
        ) from None


def _items(text: str) -> list[str]:
    return [x.strip() for x in text.split(",") if x.strip()]


def _number(text: str, flag: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise ConfigError(f"{flag}: '{text}' is not a number") from None


def _shape(text: str) -> tuple[str, tuple[int, ...]]:
    name, sep, dims = text.partition("=")
    try:
        shape = tuple(int(d) for d in _items(dims))
    except ValueError:
        shape = ()
    if not sep or not name or not shape:
        raise ConfigError(f"--shape must be NAME=D1,D2,..., got '{text}'")
    return name.strip(), shape


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="sluice bench")
    add_bench_arguments(parser)
    try:
        return run_bench(parser.parse_args(argv))
    except ConfigError as exc:
        print(f"sluice bench: {exc.message}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
