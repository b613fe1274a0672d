"""``sluice drift``: argparse → a frozen options object → ``server.monitoring``. No logic here.

    sluice drift REFERENCE CURRENT [--features a,b] [--json FILE] [--html FILE]
    sluice drift BASELINE CAPTURE_DIR [--since T] [--until T]
    sluice drift report REPORT.json [--html FILE]   (a --json report, or GET .../drift's body)
    sluice drift baseline DATA --output FILE

REFERENCE is Parquet/Arrow data (a file or a directory) or a baseline saved by the second form.
``cli.py`` registers it with ``add_drift_parser(subparsers)``; the parser's ``run`` default is
``run_drift``, which returns the exit status: 0, or 1 with ``--fail-on-drift`` when the dataset
drifted, or 2 for unusable input.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import pyarrow as pa

from server.errors import ConfigError, InvalidInput, SluiceError
from server.monitoring.baseline import (
    Baseline,
    BaselineOptions,
    build_baseline,
    is_baseline_file,
    load_baseline,
    save_baseline,
)
from server.monitoring.captured import capture_features, is_capture, parse_time, read_capture
from server.monitoring.columns import feature_kind, read_table
from server.monitoring.drift import (
    CATEGORICAL_STATISTICS,
    NUMERIC_STATISTICS,
    CategoricalStatistic,
    DriftRule,
    NumericStatistic,
)
from server.monitoring.html import render_html
from server.monitoring.profile import NumericProfile
from server.monitoring.report import compare, report_from_json, report_json
from server.monitoring.table import format_table
from server.resources import usable_cores

BASELINE_COMMAND = "baseline"
REPORT_COMMAND = "report"


@dataclass(frozen=True, slots=True)
class DriftCommand:
    """Everything one ``sluice drift`` run needs; ``output`` set means "save a baseline of
    ``current``" instead of comparing."""

    reference: str
    current: str
    features: tuple[str, ...] | None
    json_path: Path | None
    html_path: Path | None
    output: Path | None
    fail_on_drift: bool
    rule: DriftRule
    baseline: BaselineOptions
    since: dt.datetime | None = None
    until: dt.datetime | None = None


def add_drift_parser(subparsers: Any) -> None:
    """Register ``drift`` on the ``sluice`` command's subparsers."""
    p = subparsers.add_parser(
        "drift",
        help="compare data with a reference and report drift per feature",
        description="sluice drift REFERENCE CURRENT compares CURRENT (Parquet/Arrow, or a "
        "capture directory) with REFERENCE (data, or a baseline file); sluice drift baseline "
        "DATA --output FILE saves a baseline of DATA; sluice drift report REPORT.json renders "
        "a saved report (--json, or GET /v2/models/{m}/drift).",
    )
    p.add_argument("reference", help="reference data or baseline file, or the word 'baseline'")
    p.add_argument("current", help="current data (or, after 'baseline', the reference data)")
    p.add_argument("--features", help="comma-separated feature names (default: all)")
    p.add_argument("--json", type=Path, dest="json_path", help="write the JSON report here")
    p.add_argument("--html", type=Path, dest="html_path", help="write the HTML report here")
    p.add_argument("--output", type=Path, help="baseline file to write (baseline form only)")
    p.add_argument("--fail-on-drift", action="store_true", help="exit 1 when the dataset drifts")
    p.add_argument("--numeric-statistic", choices=NUMERIC_STATISTICS, default="wasserstein_normed")
    p.add_argument("--numeric-threshold", type=float, default=0.1)
    p.add_argument("--categorical-statistic", choices=CATEGORICAL_STATISTICS, default="js")
    p.add_argument("--categorical-threshold", type=float, default=0.1)
    p.add_argument(
        "--small-sample-rows",
        type=int,
        default=1000,
        help="at most this many current values: the p-value decides (default 1000)",
    )
    p.add_argument("--p-value-threshold", type=float, default=0.05)
    p.add_argument("--dataset-share", type=float, default=0.5)
    p.add_argument("--sample-cap", type=int, default=1_000_000, help="sorted reference sample")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--since", help="captured data: requests at or after this ISO time (UTC)")
    p.add_argument("--until", help="captured data: requests before this ISO time (UTC)")
    p.add_argument("--threads", type=int, default=usable_cores().count)
    p.set_defaults(run=run_drift)


def drift_command(args: argparse.Namespace) -> DriftCommand:
    """Validate the parsed flags into a ``DriftCommand`` (``ConfigError`` when inconsistent)."""
    making_baseline = args.reference == BASELINE_COMMAND and not os.path.exists(args.reference)
    if making_baseline and args.output is None:
        raise ConfigError("sluice drift baseline DATA needs --output FILE")
    if not making_baseline and args.output is not None:
        raise ConfigError("--output is for 'sluice drift baseline DATA --output FILE'")
    features = None
    if args.features:
        features = tuple(name.strip() for name in args.features.split(",") if name.strip())
    rule = DriftRule(
        numeric_statistic=cast(NumericStatistic, args.numeric_statistic),
        numeric_threshold=args.numeric_threshold,
        categorical_statistic=cast(CategoricalStatistic, args.categorical_statistic),
        categorical_threshold=args.categorical_threshold,
        small_sample_rows=args.small_sample_rows,
        p_value_threshold=args.p_value_threshold,
        dataset_share=args.dataset_share,
    )
    return DriftCommand(
        reference=args.reference,
        current=args.current,
        features=features,
        json_path=args.json_path,
        html_path=args.html_path,
        output=args.output,
        fail_on_drift=args.fail_on_drift,
        rule=rule,
        baseline=BaselineOptions(args.sample_cap, args.seed, max(1, args.threads)),
        since=parse_time(args.since, "--since") if args.since else None,
        until=parse_time(args.until, "--until") if args.until else None,
    )


@contextmanager
def _writing(path: Path) -> Iterator[None]:
    try:
        yield
    except OSError as exc:
        raise InvalidInput(f"cannot write {path}: {exc.strerror or exc}") from exc


def _render(command: DriftCommand) -> int:
    """``sluice drift report REPORT.json``: the table, and the HTML with ``--html``."""
    try:
        body = json.loads(Path(command.current).read_text())
    except OSError as exc:
        raise InvalidInput(f"cannot read {command.current}: {exc.strerror}") from exc
    except json.JSONDecodeError as exc:
        raise InvalidInput(f"{command.current}: not JSON: {exc}") from exc
    report = report_from_json(body)
    print(format_table(report))
    if command.html_path is not None:
        with _writing(command.html_path):
            command.html_path.write_text(render_html(report))
    return 1 if command.fail_on_drift and report.dataset_drifted else 0


def execute(command: DriftCommand) -> int:
    """Run one command; prints the table (or a one-line summary for a baseline)."""
    if command.reference == REPORT_COMMAND and not os.path.exists(REPORT_COMMAND):
        return _render(command)
    if command.output is not None:
        table = read_table(command.current, command.features)
        baseline = build_baseline(table, command.baseline)
        with _writing(command.output):
            save_baseline(baseline, command.output)
        print(f"baseline of {len(baseline.profiles)} features written to {command.output}")
        return 0
    reference = (
        load_baseline(command.reference)
        if is_baseline_file(command.reference)
        else read_table(command.reference, command.features)
    )
    current = _current(command, reference)
    report = compare(reference, current, command.rule, command.baseline, command.features)
    print(format_table(report))
    if command.json_path is not None:
        with _writing(command.json_path):
            command.json_path.write_text(json.dumps(report_json(report), indent=2) + "\n")
    if command.html_path is not None:
        with _writing(command.html_path):
            command.html_path.write_text(render_html(report))
    return 1 if command.fail_on_drift and report.dataset_drifted else 0


def _current(command: DriftCommand, reference: Baseline | pa.Table) -> pa.Table:
    """The current data: a Parquet/Arrow table, or captured requests as feature columns."""
    if is_capture(command.current):
        kinds = _feature_kinds(reference)
        names = list(command.features or kinds)
        categorical = [n for n in names if kinds.get(n) == "categorical"]
        captured = read_capture(command.current, command.since, command.until)
        return capture_features(captured, names, command.current, categorical)
    if command.since is not None or command.until is not None:
        raise ConfigError("--since and --until apply to captured data (a capture directory)")
    return read_table(command.current, command.features)


def _feature_kinds(reference: Baseline | pa.Table) -> dict[str, str]:
    """The reference's features and their kinds (numeric or categorical), in its order."""
    if isinstance(reference, Baseline):
        return {
            name: "numeric" if isinstance(profile, NumericProfile) else "categorical"
            for name, profile in reference.profiles.items()
        }
    found = {f.name: feature_kind(f.type) for f in reference.schema}
    return {name: kind for name, kind in found.items() if kind is not None}


def run_drift(args: argparse.Namespace) -> int:
    """The ``run`` default for ``sluice drift``: errors become one line on stderr and exit 2."""
    try:
        return execute(drift_command(args))
    except SluiceError as exc:
        print(f"sluice drift: {exc.message}", file=sys.stderr)
        return 2
