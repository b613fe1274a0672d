"""One step's result, merged from every client process: the figures the report prints."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from server.bench.config import Step
from server.bench.driver import Outcome

PERCENTILES = (50, 90, 95, 99)
# A Python event loop at 90 % of a core queues its own work: latencies include the client.
SATURATED = 0.90
# An open loop whose schedule ran this late did not send at the rate asked for. The median
# catches a client that cannot keep up (its lag grows without bound), the p99 long stalls;
# a loaded machine's scheduling noise (a few ms, now and then) trips neither.
BEHIND_P50_MS = 5.0
BEHIND_P99_MS = 100.0


@dataclass(frozen=True, slots=True)
class StepResult:
    """Throughput counts successful answers that completed inside the window."""

    protocol: str
    wire: str  # json, binary, unary, stream
    step: Step
    duration_s: float
    requests: int
    throughput: float
    rows_per_s: float
    latency_ms: dict[str, float | None]
    errors: int
    error_kinds: dict[str, int]
    error_messages: dict[str, str]
    server: dict[str, Any] | None
    client: dict[str, Any]
    latencies_ns: np.ndarray = field(repr=False, compare=False)

    @property
    def saturated(self) -> bool:
        return bool(self.client["saturated"])

    @property
    def behind(self) -> bool:
        return bool(self.client.get("behind", False))

    def to_dict(self) -> dict[str, Any]:
        load: dict[str, Any] = (
            {"concurrency": self.step.concurrency}
            if self.step.concurrency is not None
            else {"request_rate": self.step.request_rate, "poisson": self.step.poisson}
        )
        return {
            "protocol": self.protocol,
            "wire": self.wire,
            **load,
            "duration_s": self.duration_s,
            "requests": self.requests,
            "throughput": self.throughput,
            "rows_per_s": self.rows_per_s,
            "latency_ms": self.latency_ms,
            "errors": self.errors,
            "error_kinds": self.error_kinds,
            "error_messages": self.error_messages,
            "server": self.server,
            "client": self.client,
        }


def merge(
    outcomes: Sequence[Outcome],
    step: Step,
    *,
    protocol: str,
    wire: str,
    duration_s: float,
    rows: int,
    server: dict[str, Any] | None,
) -> StepResult:
    latencies = np.concatenate([o.latencies_ns for o in outcomes])
    ok = int(latencies.size)
    kinds: dict[str, int] = {}
    messages: dict[str, str] = {}
    for o in outcomes:
        for kind, n in o.errors.items():
            kinds[kind] = kinds.get(kind, 0) + n
        for kind, text in o.messages.items():
            messages.setdefault(kind, text)
    throughput = ok / duration_s
    return StepResult(
        protocol=protocol,
        wire=wire,
        step=step,
        duration_s=duration_s,
        requests=ok,
        throughput=throughput,
        rows_per_s=throughput * rows,
        latency_ms=latency_summary(latencies),
        errors=sum(kinds.values()),
        error_kinds=kinds,
        error_messages=messages,
        server=server,
        client=client_summary(outcomes, step),
        latencies_ns=latencies,
    )


def latency_summary(latencies_ns: np.ndarray) -> dict[str, float | None]:
    names = [f"p{p}" for p in PERCENTILES] + ["max", "mean"]
    if latencies_ns.size == 0:
        return dict.fromkeys(names)
    values = [*np.percentile(latencies_ns, PERCENTILES), latencies_ns.max(), latencies_ns.mean()]
    return {name: float(v) / 1e6 for name, v in zip(names, values, strict=True)}


def client_summary(outcomes: Sequence[Outcome], step: Step) -> dict[str, Any]:
    busy = [o.cpu_s / o.wall_s if o.wall_s > 0 else 0.0 for o in outcomes]
    answers = sum(o.answers for o in outcomes)
    cpu = sum(o.cpu_s for o in outcomes)
    summary: dict[str, Any] = {
        "processes": len(outcomes),
        "connections": sum(o.connections for o in outcomes),
        "cpu_s": cpu,
        "cpu_per_process": [round(b, 3) for b in busy],
        "cpu_us_per_request": 1e6 * cpu / answers if answers else None,
        "saturated": max(busy, default=0.0) >= SATURATED,
        "answers_checked": sum(o.checked for o in outcomes),
    }
    if step.request_rate is not None:
        lag = np.concatenate([o.lag_ns for o in outcomes if o.lag_ns is not None])
        p50, p99 = (np.percentile(lag, [50, 99]) / 1e6).tolist() if lag.size else (0.0, 0.0)
        sent = sum(o.sent for o in outcomes)
        summary.update(
            sent=sent,
            schedule_lag_ms={"p50": p50, "p99": p99},
            backlog=sum(o.backlog for o in outcomes),
            behind=p50 > BEHIND_P50_MS or p99 > BEHIND_P99_MS,
        )
    return summary
