"""``--report DIR``: every trial as JSON and CSV, the recommendation, and PNG plots
(throughput against p99 per trial; peak memory against max batch size). matplotlib is
imported only here and only when present: without it the plots are skipped, said so."""

from __future__ import annotations

import csv
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from server.profiler.space import KNOBS
from server.profiler.trial import Trial

CSV_FIELDS = (
    "index",
    *KNOBS,
    "rows",
    "concurrency",
    "throughput",
    "rows_per_s",
    "p50_ms",
    "p95_ms",
    "p99_ms",
    "peak_rss_mb",
    "busy_cores",
    "windows",
    "stable",
    "errors",
)


def write_report(
    directory: Path, trials: Sequence[Trial], summary: dict[str, Any], chosen: int | None
) -> list[str]:
    """Write the report; returns notes for the user (a plot skipped and why)."""
    directory.mkdir(parents=True, exist_ok=True)
    doc = {**summary, "trials": [t.to_dict() for t in trials]}
    (directory / "profile.json").write_text(json.dumps(doc, indent=2) + "\n")
    with open(directory / "trials.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, CSV_FIELDS)
        writer.writeheader()
        for t in trials:
            row = {k: v for k, v in t.to_dict().items() if k in CSV_FIELDS}
            row.update(t.knobs.to_dict() if t.knobs is not None else {})
            writer.writerow(row)
    return plot(directory, trials, summary.get("slo_p99_ms"), chosen)


def plot(
    directory: Path, trials: Sequence[Trial], slo: float | None, chosen: int | None
) -> list[str]:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return ["matplotlib is not installed: no PNG plots (pip install matplotlib)"]
    fig, ax = plt.subplots(figsize=(7, 5))
    ax.scatter([t.p99_ms for t in trials], [t.rows_per_s for t in trials], c="tab:blue")
    for t in trials:
        ax.annotate(str(t.index), (t.p99_ms, t.rows_per_s), fontsize=7)
    picked = [t for t in trials if t.index == chosen]
    if picked:
        ax.scatter(
            [picked[0].p99_ms],
            [picked[0].rows_per_s],
            s=160,
            facecolors="none",
            edgecolors="tab:red",
            label="recommended",
        )
    if slo is not None:
        ax.axvline(slo, color="tab:red", linestyle="--", label=f"SLO p99 {slo:g} ms")
    ax.set_xlabel("p99 latency (ms)")
    ax.set_ylabel("throughput (rows/s)")
    ax.set_title("Trials: throughput against p99")
    ax.legend(loc="lower right")
    fig.savefig(directory / "throughput_p99.png", dpi=100, bbox_inches="tight")
    plt.close(fig)

    fig, ax = plt.subplots(figsize=(7, 5))
    measured = [t for t in trials if t.knobs is not None]
    ax.scatter(
        [t.knobs.max_batch_size for t in measured if t.knobs is not None],
        [t.peak_rss_mb for t in measured],
        c=[t.knobs.threads for t in measured if t.knobs is not None],
        cmap="viridis",
    )
    ax.set_xscale("log", base=2)
    ax.set_xlabel("max_batch_size (rows)")
    ax.set_ylabel("peak RSS of the server (MB)")
    ax.set_title("Memory against batch size (colour: compute threads)")
    fig.savefig(directory / "memory_batch.png", dpi=100, bbox_inches="tight")
    plt.close(fig)
    return []
