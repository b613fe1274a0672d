"""sluice bench over HTTP (JSON and binary) against a live Sluice server."""

from __future__ import annotations

import numpy as np
import pytest

from server.bench import Bench, Step, run_step
from tests.bench.conftest import quick
from tests.live import LiveServer


@pytest.mark.parametrize("binary", [False, True])
def test_closed_loop_measures_successful_answers(live: LiveServer, binary: bool) -> None:
    result = run_step(quick(live.url, binary=binary, rows=3))
    assert result.errors == 0, result.error_messages
    assert result.requests > 0
    assert result.throughput == pytest.approx(result.requests / result.duration_s)
    assert result.rows_per_s == pytest.approx(3 * result.throughput)
    lat = result.latency_ms
    assert 0 < lat["p50"] <= lat["p90"] <= lat["p95"] <= lat["p99"] <= lat["max"]
    assert lat["p99"] == pytest.approx(np.percentile(result.latencies_ns, 99) / 1e6)
    assert result.client["answers_checked"] > 0
    assert result.wire == ("binary" if binary else "json")


def test_server_statistics_cover_the_window(live: LiveServer) -> None:
    result = run_step(quick(live.url))
    server = result.server
    assert server is not None
    # the stats are read at the window's edges: in-flight requests may fall either side
    assert abs(server["requests"] - result.requests) <= 2 * 2
    assert server["queue_us"] >= 0 and server["compute_us"] > 0
    assert server["rows_per_batch"] >= 1


def test_unknown_version_is_counted_as_errors(live: LiveServer) -> None:
    with Bench(quick(live.url, version="7")) as bench:
        assert any("version '7'" in w for w in bench.warnings)
        result = bench.run_step(Step(concurrency=2))
    assert result.requests == 0
    assert result.errors > 0
    assert set(result.error_kinds) == {"HTTP 404"}
    assert "7" in result.error_messages["HTTP 404"]


def test_wrong_shape_is_counted_as_errors(live: LiveServer) -> None:
    result = run_step(quick(live.url, shapes={"input": (1, 5)}))
    assert result.requests == 0
    assert result.error_kinds.keys() == {"HTTP 400"}
    assert result.errors > 0


@pytest.mark.slow
def test_several_inputs_and_bytes(live: LiveServer) -> None:
    for model in ("add_sub", "identity_bytes"):
        for binary in (False, True):
            result = run_step(quick(live.url, model=model, binary=binary, rows=2))
            assert result.errors == 0, (model, binary, result.error_messages)
            assert result.requests > 0


def test_fp16_needs_binary(live: LiveServer) -> None:
    from server.errors import ConfigError

    with pytest.raises(ConfigError, match="--binary"):
        run_step(quick(live.url, model="identity_fp16"))
    assert run_step(quick(live.url, model="identity_fp16", binary=True)).errors == 0


def test_open_loop_holds_its_rate(live: LiveServer) -> None:
    config = quick(live.url, duration_s=2.0)
    result = run_step(config, Step(request_rate=40))
    # the schedule is exact: 40/s over a 2 s window is 80 intended sends
    assert result.client["sent"] in (80, 81)
    assert result.requests >= 72  # answers completing inside the window
    assert result.errors == 0
    assert result.client["backlog"] == 0


@pytest.mark.slow
def test_poisson_schedule_is_seeded(live: LiveServer) -> None:
    config = quick(live.url, duration_s=2.0, seed=5)
    first = run_step(config, Step(request_rate=50, poisson=True))
    second = run_step(config, Step(request_rate=50, poisson=True))
    assert first.client["sent"] == second.client["sent"]
    assert 60 <= first.client["sent"] <= 140  # 100 expected; ±4 standard deviations


def test_several_client_processes(live: LiveServer) -> None:
    result = run_step(quick(live.url, processes=2), Step(concurrency=3))
    assert result.client["processes"] == 2
    assert result.client["connections"] == 3
    assert len(result.client["cpu_per_process"]) == 2
    assert result.errors == 0 and result.requests > 0
