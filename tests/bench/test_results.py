"""Merging client processes' outcomes, and the flags that say a result is client-bound."""

from __future__ import annotations

import io

import numpy as np
import pytest

from server.bench import Step
from server.bench.driver import Outcome
from server.bench.report import print_table
from server.bench.results import merge


def outcome(latencies_ms: list[float], cpu_s: float = 0.1, lag_ms: float | None = None) -> Outcome:
    lag = None if lag_ms is None else np.full(50, int(lag_ms * 1e6), dtype=np.int64)
    return Outcome(
        latencies_ns=(np.asarray(latencies_ms) * 1e6).astype(np.int64),
        errors={"HTTP 503": 2}, messages={"HTTP 503": "overloaded"},
        cpu_s=cpu_s, wall_s=1.0, answers=len(latencies_ms) + 2, connections=2, lag_ns=lag,
    )  # fmt: skip


def test_merge_pools_latencies_and_errors() -> None:
    step = Step(concurrency=4)
    a, b = outcome([1.0, 2.0, 3.0]), outcome([4.0, 5.0])
    r = merge([a, b], step, protocol="http", wire="json", duration_s=2.0, rows=3, server=None)
    assert r.requests == 5 and r.throughput == 2.5 and r.rows_per_s == 7.5
    assert r.errors == 4 and r.error_kinds == {"HTTP 503": 4}
    assert r.latency_ms["p50"] == pytest.approx(3.0) and r.latency_ms["max"] == pytest.approx(5.0)
    assert r.client["cpu_us_per_request"] == pytest.approx(1e6 * 0.2 / 9)
    assert not r.saturated


def test_a_busy_client_is_flagged() -> None:
    r = merge([outcome([1.0], cpu_s=0.95)], Step(concurrency=1), protocol="http", wire="json",
              duration_s=1.0, rows=1, server=None)  # fmt: skip
    assert r.saturated
    out = io.StringIO()
    print_table([r], out)
    assert "CLIENT SATURATED" in out.getvalue() and "add --processes" in out.getvalue()


def test_a_late_schedule_is_flagged() -> None:
    step = Step(request_rate=100)
    late = merge([outcome([1.0], lag_ms=30)], step, protocol="grpc", wire="unary",
                 duration_s=1.0, rows=1, server=None)  # fmt: skip
    on_time = merge([outcome([1.0], lag_ms=3)], step, protocol="grpc", wire="unary",
                    duration_s=1.0, rows=1, server=None)  # fmt: skip
    assert late.behind and not on_time.behind
    assert late.client["schedule_lag_ms"]["p99"] == pytest.approx(30)
    out = io.StringIO()
    print_table([late], out)
    assert "fell behind its schedule" in out.getvalue()


def test_no_answers_gives_empty_latencies() -> None:
    r = merge([outcome([])], Step(concurrency=1), protocol="http", wire="json", duration_s=1.0,
              rows=1, server=None)  # fmt: skip
    assert r.requests == 0 and r.latency_ms["p99"] is None
