"""The validation gate: load a registered version in ONNX Runtime, run it, and record whether
it may be promoted.

A version passes when it loads, warms up, answers the sample with finite outputs of the shape
it declares, and (with labels) meets every threshold and is no worse than the version the
alias points to by more than ``max_regression`` on each requested metric. The record is stored
with the version (``Registry.set_validation``), which emits ``io.sluice.validation.*``.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from server.engine.session import OrtSession
from server.errors import InvalidInput, ModelNotFound, SluiceError
from server.evaluation import HIGHER_IS_BETTER, METRICS
from server.registry import Registry
from server.registry.artifacts import MODEL_FILE
from server.scoring.feeds import build_feeds
from server.scoring.mapping import build_mapping
from server.settings import RuntimeConfig
from server.tensors import dtype_of

from .scores import Threshold

SAMPLE_ROWS = 32
LATENCY_RUNS = 30


@dataclass(frozen=True, slots=True)
class Request:
    name: str
    version: int
    data: Path | None = None
    label: str = ""
    thresholds: tuple[Threshold, ...] = ()
    against: str = ""
    max_regression: float = 0.01
    max_rows: int = 100_000


def validate(registry: Registry, request: Request, *, actor: str = "") -> dict[str, Any]:
    """Run the checks, record the result with the version and return it."""
    if request.thresholds and not request.label:
        raise InvalidInput("--metric needs --label (the column holding the true values)")
    if request.label and request.data is None:
        raise InvalidInput("--label needs --data")
    info = registry.get(request.name, request.version)
    baseline = _baseline(registry, request)
    record: dict[str, Any] = {"passed": False, "checked_at": time.time(), "problems": []}
    problems: list[str] = record["problems"]
    try:
        session = _load(registry, request.name, request.version)
        session.warmup()
        feed, labels = _sample(session, request)
        outputs = session.run(feed)
        problems += _check_outputs(session, outputs, _rows(feed))
        record["rows"] = _rows(feed)
        record["latency_ms"] = _latency(session, feed)
        if labels is not None:
            scores = _first_output(outputs)
            record["metrics"] = _metrics(request, labels, scores)
            for threshold in request.thresholds:
                value = record["metrics"][threshold.metric]
                if not threshold.met(value):
                    problems.append(f"{threshold.metric} = {value:.6g}, needs {threshold}")
            if baseline is not None:
                other = _load(registry, request.name, baseline)
                theirs = _metrics(request, labels, _first_output(other.run(feed)))
                record["against"] = {"alias": request.against, "version": baseline, **theirs}
                problems += _regressions(request, record["metrics"], theirs)
    except SluiceError as exc:
        problems.append(exc.message)
    record["passed"] = not problems
    record["sha256"] = info.sha256
    registry.set_validation(request.name, request.version, record, actor=actor)
    return record


def _baseline(registry: Registry, request: Request) -> int | None:
    if not request.against:
        return None
    try:
        target = registry.get(request.name, alias=request.against)
    except ModelNotFound as exc:
        raise InvalidInput(f"--against: {exc.message}") from exc
    if not request.label:
        raise InvalidInput("--against compares metrics: it needs --data and --label")
    return None if target.version == request.version else target.version


def _load(registry: Registry, name: str, version: int) -> OrtSession:
    path = Path(registry.artifacts.version_dir(name, version)) / MODEL_FILE
    return OrtSession(path, RuntimeConfig(), name)


def _rows(feed: dict[str, np.ndarray]) -> int:
    return int(next(iter(feed.values())).shape[0]) if feed else 0


def _sample(
    session: OrtSession, request: Request
) -> tuple[dict[str, np.ndarray], np.ndarray | None]:
    """The data's rows (with their labels), or a synthetic sample of the declared shapes."""
    if request.data is None:
        rng = np.random.default_rng(0)
        feed = {}
        for spec in session.inputs:
            shape = tuple(SAMPLE_ROWS if d < 0 else d for d in spec.shape)
            if spec.datatype == "BYTES":
                feed[spec.name] = np.full(shape, "", dtype=object)
            else:
                feed[spec.name] = rng.standard_normal(shape).astype(dtype_of(spec.datatype))
        return feed, None
    try:
        table = pq.read_table(request.data).slice(0, request.max_rows)
    except (OSError, pa.ArrowException) as exc:
        raise InvalidInput(f"--data '{request.data}': cannot read ({exc})") from exc
    keep = [request.label] if request.label else []
    if request.label and request.label not in table.column_names:
        raise InvalidInput(f"--label: column '{request.label}' is not in '{request.data}'")
    mapping = build_mapping(table.schema, session.inputs, None, keep)
    feeds = build_feeds(mapping, table.combine_chunks().to_batches()[0])
    labels = None
    if request.label:
        labels = feeds.kept.column(request.label).to_numpy(zero_copy_only=False)
    return feeds.tensors, labels


def _check_outputs(session: OrtSession, outputs: dict[str, np.ndarray], rows: int) -> list[str]:
    problems = []
    for spec in session.outputs:
        value = outputs[spec.name]
        if not spec.accepts(value.shape):
            problems.append(
                f"output '{spec.name}' has shape {list(value.shape)}, "
                f"the model declares {list(spec.shape)}"
            )
        elif spec.shape and spec.shape[0] == -1 and value.shape[0] != rows:
            problems.append(f"output '{spec.name}' has {value.shape[0]} rows for {rows} input rows")
        if value.dtype.kind in "fc" and not np.all(np.isfinite(value)):
            bad = int(np.size(value) - np.count_nonzero(np.isfinite(value)))
            problems.append(f"output '{spec.name}' has {bad} non-finite value(s)")
    return problems


def _latency(session: OrtSession, feed: dict[str, np.ndarray]) -> dict[str, float]:
    """Milliseconds per single-row run (the first row), median and p99."""
    one = {name: arr[:1] for name, arr in feed.items()}
    times = []
    for _ in range(LATENCY_RUNS):
        started = time.perf_counter()
        session.run(one)
        times.append((time.perf_counter() - started) * 1000)
    return {"p50": float(np.percentile(times, 50)), "p99": float(np.percentile(times, 99))}


def _first_output(outputs: dict[str, np.ndarray]) -> np.ndarray:
    return next(iter(outputs.values()))


def _metrics(request: Request, labels: np.ndarray, scores: np.ndarray) -> dict[str, float]:
    names = dict.fromkeys(t.metric for t in request.thresholds) or {"accuracy": None}
    return {name: METRICS[name](labels, scores) for name in names}


def _regressions(
    request: Request, ours: dict[str, float], theirs: dict[str, float]
) -> Sequence[str]:
    problems = []
    for name, value in ours.items():
        other = theirs[name]
        worse = other - value if HIGHER_IS_BETTER[name] else value - other
        if worse > request.max_regression:
            problems.append(
                f"{name} = {value:.6g} is worse than {other:.6g} of {request.against} "
                f"(more than {request.max_regression:g})"
            )
    return problems
