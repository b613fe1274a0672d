"""``sluice score``: argparse → ``ScoreOptions`` → ``server.scoring.score``; no logic here.

``python -m server.score_cli ...`` runs the same command without the main CLI.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from server.errors import SluiceError
from server.scoring.options import DEFAULT_BATCH_SIZE, ScoreOptions


def add_score_parser(subparsers: Any) -> None:
    """Add the ``score`` subcommand to a ``add_subparsers()`` object."""
    parser = subparsers.add_parser(
        "score",
        help="score Parquet/Arrow files with a model into Parquet (resumable)",
        description="Score Parquet/Arrow files with an ONNX model into one Parquet file per "
        "input. Rerunning the same command resumes; prints a JSON summary.",
    )
    add_score_arguments(parser)
    parser.set_defaults(run=run_score)


def add_score_arguments(parser: argparse.ArgumentParser) -> None:
    arg = parser.add_argument
    arg(
        "--model",
        required=True,
        metavar="PATH|NAME[:VERSION|@ALIAS]",
        help="an .onnx file or a name",
    )
    arg("--repository", type=Path, metavar="REPO", help="model repository for NAME[:VERSION]")
    arg("--registry", metavar="URL", help="postgresql://... when the registry is shared")
    arg("--input", required=True, nargs="+", type=Path, metavar="PATH", help="files or folders")
    arg("--output", required=True, type=Path, metavar="DIR", help="output directory")
    arg("--features", type=_names, metavar="a,b,...", help="feature columns (default: numeric)")
    arg("--keep", type=_names, default=(), metavar="id,...", help="columns copied to the output")
    arg("--batch-size", type=int, default=DEFAULT_BATCH_SIZE, metavar="N", help="rows per run")
    arg("--on-error", choices=("fail", "skip"), default="fail", help="rows that cannot be scored")
    arg("--max-errors", type=int, metavar="N", help="abort after more skipped rows than N")
    arg("--overwrite", action="store_true", help="discard what DIR holds and start afresh")
    arg("--engine", choices=("local", "ray"), default="local", help="ray: Ray Data actor pool")
    arg("--instances", type=int, metavar="N", help="concurrent ONNX Runtime runs (default: cores)")
    arg("--intra-op-threads", type=int, metavar="N", help="ONNX Runtime threads per run")
    arg("--read-ahead", type=int, default=4, metavar="N", help="batches read ahead (default 4)")
    arg("--no-progress", action="store_true", help="never draw the progress bar")


def options_from_args(args: argparse.Namespace) -> ScoreOptions:
    return ScoreOptions(
        model=args.model,
        repository=args.repository,
        registry=args.registry,
        inputs=tuple(args.input),
        output=args.output,
        features=args.features,
        keep=args.keep,
        batch_size=args.batch_size,
        on_error=args.on_error,
        max_errors=args.max_errors,
        overwrite=args.overwrite,
        engine=args.engine,
        instances=args.instances,
        intra_op_threads=args.intra_op_threads,
        read_ahead=args.read_ahead,
        progress=not args.no_progress,
    )


def run_score(args: argparse.Namespace) -> int:
    """Run the job; print the JSON summary on stdout, or the error on stderr (exit 1)."""
    from server.scoring import score  # keeps `sluice --help` free of pyarrow and ORT imports

    try:
        summary = score(options_from_args(args))
    except SluiceError as exc:
        print(f"sluice score: error: {exc.message}", file=sys.stderr)
        return 1
    except OSError as exc:  # the output directory: permissions, a full disk
        print(f"sluice score: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("sluice score: interrupted; run the same command to resume", file=sys.stderr)
        return 130
    print(json.dumps(summary))
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="sluice score")
    add_score_arguments(parser)
    return run_score(parser.parse_args(argv))


def _names(text: str) -> tuple[str, ...]:
    return tuple(name.strip() for name in text.split(",") if name.strip())


if __name__ == "__main__":
    sys.exit(main())
