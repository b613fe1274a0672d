"""The run's report: a table on the terminal, JSON, CSV, and a throughput-latency plot."""

from __future__ import annotations

import csv
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any, TextIO

from server.bench.config import BenchConfig
from server.bench.results import StepResult
from server.errors import ConfigError

CSV_FIELDS = (
    "protocol", "wire", "concurrency", "request_rate", "duration_s", "requests", "throughput",
    "rows_per_s", "p50_ms", "p90_ms", "p95_ms", "p99_ms", "max_ms", "errors",
    "server_queue_us", "server_compute_us", "server_rows_per_batch", "client_processes",
    "client_cpu_us_per_request", "client_cpu_max", "client_saturated", "client_behind",
)  # fmt: skip


def document(config: BenchConfig, results: Sequence[StepResult]) -> dict[str, Any]:
    """The ``--json`` document: every step's result and the configuration that ran."""
    settings = {
        "url": config.url, "model": config.model, "version": config.version,
        "protocol": config.protocol, "binary": config.binary, "streaming": config.streaming,
        "duration_s": config.duration_s, "warmup_s": config.warmup_s, "rows": config.rows,
        "input": str(config.input_path) if config.input_path else None,
        "processes": config.process_count, "tls": config.tls, "token": bool(config.token),
    }  # fmt: skip
    return {"results": [r.to_dict() for r in results], "config": settings}


def write_json(path: Path, config: BenchConfig, results: Sequence[StepResult]) -> None:
    path.write_text(json.dumps(document(config, results), indent=2) + "\n")


def csv_row(r: StepResult) -> dict[str, Any]:
    lat, server, client = r.latency_ms, r.server or {}, r.client
    return {
        "protocol": r.protocol, "wire": r.wire, "concurrency": r.step.concurrency,
        "request_rate": r.step.request_rate, "duration_s": r.duration_s, "requests": r.requests,
        "throughput": round(r.throughput, 3), "rows_per_s": round(r.rows_per_s, 3),
        **{f"{k}_ms": lat[k] for k in ("p50", "p90", "p95", "p99", "max")},
        "errors": r.errors, "server_queue_us": server.get("queue_us"),
        "server_compute_us": server.get("compute_us"),
        "server_rows_per_batch": server.get("rows_per_batch"),
        "client_processes": client["processes"],
        "client_cpu_us_per_request": client["cpu_us_per_request"],
        "client_cpu_max": max(client["cpu_per_process"], default=0.0),
        "client_saturated": client["saturated"], "client_behind": client.get("behind", False),
    }  # fmt: skip


def write_csv(path: Path, results: Sequence[StepResult]) -> None:
    with path.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=CSV_FIELDS)
        writer.writeheader()
        writer.writerows(csv_row(r) for r in results)


def write_plot(path: Path, results: Sequence[StepResult], title: str) -> None:
    """Throughput against p99 latency, one point per step, labelled with its load."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError as exc:
        raise ConfigError(
            "--plot needs matplotlib, which is not installed: pip install matplotlib"
        ) from exc
    points = [(r.throughput, r.latency_ms["p99"], r.step.label) for r in results]
    fig, ax = plt.subplots(figsize=(7, 4.5))
    xs = [x for x, y, _ in points if y is not None]
    ys = [y for _, y, _ in points if y is not None]
    ax.plot(xs, ys, marker="o")
    for x, y, label in points:
        if y is not None:
            ax.annotate(label, (x, y), textcoords="offset points", xytext=(4, 4), fontsize=8)
    ax.set_xlabel("throughput (requests/s)")
    ax.set_ylabel("p99 latency (ms)")
    ax.set_title(title)
    ax.grid(True, alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def print_table(results: Sequence[StepResult], out: TextIO) -> None:
    head = ("load", "req/s", "rows/s", "p50", "p90", "p95", "p99", "max ms", "errors",
            "srv queue", "srv compute", "client cpu", "")  # fmt: skip
    rows: list[tuple[str, ...]] = [head]
    for r in results:
        lat, server = r.latency_ms, r.server or {}
        flags = []
        if r.saturated:
            flags.append("CLIENT SATURATED")
        if r.behind:
            flags.append("CLIENT BEHIND SCHEDULE")
        rows.append((
            r.step.label, f"{r.throughput:,.0f}", f"{r.rows_per_s:,.0f}",
            *(_ms(lat[k]) for k in ("p50", "p90", "p95", "p99", "max")),
            str(r.errors), _us(server.get("queue_us")), _us(server.get("compute_us")),
            f"{max(r.client['cpu_per_process'], default=0):.0%}", " ".join(flags),
        ))  # fmt: skip
    widths = [max(len(row[i]) for row in rows) for i in range(len(head))]
    for row in rows:
        cells = [
            c.ljust(w) if i == 0 else c.rjust(w)
            for i, (c, w) in enumerate(zip(row, widths, strict=True))
        ]
        print("  ".join(cells).rstrip(), file=out)
    for r in results:
        for kind, n in r.error_kinds.items():
            text = r.error_messages.get(kind, "")
            print(f"{r.step.label}: {n} x {kind}" + (f": {text[:160]}" if text else ""), file=out)
        c = r.client
        if r.saturated:
            print(f"{r.step.label}: a client process used {max(c['cpu_per_process']):.0%} of a "
                  "core: the figures include the client's own queueing; add --processes",
                  file=out)  # fmt: skip
        if r.behind:
            lag = c["schedule_lag_ms"]
            print(
                f"{r.step.label}: the client fell behind its schedule (median "
                f"{lag['p50']:.1f} ms, p99 {lag['p99']:.1f} ms late); "
                "the rate sent was not the rate asked for",
                file=out,
            )


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


def _us(value: float | None) -> str:
    return "-" if value is None else f"{value:,.0f} µs"
