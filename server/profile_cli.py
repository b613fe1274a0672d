"""``sluice profile``: argparse → ``ProfileConfig`` → ``server.profiler.run_profile``.

Exit status: 0 a recommendation meeting the objective, 1 a trial could not run (the model does
not load, the sample does not fit it), 2 bad arguments, 3 no configuration met the SLO (the
closest trial is still written and reported).
"""

from __future__ import annotations

import argparse
import getpass
import os
import sys
from pathlib import Path
from typing import Any

from server.errors import SluiceError


def add_profile_parser(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "profile",
        help="find the fastest server configuration for a model, and the deployment's size",
        description="Run a fresh Sluice server per trial with one configuration of ONNX "
        "Runtime threads, spinning and memory arena, instances, batching and workers; load it "
        "with sluice bench; pick the highest throughput within the p99 SLO (without one: the "
        "knee of throughput against p99); write the configuration as TOML and recommend CPU "
        "cores and memory.",
    )
    arg = p.add_argument
    arg("model", type=Path, metavar="MODEL", help="the model (.onnx)")
    arg("--sample", type=Path, metavar="DATA.parquet", help="rows to send (default: generated)")
    arg("--features", metavar="a,b,...", help="--sample: feature columns (default: numeric)")
    arg("--slo-p99-ms", type=float, metavar="X", help="p99 latency objective in ms")
    arg("--cores", type=int, metavar="C", help="cores the server may use (default: all)")
    arg("--memory-mb", type=float, metavar="M", help="trials above this peak RSS do not count")
    arg("--rows", type=int, default=1, metavar="N", help="rows per request (default 1)")
    arg("--concurrency", type=int, default=8, metavar="N", help="requests in flight (default 8)")
    arg("--max-trials", type=int, default=12, metavar="N", help="trials at most (default 12)")
    arg("--window", type=float, default=2.0, metavar="S", help="seconds per window (default 2)")
    arg("--output", type=Path, metavar="FILE.toml", help="write the tuned configuration here")
    arg("--report", type=Path, metavar="DIR", help="trials (JSON, CSV) and PNG plots here")
    arg("--register", metavar="NAME", help="store the result with this registry model...")
    arg("--version", type=int, metavar="V", help="...and version (with --register)")
    arg("--repository", help="the registry's repository (default $SLUICE_REPOSITORY or ./models)")
    arg("--registry", help="postgresql://... for a shared registry ($SLUICE_REGISTRY)")
    p.set_defaults(run=run_profile_command)


def config_from_args(args: argparse.Namespace) -> Any:
    from server.errors import ConfigError
    from server.profiler.profile import ProfileConfig
    from server.profiler.trial import Load

    if (args.register is None) != (args.version is None):
        raise ConfigError("--register NAME and --version V go together")
    features = tuple(f for f in args.features.split(",") if f) if args.features else None
    if args.window is not None and not args.window > 0:
        raise ConfigError(f"--window must be above 0, got {args.window}")
    load = Load(
        rows=args.rows,
        concurrency=args.concurrency,
        window_s=args.window,
        sample=args.sample,
        features=features,
    )
    return ProfileConfig(
        model=args.model,
        load=load,
        slo_p99_ms=args.slo_p99_ms,
        cores=args.cores,
        memory_mb=args.memory_mb,
        max_trials=args.max_trials,
    )


def _progress(trial: Any, best: Any, done: int, total: int) -> None:
    filled = round(20 * done / total)
    bar = "#" * filled + "-" * (20 - filled)
    print(
        f"[{bar}] {done}/{total} {trial.label}: {trial.rows_per_s:,.0f} rows/s "
        f"p99 {trial.p99_ms:.2f} ms {trial.peak_rss_mb:.0f} MB | best so far: trial "
        f"{best.index}, {best.rows_per_s:,.0f} rows/s p99 {best.p99_ms:.2f} ms",
        file=sys.stderr,
        flush=True,
    )


def run_profile_command(args: argparse.Namespace) -> int:
    from server.profiler.profile import run_profile
    from server.profiler.report import write_report

    config = config_from_args(args)
    try:
        profile = run_profile(config, progress=_progress)
    except SluiceError as exc:
        print(f"sluice profile: error: {exc.message}", file=sys.stderr)
        return 1
    rec = profile.recommendation
    print(f"search stopped: {profile.stopped}; {len(profile.trials)} trial(s) ran")
    for line in rec.lines():
        print(line)
    text = profile.toml()
    if args.output is not None:
        args.output.write_text(text)
        print(f"configuration written to {args.output}")
    if args.report is not None:
        for note in write_report(args.report, profile.trials, profile.summary(), rec.trial):
            print(f"sluice profile: {note}", file=sys.stderr)
        print(f"report written to {args.report}")
    if args.register is not None:
        from server.registry import open_registry

        repository = args.repository or os.environ.get("SLUICE_REPOSITORY") or "models"
        database = args.registry or os.environ.get("SLUICE_REGISTRY")
        registry = open_registry(repository, database, os.environ)
        try:
            actor = os.environ.get("SLUICE_ACTOR") or getpass.getuser()
            registry.set_profile(args.register, args.version, text, rec.to_dict(), actor=actor)
        except SluiceError as exc:
            print(f"sluice profile: error: {exc.message}", file=sys.stderr)
            return 1
        finally:
            registry.close()
        print(f"stored with {args.register} version {args.version}")
    if not rec.met:
        print(f"sluice profile: {rec.rule}", file=sys.stderr)
        return 3
    return 0
