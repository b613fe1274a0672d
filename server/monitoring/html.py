"""The drift report as one self-contained HTML page: the table, then per feature a bar chart
of reference against current shares per bin, drawn as inline SVG (nothing is fetched)."""

from __future__ import annotations

import math
from html import escape

from server.monitoring.drift import FeatureDrift, Histogram
from server.monitoring.report import CATEGORICAL_KEYS, NUMERIC_KEYS, DriftReport

_WIDTH = 640
_HEIGHT = 220
_MARGIN_LEFT = 44
_MARGIN_BOTTOM = 64
_REFERENCE_COLOUR = "#4c78a8"
_CURRENT_COLOUR = "#f58518"

_STYLE = """
body { font: 14px system-ui, sans-serif; margin: 2em; color: #222; }
table { border-collapse: collapse; margin-bottom: 2em; }
th, td { border: 1px solid #ccc; padding: 4px 8px; text-align: right; }
th:first-child, td:first-child { text-align: left; }
tr.drift td { background: #fde2e1; }
section { margin-bottom: 2em; }
.legend span { display: inline-block; width: 12px; height: 12px; margin: 0 4px 0 12px; }
"""


def _cell(value: float) -> str:
    return "-" if math.isnan(value) else f"{value:.4g}"


def _verdict(result: FeatureDrift) -> str:
    if result.drifted is None:
        return escape(result.error or "no verdict")
    return "drift" if result.drifted else "ok"


def _table(report: DriftReport, kind: str, keys: tuple[str, ...]) -> str:
    rows = [(name, r) for name, r in report.features.items() if r.kind == kind]
    if not rows:
        return ""
    head = "".join(f"<th>{escape(key)}</th>" for key in ("feature", *keys, "drifted"))
    body = []
    for name, result in rows:
        cells = "".join(f"<td>{_cell(result.statistics.get(k, math.nan))}</td>" for k in keys)
        css = ' class="drift"' if result.drifted else ""
        body.append(f"<tr{css}><td>{escape(name)}</td>{cells}<td>{_verdict(result)}</td></tr>")
    return f"<h2>{kind} features</h2><table><tr>{head}</tr>{''.join(body)}</table>"


def histogram_svg(histogram: Histogram) -> str:
    """Grouped bars (reference, current) per bin, y axis in shares of non-null values."""
    count = len(histogram.labels)
    top = max([*histogram.reference, *histogram.current, 1e-9])
    plot_width = _WIDTH - _MARGIN_LEFT - 8
    plot_height = _HEIGHT - _MARGIN_BOTTOM - 8
    slot = plot_width / max(count, 1)
    bar = slot * 0.38
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{_WIDTH}" height="{_HEIGHT}" '
        f'role="img" font-size="10">'
    ]
    baseline_y = 8 + plot_height
    for fraction in (0.0, 0.5, 1.0):
        y = baseline_y - fraction * plot_height
        parts.append(
            f'<line x1="{_MARGIN_LEFT}" x2="{_WIDTH - 8}" y1="{y:.1f}" y2="{y:.1f}" '
            f'stroke="#ddd"/><text x="{_MARGIN_LEFT - 4}" y="{y + 3:.1f}" '
            f'text-anchor="end">{fraction * top:.2f}</text>'
        )
    for i, label in enumerate(histogram.labels):
        x = _MARGIN_LEFT + i * slot + slot * 0.12
        for offset, share, colour in (
            (0.0, histogram.reference[i], _REFERENCE_COLOUR),
            (bar, histogram.current[i], _CURRENT_COLOUR),
        ):
            height = share / top * plot_height
            parts.append(
                f'<rect x="{x + offset:.1f}" y="{baseline_y - height:.1f}" width="{bar:.1f}" '
                f'height="{height:.1f}" fill="{colour}"><title>{escape(label)}: '
                f"{share:.4f}</title></rect>"
            )
        centre = _MARGIN_LEFT + (i + 0.5) * slot
        parts.append(
            f'<text transform="translate({centre:.1f},{baseline_y + 10:.1f}) rotate(35)">'
            f"{escape(label[:24])}</text>"
        )
    parts.append("</svg>")
    return "".join(parts)


def render_html(report: DriftReport, title: str = "Sluice drift report") -> str:
    """The whole page."""
    verdict = "drifted" if report.dataset_drifted else "not drifted"
    share = "-" if math.isnan(report.drift_share) else f"{report.drift_share:.0%}"
    sections = []
    for name, result in report.features.items():
        if result.histogram is None:
            continue
        rule = escape(result.rule)
        sections.append(
            f"<section><h3>{escape(name)} ({_verdict(result)}; {rule})</h3>"
            f"{histogram_svg(result.histogram)}</section>"
        )
    legend = (
        f'<p class="legend"><span style="background:{_REFERENCE_COLOUR}"></span>reference'
        f'<span style="background:{_CURRENT_COLOUR}"></span>current</p>'
    )
    return (
        f'<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">'
        f"<title>{escape(title)}</title><style>{_STYLE}</style></head><body>"
        f"<h1>{escape(title)}</h1><p>Dataset {verdict}: {share} of features drifted.</p>"
        f"{_table(report, 'numeric', NUMERIC_KEYS)}"
        f"{_table(report, 'categorical', CATEGORICAL_KEYS)}"
        f"<h2>Distributions</h2>{legend}{''.join(sections)}</body></html>"
    )
