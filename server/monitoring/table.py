"""The drift report as a plain-text table for the terminal."""

from __future__ import annotations

import math

from server.monitoring.drift import FeatureDrift
from server.monitoring.report import CATEGORICAL_KEYS, NUMERIC_KEYS, DriftReport

_SHORT = {
    "ks_p_value": "ks_p",
    "wasserstein_normed": "w1_normed",
    "null_rate_delta": "null_delta",
    "out_of_range_rate": "out_of_range",
    "chi2_p_value": "chi2_p",
}


def _cell(value: float) -> str:
    if math.isnan(value):
        return "-"
    if math.isinf(value):
        return "inf" if value > 0 else "-inf"
    return f"{value:.4g}"


def _verdict(result: FeatureDrift) -> str:
    if result.drifted is None:
        return f"? ({result.error})" if result.error else "?"
    return "DRIFT" if result.drifted else "ok"


def _section(report: DriftReport, kind: str, keys: tuple[str, ...]) -> list[str]:
    rows = [(name, r) for name, r in report.features.items() if r.kind == kind]
    if not rows:
        return []
    header = ["feature", *(_SHORT.get(key, key) for key in keys), "drifted"]
    body = [
        [name, *(_cell(r.statistics.get(key, math.nan)) for key in keys), _verdict(r)]
        for name, r in rows
    ]
    widths = [max(len(line[i]) for line in [header, *body]) for i in range(len(header) - 1)]

    def render(line: list[str]) -> str:
        cells = [cell.ljust(width) for cell, width in zip(line, widths, strict=False)]
        return "  ".join([*cells, line[-1]])

    return [f"{kind} features", render(header), *(render(line) for line in body), ""]


def format_table(report: DriftReport) -> str:
    """Numeric and categorical features in two aligned sections, then the dataset verdict."""
    lines = _section(report, "numeric", NUMERIC_KEYS)
    lines += _section(report, "categorical", CATEGORICAL_KEYS)
    for name, reason in report.skipped.items():
        lines.append(f"skipped {name}: {reason}")
    verdicts = sum(1 for r in report.features.values() if r.drifted is not None)
    drifted = sum(1 for r in report.features.values() if r.drifted)
    share = "-" if math.isnan(report.drift_share) else f"{report.drift_share:.0%}"
    verdict = "DRIFTED" if report.dataset_drifted else "not drifted"
    lines.append(f"dataset: {verdict} ({drifted} of {verdicts} features drifted, {share})")
    return "\n".join(lines)
