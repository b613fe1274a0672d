"""One measured point (median of repeated runs) and the plain-text table that prints it."""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass(frozen=True, slots=True)
class Run:
    """One load-generator run: completed requests per second, latency in ms, errors."""

    rps: float
    p50_ms: float
    p90_ms: float
    p99_ms: float
    errors: int


@dataclass(frozen=True, slots=True)
class Point:
    """The median of repeated runs at one concurrency for one server and payload."""

    server: str
    payload: str
    rows: int
    concurrency: int
    rps: float
    p50_ms: float
    p90_ms: float
    p99_ms: float
    errors: int
    runs: list[Run] = field(default_factory=list)

    @property
    def rows_per_s(self) -> float:
        return self.rps * self.rows

    @classmethod
    def of(
        cls, server: str, payload: str, rows: int, concurrency: int, runs: Sequence[Run]
    ) -> Point:
        def median(name: str) -> float:
            return statistics.median(getattr(r, name) for r in runs)

        return cls(
            server,
            payload,
            rows,
            concurrency,
            median("rps"),
            median("p50_ms"),
            median("p90_ms"),
            median("p99_ms"),
            sum(r.errors for r in runs),
            list(runs),
        )

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["rows_per_s"] = self.rows_per_s
        return data


def best(points: Sequence[Point], server: str, payload: str) -> Point | None:
    """The point with the highest throughput for one server and payload."""
    mine = [p for p in points if p.server == server and p.payload == payload]
    return max(mine, key=lambda p: p.rps, default=None)


def at(points: Sequence[Point], server: str, payload: str, concurrency: int) -> Point | None:
    return next(
        (
            p
            for p in points
            if p.server == server and p.payload == payload and p.concurrency == concurrency
        ),
        None,
    )


def table(points: Sequence[Point]) -> str:
    """A Markdown table, one row per point."""
    lines = [
        "| server | payload | conc | req/s | rows/s | p50 ms | p90 ms | p99 ms | errors "
        "| runs (req/s) |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |",
    ]
    for p in points:
        runs = " / ".join(f"{r.rps:.0f}" for r in p.runs)
        lines.append(
            f"| {p.server} | {p.payload} | {p.concurrency} | {p.rps:,.0f} | {p.rows_per_s:,.0f} "
            f"| {p.p50_ms:.2f} | {p.p90_ms:.2f} | {p.p99_ms:.2f} | {p.errors} | {runs} |"
        )
    return "\n".join(lines)


def ratio(a: float | None, b: float | None) -> float | None:
    if a is None or b is None or b == 0:
        return None
    return a / b
