"""sluice bench over gRPC (unary and streaming) against a live Sluice server."""

from __future__ import annotations

import pytest

from server.bench import Bench, Step, run_step
from tests.bench.conftest import quick
from tests.live import LiveServer


@pytest.mark.parametrize("streaming", [False, True])
def test_grpc_closed_loop(live: LiveServer, streaming: bool) -> None:
    config = quick(live.grpc_url, protocol="grpc", streaming=streaming, rows=2)
    result = run_step(config)
    assert result.errors == 0, result.error_messages
    assert result.requests > 0
    assert result.wire == ("stream" if streaming else "unary")
    assert result.throughput == pytest.approx(result.requests / result.duration_s)
    lat = result.latency_ms
    assert 0 < lat["p50"] <= lat["p90"] <= lat["p95"] <= lat["p99"] <= lat["max"]
    assert result.client["answers_checked"] > 0
    assert result.server is not None and result.server["requests"] > 0


def test_grpc_wrong_shape_is_invalid_argument(live: LiveServer) -> None:
    result = run_step(quick(live.grpc_url, protocol="grpc", shapes={"input": (1, 5)}))
    assert result.requests == 0
    assert result.error_kinds.keys() == {"gRPC INVALID_ARGUMENT"}


def test_grpc_stream_errors_are_counted(live: LiveServer) -> None:
    config = quick(live.grpc_url, protocol="grpc", streaming=True, shapes={"input": (1, 5)})
    result = run_step(config)
    assert result.requests == 0
    assert result.errors > 0
    assert result.error_kinds.keys() == {"gRPC stream: error_message"}


def test_grpc_unknown_version(live: LiveServer) -> None:
    with Bench(quick(live.grpc_url, protocol="grpc", version="9")) as bench:
        assert bench.warnings
        result = bench.run_step(Step(concurrency=1))
    assert result.requests == 0
    assert result.error_kinds.keys() == {"gRPC NOT_FOUND"}


def test_grpc_open_loop_and_bytes(live: LiveServer) -> None:
    config = quick(live.grpc_url, protocol="grpc", model="identity_bytes", duration_s=2.0)
    result = run_step(config, Step(request_rate=30))
    assert result.client["sent"] in (60, 61)
    assert result.errors == 0
    assert result.requests >= 54


def test_grpc_large_requests_respect_flow_control(live: LiveServer) -> None:
    config = quick(live.grpc_url, protocol="grpc", model="wide", warmup_s=0)
    result = run_step(config, Step(concurrency=1))
    assert result.errors == 0, result.error_messages
    assert result.requests > 0
