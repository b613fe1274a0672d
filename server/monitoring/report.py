"""A drift report over many features: built by ``compare``, written as JSON.

``compare`` runs one feature per worker thread: the kernels and numpy's sort release the GIL,
so features proceed in parallel. Against raw reference data, each worker profiles its reference
column, compares and drops the profile, so memory stays at the input plus a few column copies
per thread instead of a full baseline.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, TypedDict, cast

import numpy as np
import pyarrow as pa

from server.errors import InvalidInput
from server.monitoring.baseline import (
    Baseline,
    BaselineOptions,
    Profile,
    profile_column,
    unsupported_columns,
)
from server.monitoring.columns import (
    FeatureKind,
    category_counts,
    feature_kind,
    numeric_chunks,
)
from server.monitoring.drift import (
    DriftRule,
    FeatureDrift,
    Histogram,
    categorical_drift,
    failed,
    numeric_drift,
)
from server.monitoring.profile import CategoricalProfile, FloatArray, NumericProfile

NUMERIC_KEYS = (
    "psi",
    "js",
    "ks",
    "ks_p_value",
    "wasserstein_normed",
    "null_rate_delta",
    "out_of_range_rate",
)
CATEGORICAL_KEYS = ("chi2", "chi2_p_value", "js", "linf", "unseen_rate", "null_rate_delta")


class HistogramJson(TypedDict):
    labels: list[str]
    reference: list[float]
    current: list[float]


class FeatureJson(TypedDict, total=False):
    """One feature: ``kind``, its statistics (``NUMERIC_KEYS`` or ``CATEGORICAL_KEYS``, null
    when undefined), the verdict and the rule that decided it; ``error`` when there is no
    verdict; ``histogram`` when there is data to plot."""

    kind: str
    psi: float | None
    js: float | None
    ks: float | None
    ks_p_value: float | None
    wasserstein_normed: float | None
    null_rate_delta: float | None
    out_of_range_rate: float | None
    chi2: float | None
    chi2_p_value: float | None
    linf: float | None
    unseen_rate: float | None
    drifted: bool | None
    rule: str
    reference_rows: int
    current_rows: int
    error: str
    histogram: HistogramJson


class ReportJson(TypedDict):
    features: dict[str, FeatureJson]
    drift_share: float | None
    dataset_drifted: bool
    skipped: dict[str, str]


@dataclass(frozen=True, slots=True)
class DriftReport:
    """Per-feature results in reference column order; ``drift_share`` is over the features
    that have a verdict (NaN when none has)."""

    features: Mapping[str, FeatureDrift]
    drift_share: float
    dataset_drifted: bool
    skipped: Mapping[str, str] = field(default_factory=dict)


def compare(
    reference: Baseline | pa.Table,
    current: pa.Table,
    rule: DriftRule,
    options: BaselineOptions,
    features: Sequence[str] | None = None,
) -> DriftReport:
    """Compare ``current`` with ``reference`` (a saved baseline or raw reference data)."""
    if isinstance(reference, Baseline):
        available: Sequence[str] = list(reference.profiles)
        skipped = dict(reference.skipped)
    else:
        skipped = unsupported_columns(reference)
        available = [name for name in reference.column_names if name not in skipped]
    names = list(available) if features is None else list(dict.fromkeys(features))
    if not names:
        raise InvalidInput("no features to compare: the reference has no supported columns")
    positions = {name: i for i, name in enumerate(available)}

    def kind_of(name: str) -> FeatureKind:
        if isinstance(reference, Baseline):
            profile = reference.profiles.get(name)
            return "categorical" if isinstance(profile, CategoricalProfile) else "numeric"
        if name in positions:
            return feature_kind(reference.schema.field(name).type) or "numeric"
        return "numeric"

    # Each worker thread sorts into two buffers it keeps across features. Fresh 8 MB arrays
    # per feature left up to 230 MiB of freed-but-retained heap in glibc's per-thread arenas
    # on the 1M x 20 benchmark (peak 1.3x-1.7x the input, varying run to run).
    scratch = threading.local()

    def buffer(role: str, rows: int) -> FloatArray:
        held: FloatArray | None = getattr(scratch, role, None)
        if held is None or held.shape[0] < rows:
            held = np.empty(rows)
            setattr(scratch, role, held)
        return held

    def profile_of(name: str) -> Profile | None:
        if isinstance(reference, Baseline):
            return reference.profiles.get(name)
        if name not in positions:
            return None
        column = reference.column(name)
        return profile_column(column, options, positions[name], buffer("ref", len(column)))

    def one(name: str) -> FeatureDrift:
        try:
            return compare_one(name)
        except InvalidInput as exc:  # one unreadable column fails that feature, not the run
            return failed(kind_of(name), exc.message)

    def compare_one(name: str) -> FeatureDrift:
        if name not in current.column_names:
            return failed(kind_of(name), "missing from current data")
        profile = profile_of(name)
        if profile is None:
            return failed(kind_of(name), skipped.get(name, "not in the reference"))
        kind: FeatureKind = "numeric" if isinstance(profile, NumericProfile) else "categorical"
        column = current.column(name)
        current_kind = feature_kind(column.type)
        if current_kind != kind:
            found = current_kind or f"unsupported ({column.type})"
            return failed(kind, f"type changed: {kind} in reference, {found} in current")
        if isinstance(profile, NumericProfile):
            chunks = numeric_chunks(column)
            return numeric_drift(profile, chunks, rule, buffer("cur", len(column)))
        counts, nulls = category_counts(column)
        return categorical_drift(profile, counts, nulls, rule)

    with ThreadPoolExecutor(options.threads) as pool:
        results = dict(zip(names, pool.map(one, names), strict=True))
    verdicts = [result.drifted for result in results.values() if result.drifted is not None]
    share = sum(verdicts) / len(verdicts) if verdicts else math.nan
    drifted = bool(verdicts) and share >= rule.dataset_share
    return DriftReport(results, share, drifted, skipped)


def _number(value: float) -> float | None:
    """JSON has no NaN or infinity: undefined statistics are null."""
    return value if math.isfinite(value) else None


def feature_json(result: FeatureDrift) -> FeatureJson:
    keys = NUMERIC_KEYS if result.kind == "numeric" else CATEGORICAL_KEYS
    body: dict[str, Any] = {"kind": result.kind}
    for key in keys:
        body[key] = _number(result.statistics.get(key, math.nan))
    body["drifted"] = result.drifted
    body["rule"] = result.rule
    body["reference_rows"] = result.reference_rows
    body["current_rows"] = result.current_rows
    if result.error is not None:
        body["error"] = result.error
    if result.histogram is not None:
        body["histogram"] = {
            "labels": list(result.histogram.labels),
            "reference": list(result.histogram.reference),
            "current": list(result.histogram.current),
        }
    return cast(FeatureJson, body)


def report_json(report: DriftReport) -> ReportJson:
    """The report as the documented JSON body."""
    return {
        "features": {name: feature_json(result) for name, result in report.features.items()},
        "drift_share": _number(report.drift_share),
        "dataset_drifted": report.dataset_drifted,
        "skipped": dict(report.skipped),
    }


def report_from_json(body: Any) -> DriftReport:
    """A report back from ``report_json``'s body (or ``GET /v2/models/{m}/drift``'s, which
    adds window and alert fields): ``InvalidInput`` when it is not one."""
    try:
        features = {}
        for name, entry in body["features"].items():
            keys = NUMERIC_KEYS if entry["kind"] == "numeric" else CATEGORICAL_KEYS
            statistics = {
                key: math.nan if entry.get(key) is None else float(entry[key])
                for key in keys
                if key in entry
            }
            shown = entry.get("histogram")
            histogram = None
            if shown is not None:
                histogram = Histogram(
                    tuple(shown["labels"]), tuple(shown["reference"]), tuple(shown["current"])
                )
            features[str(name)] = FeatureDrift(
                entry["kind"],
                statistics,
                entry["drifted"],
                entry["rule"],
                int(entry["reference_rows"]),
                int(entry["current_rows"]),
                histogram,
                entry.get("error"),
            )
        share = body["drift_share"]
        return DriftReport(
            features,
            math.nan if share is None else float(share),
            bool(body["dataset_drifted"]),
            dict(body.get("skipped", {})),
        )
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise InvalidInput(f"not a drift report: {exc!r}") from exc
