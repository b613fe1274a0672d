"""Bad input, overload and failures: the right status, an error body, and a server that
keeps answering."""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

from tests.live import LiveServer

GOOD = {"inputs": [{"name": "input", "shape": [1, 16], "datatype": "FP32", "data": [0.5] * 16}]}


def post(
    server: LiveServer, path: str, body: bytes, headers: dict[str, str] | None = None
) -> tuple[int, dict]:
    req = urllib.request.Request(
        f"http://{server.url}{path}", data=body, headers=headers or {}, method="POST"
    )
    try:
        with urllib.request.urlopen(req, timeout=30) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        with exc:
            return exc.code, json.loads(exc.read())


def infer(server: LiveServer, body: object, model: str = "mlp") -> tuple[int, dict]:
    return post(server, f"/v2/models/{model}/infer", json.dumps(body).encode())


def with_input(**changes: object) -> dict:
    return {"inputs": [{**GOOD["inputs"][0], **changes}]}


def assert_still_serving(server: LiveServer) -> None:
    status, body = infer(server, GOOD)
    assert status == 200 and body["outputs"][0]["shape"] == [1, 4]


@pytest.mark.parametrize(
    ("body", "fragment"),
    [
        (b"{not json", "malformed JSON"),
        (b"[1, 2]", "JSON object"),
        (b'{"inputs": []}', "non-empty 'inputs'"),
    ],
)
def test_malformed_bodies_are_400(server: LiveServer, body: bytes, fragment: str) -> None:
    status, err = post(server, "/v2/models/mlp/infer", body)
    assert status == 400 and fragment in err["error"]
    assert_still_serving(server)


@pytest.mark.parametrize(
    ("body", "fragment"),
    [
        (with_input(shape=[1, 15], data=[0.5] * 15), "expects [-1, 16]"),
        (with_input(shape=[1, 16], data=[0.5] * 15), "needs 16 elements, data has 15"),
        (with_input(datatype="FP64"), "expects FP32"),
        (with_input(datatype="FLOAT"), "unknown datatype"),
        (with_input(name="nope"), "has no input 'nope'"),
        (with_input(data=["a"] * 16), "does not fit FP32"),
        (with_input(shape=[1, -16]), "non-negative integers"),
        ({"inputs": GOOD["inputs"] * 2}, "more than once"),
        ({**GOOD, "outputs": [{"name": "nope"}]}, "has no output 'nope'"),
    ],
)
def test_bad_inputs_are_400(server: LiveServer, body: object, fragment: str) -> None:
    status, err = infer(server, body)
    assert status == 400, err
    assert fragment in err["error"]
    assert_still_serving(server)


def test_missing_input_is_400(server: LiveServer) -> None:
    status, err = infer(
        server,
        {"inputs": [GOOD["inputs"][0] | {"name": "INPUT0", "shape": [1, 4], "data": [1] * 4}]},
        "add_sub",
    )
    assert status == 400 and "missing input(s): INPUT1" in err["error"]


@pytest.mark.parametrize(
    ("header", "size", "fragment"),
    [
        ("9999", 64, "Inference-Header-Content-Length is 9999"),
        ("abc", 64, "not an integer"),
        (None, 60, "binary_data_size"),
        (None, 68, "declare"),
    ],
)
def test_bad_binary_bodies_are_400(
    server: LiveServer, header: str | None, size: int, fragment: str
) -> None:
    meta = json.dumps(
        {
            "inputs": [
                {
                    "name": "input",
                    "shape": [1, 16],
                    "datatype": "FP32",
                    "parameters": {"binary_data_size": size},
                }
            ]
        }
    ).encode()
    raw = np.zeros(16, np.float32).tobytes()
    length = header if header is not None else str(len(meta))
    body = meta + raw + (b"\0" * max(0, size - 64) if size > 68 else b"")
    if size == 68:
        body = meta + raw + b"\0\0\0\0"
        meta_fixed = meta.replace(b"68", b"64")
        body, length = meta_fixed + raw + b"\0\0\0\0", str(len(meta_fixed))
    status, err = post(
        server, "/v2/models/mlp/infer", body, {"Inference-Header-Content-Length": length}
    )
    assert status == 400, err
    assert fragment in err["error"]
    assert_still_serving(server)


def test_oversized_body_is_413(server: LiveServer) -> None:
    body = json.dumps(with_input(shape=[20000, 16], data=[0.5] * 320000)).encode()
    assert len(body) > server.settings.max_request_bytes
    status, err = post(server, "/v2/models/mlp/infer", body)
    assert status == 413 and "over the limit" in err["error"]
    assert_still_serving(server)


def test_unknown_model_and_version_are_404(server: LiveServer) -> None:
    status, err = infer(server, GOOD, "nope")
    assert status == 404 and "unknown model 'nope'" in err["error"]
    status, err = post(server, "/v2/models/mlp/versions/7/infer", json.dumps(GOOD).encode())
    assert status == 404 and "no loaded version '7'" in err["error"]
    with pytest.raises(urllib.error.HTTPError) as exc:
        urllib.request.urlopen(f"http://{server.url}/v2/models/nope")
    exc.value.close()
    assert exc.value.code == 404


def test_too_many_rows_for_the_batch_is_400(server: LiveServer) -> None:
    status, err = infer(server, with_input(shape=[65, 16], data=[0.5] * 65 * 16))
    assert status == 400 and "max_batch_size" in err["error"]


def test_model_failing_at_run_time_is_500_and_harms_nothing_else(server: LiveServer) -> None:
    body = {"inputs": [{"name": "x", "shape": [1, 4], "datatype": "FP32", "data": [1] * 4}]}
    status, err = infer(server, body, "failing")
    assert status == 500 and "cannot be reshaped" in err["error"]
    ok = {"inputs": [{"name": "x", "shape": [3, 4], "datatype": "FP32", "data": [1] * 12}]}
    status, good = infer(server, ok, "failing")
    assert status == 200 and good["outputs"][0]["shape"] == [4, 3]
    assert_still_serving(server)


def _slow_body(rows: int, timeout_us: int = 0) -> bytes:
    body: dict = {
        "inputs": [
            {"name": "x", "shape": [rows, 512], "datatype": "FP32", "data": [0.1] * (rows * 512)}
        ]
    }
    if timeout_us:
        body["parameters"] = {"timeout": timeout_us}
    return json.dumps(body).encode()


def test_full_queue_is_503_and_accepted_requests_finish(server: LiveServer) -> None:
    # The slow model queues at most 2 requests; one 64-row batch takes tens of ms.
    body = _slow_body(64)
    with ThreadPoolExecutor(16) as pool:
        results = list(pool.map(lambda _: post(server, "/v2/models/slow/infer", body), range(16)))
    statuses = sorted(status for status, _ in results)
    assert 503 in statuses and 200 in statuses
    assert set(statuses) <= {200, 503}
    assert any("queue is full" in body.get("error", "") for _, body in results)


def test_request_timeout_in_queue_is_504(server: LiveServer) -> None:
    batcher = server.engine.get("slow").batcher
    with ThreadPoolExecutor(2) as pool:
        busy = pool.submit(post, server, "/v2/models/slow/infer", _slow_body(64))
        deadline = time.monotonic() + 10
        while batcher.running == 0 and time.monotonic() < deadline:
            time.sleep(0.0005)
        status, err = post(server, "/v2/models/slow/infer", _slow_body(1, timeout_us=1000))
        assert busy.result()[0] == 200
    assert status == 504, err
    assert "timed out" in err["error"]


def test_request_of_a_client_that_went_away_is_dropped_before_running(server: LiveServer) -> None:
    import socket

    batcher = server.engine.get("slow").batcher
    registry = server.engine.metrics.registry
    labels = {"model": "slow", "version": "1", "reason": "Cancelled"}
    failures = "sluice_inference_request_failure_total"
    cancelled = registry.get_sample_value(failures, labels) or 0.0
    host, port = server.url.split(":")
    body = _slow_body(7)
    head = (
        f"POST /v2/models/slow/infer HTTP/1.1\r\nHost: x\r\nContent-Length: {len(body)}\r\n\r\n"
    ).encode()
    with ThreadPoolExecutor(1) as pool:
        busy = pool.submit(post, server, "/v2/models/slow/infer", _slow_body(64))
        deadline = time.monotonic() + 10
        while batcher.running == 0 and time.monotonic() < deadline:
            time.sleep(0.0005)
        with socket.create_connection((host, int(port))) as sock:
            sock.sendall(head + body)
            while batcher.queued == 0 and time.monotonic() < deadline:
                time.sleep(0.0005)
        assert busy.result()[0] == 200
    assert_still_serving(server)
    sizes = {b["batch_size"] for b in server.engine.statistics("slow")[0]["batch_stats"]}
    assert 7 not in sizes
    assert registry.get_sample_value(failures, labels) == cancelled + 1


def test_control_routes_answer_errors_as_json(server: LiveServer) -> None:
    status, err = post(server, "/v2/repository/index", b"{nope")
    assert status == 400 and "malformed JSON" in err["error"]
    status, err = post(server, "/v2/repository/models/nope/load", b"")
    assert status == 404 and "nope" in err["error"]
    with pytest.raises(urllib.error.HTTPError) as exc:
        urllib.request.urlopen(f"http://{server.url}/v2/models/nope/ready")
    with exc.value:
        assert exc.value.code == 404 and "unknown model" in json.loads(exc.value.read())["error"]
