"""Capture through a real server on loopback: rows, types, sampling, errors, hashing."""

import hashlib
import json
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.dataset as ds
import pytest
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient

from tests import models
from tests.live import LiveServer

HASH_KEY = "test-key"


def _capture(path: Path, **extra: object) -> str:
    lines = ["[capture]", "enabled = true", f'path = "{path}"']
    lines += [f"{k} = {json.dumps(v)}" for k, v in extra.items()]
    return "\n".join(lines) + "\n"


def _post(url: str, body: dict[str, Any]) -> int:
    request = urllib.request.Request(url, json.dumps(body).encode(), method="POST")
    try:
        with urllib.request.urlopen(request) as answer:
            return int(answer.status)
    except urllib.error.HTTPError as exc:
        return exc.code


def _traffic(live: LiveServer) -> None:
    http = httpclient.InferenceServerClient(live.url)
    x = np.arange(6, dtype=np.float32).reshape(2, 3)
    for binary, rid in ((False, "json-1"), (True, "bin-1")):
        tensor = httpclient.InferInput("INPUT0", [2, 3], "FP32")
        tensor.set_data_from_numpy(x, binary_data=binary)
        http.infer("ident", [tensor], request_id=rid)
    grpc = grpcclient.InferenceServerClient(live.grpc_url)
    tensor = grpcclient.InferInput("INPUT0", [1, 3], "FP32")
    tensor.set_data_from_numpy(np.full((1, 3), 7, np.float32))
    grpc.infer("ident", [tensor], request_id="grpc-1")
    bad = {
        "id": "bad-1",
        "inputs": [{"name": "INPUT0", "datatype": "FP32", "shape": [1, 4], "data": [1, 2, 3, 4]}],
    }
    assert _post(f"http://{live.url}/v2/models/ident/infer", bad) == 400
    failing = {
        "id": "fail-1",
        "inputs": [{"name": "x", "datatype": "FP32", "shape": [2, 4], "data": list(range(8))}],
    }
    assert _post(f"http://{live.url}/v2/models/failing/infer", failing) >= 500
    half = httpclient.InferInput("INPUT0", [1, 3], "FP16")
    half.set_data_from_numpy(np.array([[0.5, -1, 2]], np.float16), binary_data=True)
    http.infer("half", [half], request_id="half-1")
    words = httpclient.InferInput("INPUT0", [1, 2], "BYTES")
    words.set_data_from_numpy(np.array([[b"alice", b"bob"]], dtype=object), binary_data=True)
    http.infer("hashed", [words], request_id="hash-1")
    for i in range(200):
        tensor = grpcclient.InferInput("INPUT0", [1, 3], "FP32")
        tensor.set_data_from_numpy(np.full((1, 3), i, np.float32))
        grpc.infer("sampled", [tensor], request_id=f"s{i}")


@pytest.fixture(scope="module")
def captured(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("capture")
    cap = root / "cap"
    built = {
        "ident": models.identity("FP32"),
        "half": models.identity("FP16"),
        "hashed": models.identity("BYTES", 2),
        "sampled": models.identity("FP32"),
        "failing": models.failing(),
    }
    configs = {
        "ident": _capture(cap, capture_errors=True),
        "half": _capture(cap),
        "hashed": _capture(cap, hash_columns=["INPUT0"], columns_deny=["OUTPUT0"]),
        "sampled": _capture(cap, sample_rate=0.3, include_outputs=False),
        "failing": "[runtime]\nwarmup = false\n" + _capture(cap, capture_errors=True),
    }
    repo = models.write_repository(root / "repo", built, configs)
    with LiveServer(repo, capture_hash_key=HASH_KEY) as live:
        _traffic(live)
    return cap


def _rows(cap: Path, model: str) -> dict[str, dict[str, Any]]:
    table = ds.dataset(cap / f"model={model}", format="parquet", partitioning="hive").to_table()
    return {row["request_id"]: row for row in table.to_pylist()}


def test_json_binary_and_grpc_requests_become_typed_rows(captured: Path) -> None:
    rows = _rows(captured, "ident")
    assert rows["json-1"]["INPUT0"] == [[0, 1, 2], [3, 4, 5]]
    assert rows["bin-1"]["OUTPUT0"] == [[0, 1, 2], [3, 4, 5]]
    assert rows["grpc-1"]["INPUT0"] == [[7, 7, 7]]
    assert {rows[r]["status"] for r in ("json-1", "bin-1", "grpc-1")} == {"ok"}
    schema = ds.dataset(captured / "model=ident", format="parquet").schema
    assert schema.field("INPUT0").type == pa.list_(pa.list_(pa.float32(), 3))
    assert schema.field("time").type == pa.timestamp("us", tz="UTC")


def test_rejected_and_failed_requests_carry_their_error_class(captured: Path) -> None:
    bad = _rows(captured, "ident")["bad-1"]
    assert bad["status"] == "InvalidInput" and "shape" in bad["error"]
    assert bad["INPUT0"] is None  # it did not fit the model's input
    failed = _rows(captured, "failing")["fail-1"]
    assert failed["status"] == "ModelFailed"
    assert failed["x"] == [list(range(4)), list(range(4, 8))]
    assert failed["y"] is None


def test_fp16_keeps_its_type(captured: Path) -> None:
    table = ds.dataset(captured / "model=half", format="parquet").to_table()
    assert table.schema.field("INPUT0").type == pa.list_(pa.list_(pa.float16(), 3))
    values = table.column("INPUT0").combine_chunks().flatten().flatten()
    assert values.to_numpy().tolist() == [0.5, -1, 2]


def test_hash_columns_store_a_keyed_hash_and_denied_columns_are_absent(captured: Path) -> None:
    row = _rows(captured, "hashed")["hash-1"]
    digest = [
        hashlib.blake2b(v, key=HASH_KEY.encode(), digest_size=16).hexdigest()
        for v in (b"alice", b"bob")
    ]
    assert row["INPUT0"] == [digest]
    assert "OUTPUT0" not in row


def test_sampling_is_deterministic_by_request_id(captured: Path) -> None:
    def point(rid: str) -> float:
        return int.from_bytes(hashlib.blake2b(rid.encode(), digest_size=8).digest()) / 2**64

    expected = {f"s{i}" for i in range(200) if point(f"s{i}") < 0.3}
    rows = _rows(captured, "sampled")
    assert set(rows) == expected
    assert 30 < len(expected) < 90
    assert all(rows[r]["INPUT0"] == [[int(r[1:])] * 3] for r in rows)
    assert "OUTPUT0" not in next(iter(rows.values()))


def test_files_are_committed_under_partitions_with_no_temporaries(captured: Path) -> None:
    files = sorted(p.relative_to(captured) for p in captured.rglob("*") if p.is_file())
    assert files and all(p.suffix == ".parquet" and p.name.startswith("part-") for p in files)
    parts = files[0].parts
    assert parts[0].startswith("model=") and parts[1] == "version=1"
    assert parts[2].startswith("date=") and parts[3].startswith("hour=")


def test_unwritable_path_fails_the_load_unless_not_required(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    configs = {
        "strict": _capture(blocker / "cap"),
        "lenient": _capture(blocker / "cap", required=False),
    }
    built = {"strict": models.identity("FP32"), "lenient": models.identity("FP32")}
    repo = models.write_repository(tmp_path / "repo", built, configs)
    with LiveServer(repo) as live:
        states = {e.name: e for e in live.engine.index()}
    assert states["strict"].state == "UNAVAILABLE"
    assert "model 'strict' [capture] path" in states["strict"].reason
    assert states["lenient"].state == "READY"


def test_a_reloaded_model_keeps_capturing_and_commits_the_old_file(tmp_path: Path) -> None:
    cap = tmp_path / "cap"
    repo = models.write_repository(
        tmp_path / "repo", {"m": models.identity("FP32")}, {"m": _capture(cap)}
    )
    body = {"inputs": [{"name": "INPUT0", "datatype": "FP32", "shape": [1, 3], "data": [1, 2, 3]}]}
    with LiveServer(repo, model_control=True) as live:
        url = f"http://{live.url}/v2/models/m/infer"
        assert _post(url, {**body, "id": "before"}) == 200
        assert _post(f"http://{live.url}/v2/repository/models/m/load", {}) == 200
        assert _post(url, {**body, "id": "after"}) == 200
    assert set(_rows(cap, "m")) == {"before", "after"}
    assert len(list(cap.rglob("*.parquet"))) == 2  # the old version's file, then the new one's


def test_sluice_drift_refuses_a_capture_root_of_several_models(
    captured: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from server.cli import main
    from server.monitoring.baseline import BaselineOptions, build_baseline, save_baseline

    baseline = tmp_path / "b.npz"
    save_baseline(build_baseline(pa.table({"a": [1.0, 2.0]}), BaselineOptions()), baseline)
    assert main(["drift", str(baseline), str(captured)]) == 2
    assert "model versions; point at PATH/model=M/version=V" in capsys.readouterr().err
