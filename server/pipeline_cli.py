"""``sluice pipeline``: argparse → ``server.pipeline``. No logic here.

    sluice pipeline run FILE [--param k=v]... [--force STEP]... [--from STEP] [--jobs N]
                             [--verify] [--check-repro] [--reuse-nondeterministic] [--json]
    sluice pipeline runs [-f FILE]
    sluice pipeline show RUN [-f FILE] [--json]
    sluice pipeline explain STEP [RUN] [-f FILE] [--json]

Exit status: 0 success, 1 a step failed (or ``--check-repro`` found a difference), 2 the
pipeline file or a flag is invalid.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

from server.errors import SluiceError

DEFAULT_FILE = Path("pipeline.toml")


def add_pipeline_parser(subparsers: Any) -> None:
    """Register ``pipeline`` and its subcommands on the ``sluice`` command's subparsers."""
    parser = subparsers.add_parser(
        "pipeline",
        help="run pipelines of steps, reusing results whose inputs did not change",
        description="Run a pipeline.toml; inspect its runs; explain a cache miss.",
    )
    commands = parser.add_subparsers(dest="pipeline_command", required=True)
    run = commands.add_parser("run", help="run (or resume) a pipeline")
    run.add_argument("file", type=Path, help="the pipeline TOML file")
    run.add_argument("--param", action="append", default=[], metavar="K=V", help="run parameter")
    run.add_argument("--force", action="append", default=[], metavar="STEP", help="rerun STEP")
    run.add_argument("--from", dest="from_step", metavar="STEP", help="rerun STEP and after")
    run.add_argument("--jobs", type=int, default=1, metavar="N", help="steps run at once")
    run.add_argument("--verify", action="store_true", help="rehash every file, ignore the memo")
    run.add_argument(
        "--check-repro", action="store_true", help="rerun cached steps; report differing outputs"
    )
    run.add_argument(
        "--reuse-nondeterministic",
        action="store_true",
        help="reuse steps marked deterministic = false too",
    )
    run.add_argument("--json", action="store_true", help="print the JSON summary on stdout")
    run.add_argument("--quiet", action="store_true", help="no per-step progress lines")
    run.set_defaults(run=run_command)
    runs = commands.add_parser("runs", help="list the recorded runs of a pipeline")
    _file_option(runs)
    runs.add_argument("--limit", type=int, default=20)
    runs.add_argument("--json", action="store_true")
    runs.set_defaults(run=runs_command)
    show = commands.add_parser("show", help="one run: its parameters and steps")
    show.add_argument("run_id", metavar="RUN")
    _file_option(show)
    show.add_argument("--json", action="store_true")
    show.set_defaults(run=show_command)
    explain = commands.add_parser("explain", help="which part of a step's key changed")
    explain.add_argument("step")
    explain.add_argument("run_id", nargs="?", metavar="RUN", help="default: now vs the last run")
    _file_option(explain)
    explain.add_argument("--json", action="store_true")
    explain.set_defaults(run=explain_command)


def _file_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "-f", "--file", type=Path, default=DEFAULT_FILE, help="pipeline file (pipeline.toml)"
    )


def _params(pairs: list[str]) -> dict[str, str]:
    from server.pipeline.spec import PipelineError

    params: dict[str, str] = {}
    for pair in pairs:
        name, sep, value = pair.partition("=")
        if not sep or not name.strip():
            raise PipelineError(f"--param {pair}: expected NAME=VALUE")
        params[name.strip()] = value
    return params


def _guarded(prog: str, args: argparse.Namespace, body: Any) -> int:
    try:
        code: int = body(args)
    except SluiceError as exc:
        print(f"sluice pipeline {prog}: {exc.message}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"sluice pipeline {prog}: interrupted; run again to resume", file=sys.stderr)
        return 130
    return code


def run_command(args: argparse.Namespace) -> int:
    return _guarded("run", args, _run)


def _run(args: argparse.Namespace) -> int:
    from server.pipeline.runner import RunOptions, run_pipeline

    options = RunOptions(
        params=_params(args.param),
        force=tuple(args.force),
        from_step=args.from_step,
        jobs=args.jobs,
        verify=args.verify,
        check_repro=args.check_repro,
        reuse_nondeterministic=args.reuse_nondeterministic,
    )
    summary = run_pipeline(args.file, options, None if args.quiet else sys.stderr)
    if args.json:
        print(json.dumps(summary, default=str))
    else:
        hits = sum(1 for s in summary["steps"].values() if s.get("cache") == "hit")
        print(
            f"run {summary['run_id']} {summary['status']} in {summary['seconds']:.2f}s "
            f"({hits}/{len(summary['steps'])} steps reused)"
        )
        for name, step in summary["steps"].items():
            if step.get("error"):
                print(f"  {name}: {step['error']}", file=sys.stderr)
    failed = summary["status"] != "succeeded" or summary.get("not_reproducible")
    return 1 if failed else 0


def runs_command(args: argparse.Namespace) -> int:
    def body(args: argparse.Namespace) -> int:
        records, path = _records(args.file)
        rows = records.runs(path, args.limit)
        if args.json:
            print(json.dumps(rows))
            return 0
        for r in rows:
            started = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(r["started"]))
            print(
                f"{r['run_id']}  {started}  {r['status']:<11} hits={r['hits']} "
                f"misses={r['misses']} failed={r['failed']}  {json.dumps(r['params'])}"
            )
        return 0

    return _guarded("runs", args, body)


def show_command(args: argparse.Namespace) -> int:
    def body(args: argparse.Namespace) -> int:
        from server.pipeline.spec import PipelineError

        records, _ = _records(args.file)
        found = records.run(args.run_id)
        if found is None:
            raise PipelineError(f"no run '{args.run_id}' (or the prefix is ambiguous)")
        head, steps = found
        if args.json:
            head["steps"] = [
                {k: getattr(s, k) for k in ("step", "status", "cache", "seconds", "key",
                                            "outputs", "error")}
                for s in steps
            ]  # fmt: skip
            print(json.dumps(head))
            return 0
        print(f"run {head['run_id']}  {head['status']}  params {json.dumps(head['params'])}")
        for s in steps:
            seconds = "" if s.seconds is None else f"{s.seconds:.2f}s"
            key = (s.key or "")[:12]
            print(f"  {s.step:<14} {s.status:<10} {s.cache or '':<5} {seconds:>8}  {key}")
            if s.error:
                print(f"      {s.error}")
        return 0

    return _guarded("show", args, body)


def explain_command(args: argparse.Namespace) -> int:
    def body(args: argparse.Namespace) -> int:
        from server.pipeline.explain import explain_step

        result = explain_step(args.file, args.step, args.run_id)
        if args.json:
            print(json.dumps(result))
            return 0
        against = result.get("against") or "nothing"
        print(f"step {result['step']}: key {result['key'][:12]} ({result['run']}) vs {against}")
        for change in result["changes"]:
            print(f"  - {change}")
        return 0

    return _guarded("explain", args, body)


def _records(file: Path) -> tuple[Any, Path]:
    from server.pipeline.records import Records, connect
    from server.pipeline.spec import PipelineError

    if not file.is_file():
        raise PipelineError(f"{file}: no such pipeline file (give -f FILE)")
    path = file.resolve()
    return Records(connect(path.parent)), path
