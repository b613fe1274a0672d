"""``sluice bench`` on the command line: reports, and clear errors for bad input."""

from __future__ import annotations

import csv
import json
import sys
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from server.cli import main
from tests.live import LiveServer

QUICK = ["--duration", "0.5", "--warmup", "0.1", "--processes", "1", "--no-progress"]


def bench(*args: str) -> int:
    return main(["bench", *args, *QUICK])


def test_json_and_csv_reports(
    live: LiveServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out_json, out_csv = tmp_path / "r.json", tmp_path / "r.csv"
    code = bench("--url", live.url, "--model", "mlp", "--concurrency", "1,2", "--rows", "2",
                 "--json", str(out_json), "--csv", str(out_csv))  # fmt: skip
    assert code == 0
    doc = json.loads(out_json.read_text())
    assert doc["config"]["model"] == "mlp" and doc["config"]["rows"] == 2
    assert [r["concurrency"] for r in doc["results"]] == [1, 2]
    for r in doc["results"]:
        assert r["protocol"] == "http"
        assert r["throughput"] > 0 and r["rows_per_s"] == pytest.approx(2 * r["throughput"])
        assert set(r["latency_ms"]) >= {"p50", "p90", "p95", "p99", "max"}
        assert r["errors"] == 0
        assert set(r["server"]) >= {"queue_us", "compute_us"}
        assert {"cpu_us_per_request", "saturated", "processes"} <= set(r["client"])
    with out_csv.open() as f:
        rows = list(csv.DictReader(f))
    assert [row["concurrency"] for row in rows] == ["1", "2"]
    assert float(rows[0]["throughput"]) == pytest.approx(doc["results"][0]["throughput"], rel=1e-3)
    table = capsys.readouterr().out
    assert "c=1" in table and "p99" in table


def test_open_loop_json_names_the_rate(live: LiveServer, tmp_path: Path) -> None:
    out = tmp_path / "r.json"
    assert bench("--url", live.grpc_url, "--protocol", "grpc", "--model", "mlp",
                 "--request-rate", "20", "--poisson", "--json", str(out)) == 0  # fmt: skip
    (result,) = json.loads(out.read_text())["results"]
    assert result["request_rate"] == 20 and result["poisson"] is True
    assert "concurrency" not in result
    assert {"sent", "schedule_lag_ms", "behind"} <= set(result["client"])


def test_plot(live: LiveServer, tmp_path: Path) -> None:
    pytest.importorskip("matplotlib")
    out = tmp_path / "p.png"
    assert (
        bench("--url", live.url, "--model", "mlp", "--concurrency", "1,2", "--plot", str(out)) == 0
    )
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_plot_without_matplotlib(
    live: LiveServer,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import matplotlib raises ImportError
    assert bench("--url", live.url, "--model", "mlp", "--plot", str(tmp_path / "p.png")) == 2
    assert "pip install matplotlib" in capsys.readouterr().err


@pytest.mark.parametrize("protocol", ["http", "grpc"])
def test_unreachable_server(protocol: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert bench("--url", "127.0.0.1:1", "--model", "mlp", "--protocol", protocol) == 1
    err = capsys.readouterr().err
    assert "cannot reach" in err and "Traceback" not in err


@pytest.mark.parametrize("grpc", [False, True])
def test_unknown_model(live: LiveServer, grpc: bool, capsys: pytest.CaptureFixture[str]) -> None:
    url = live.grpc_url if grpc else live.url
    args = ["--protocol", "grpc"] if grpc else []
    assert bench("--url", url, "--model", "nope", *args) == 1
    err = capsys.readouterr().err
    assert "nope" in err and "Traceback" not in err


def test_parquet_input(
    live: LiveServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = np.random.default_rng(0).standard_normal((40, 16))
    table = pa.table({f"f{i}": data[:, i] for i in range(16)} | {"id": [str(i) for i in range(40)]})
    pq.write_table(table, tmp_path / "d.parquet")
    out = tmp_path / "r.json"
    code = bench("--url", live.url, "--model", "mlp", "--input", str(tmp_path / "d.parquet"),
                 "--rows", "4", "--concurrency", "1", "--json", str(out))  # fmt: skip
    assert code == 0, capsys.readouterr().err
    (result,) = json.loads(out.read_text())["results"]
    assert result["errors"] == 0 and result["rows_per_s"] == pytest.approx(4 * result["throughput"])


def test_parquet_columns_that_do_not_fit(
    live: LiveServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    pq.write_table(pa.table({"a": [1.0, 2.0], "b": [3.0, 4.0]}), tmp_path / "d.parquet")
    assert bench("--url", live.url, "--model", "mlp", "--input", str(tmp_path / "d.parquet")) == 2
    err = capsys.readouterr().err
    assert "takes 16 features, but the file has 2 numeric columns" in err


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--request-rate", "1e9"], "client process(es) can send"),
        (["--request-rate", "0"], "above 0"),
        (["--request-rate", "fast"], "not a number"),
        (["--concurrency", "0"], "at least 1"),
        (["--poisson"], "--poisson needs --request-rate"),
        (["--shape", "input"], "NAME=D1,D2"),
        (["--streaming"], "--streaming needs --protocol grpc"),
        (["--ca", "/nonexistent.pem"], "--ca needs --tls"),
    ],
)
def test_bad_arguments(args: list[str], message: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert bench("--url", "127.0.0.1:1", "--model", "mlp", *args) == 2
    assert message in capsys.readouterr().err


def test_bad_url(capsys: pytest.CaptureFixture[str]) -> None:
    assert bench("--url", "localhost", "--model", "mlp") == 2
    assert "HOST:PORT" in capsys.readouterr().err


def test_every_request_rejected(live: LiveServer, capsys: pytest.CaptureFixture[str]) -> None:
    assert bench("--url", live.url, "--model", "mlp", "--version", "7", "--concurrency", "1") == 1
    captured = capsys.readouterr()
    assert "HTTP 404" in captured.out  # the table names the error kind
    assert "version '7'" in captured.err and "no request of a step succeeded" in captured.err
