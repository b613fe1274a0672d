"""The Open Inference Protocol over HTTP, driven by Triton's own client."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import ml_dtypes
import numpy as np
import pytest
import tritonclient.http as httpclient
from tritonclient.utils import InferenceServerException, np_to_triton_dtype

from tests.conftest import DATATYPES
from tests.live import LiveServer


def _sample(datatype: str, rows: int = 2) -> np.ndarray:
    rng = np.random.default_rng(7)
    if datatype == "BYTES":
        return np.array([[f"r{r}c{c}é".encode() for c in range(3)] for r in range(rows)], object)
    if datatype == "BOOL":
        return rng.integers(0, 2, (rows, 3)).astype(bool)
    dtype = {"FP16": np.float16, "FP32": np.float32, "FP64": np.float64}.get(datatype)
    if dtype is not None:
        return rng.standard_normal((rows, 3)).astype(dtype)
    info = np.iinfo(datatype.lower())
    return rng.integers(info.min, info.max, (rows, 3), dtype=datatype.lower(), endpoint=True)


def _infer(client: httpclient.InferenceServerClient, datatype: str, binary: bool) -> np.ndarray:
    data = _sample(datatype)
    inp = httpclient.InferInput("INPUT0", list(data.shape), datatype)
    inp.set_data_from_numpy(data, binary_data=binary)
    out = httpclient.InferRequestedOutput("OUTPUT0", binary_data=binary)
    result = client.infer(f"identity_{datatype.lower()}", [inp], outputs=[out], request_id="r-1")
    assert result.get_response()["id"] == "r-1"
    return result.as_numpy("OUTPUT0")


@pytest.mark.parametrize("datatype", [d for d in DATATYPES if d not in ("FP16", "BF16")])
def test_every_datatype_in_json(server: LiveServer, datatype: str) -> None:
    client = httpclient.InferenceServerClient(server.url)
    got = _infer(client, datatype, binary=False)
    want = _sample(datatype)
    if datatype == "BYTES":  # JSON carries text; tritonclient hands it back as str
        want = np.vectorize(bytes.decode, otypes=[object])(want)
    np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize("datatype", [d for d in DATATYPES if d != "BF16"])
def test_every_datatype_in_binary(server: LiveServer, datatype: str) -> None:
    client = httpclient.InferenceServerClient(server.url)
    got = _infer(client, datatype, binary=True)
    np.testing.assert_array_equal(got, _sample(datatype))


def test_bf16_round_trips(server: LiveServer) -> None:
    client = httpclient.InferenceServerClient(server.url)
    data = np.array([[1.0, -2.5, 0.15625], [3.0, 1e-3, -7.75]], ml_dtypes.bfloat16)
    inp = httpclient.InferInput("INPUT0", [2, 3], "BF16")
    inp.set_data_from_numpy(data, binary_data=True)
    result = client.infer("identity_bf16", [inp])
    assert result.get_output("OUTPUT0")["datatype"] == "BF16"
    np.testing.assert_array_equal(result.as_numpy("OUTPUT0"), data)


def test_fp16_in_json_is_refused_with_a_reason(server: LiveServer) -> None:
    client = httpclient.InferenceServerClient(server.url)
    status, body = _post(
        server,
        "identity_fp16",
        {"inputs": [{"name": "INPUT0", "shape": [1, 3], "datatype": "FP16", "data": [1, 2, 3]}]},
    )
    assert status == 400 and "binary" in body["error"]
    assert client.is_server_live()


def test_two_inputs_and_requested_outputs(server: LiveServer) -> None:
    client = httpclient.InferenceServerClient(server.url)
    a = np.arange(8, dtype=np.float32).reshape(2, 4)
    b = np.ones((2, 4), np.float32)
    inputs = [
        httpclient.InferInput("INPUT0", [2, 4], "FP32"),
        httpclient.InferInput("INPUT1", [2, 4], "FP32"),
    ]
    inputs[0].set_data_from_numpy(a)
    inputs[1].set_data_from_numpy(b, binary_data=False)
    result = client.infer("add_sub", inputs, outputs=[httpclient.InferRequestedOutput("OUTPUT1")])
    np.testing.assert_array_equal(result.as_numpy("OUTPUT1"), a - b)
    assert result.as_numpy("OUTPUT0") is None


def test_metadata_config_and_readiness(server: LiveServer) -> None:
    client = httpclient.InferenceServerClient(server.url)
    assert client.is_server_live() and client.is_server_ready()
    assert client.is_model_ready("mlp") and client.is_model_ready("mlp", "1")
    meta = client.get_model_metadata("mlp")
    assert meta["inputs"] == [{"name": "input", "datatype": "FP32", "shape": [-1, 16]}]
    assert client.get_model_metadata("mlp", "1")["versions"] == ["1"]
    config = client.get_model_config("mlp")
    assert config["max_batch_size"] == 64 and config["input"][0]["dims"] == [16]
    assert client.get_model_config("fixed")["max_batch_size"] == 0
    server_meta = client.get_server_metadata()
    assert server_meta["name"] == "sluice" and "binary_tensor_data" in server_meta["extensions"]


def test_fixed_first_dimension_is_served_without_batching(server: LiveServer) -> None:
    client = httpclient.InferenceServerClient(server.url)
    x = np.arange(6, dtype=np.float32).reshape(2, 3)
    inp = httpclient.InferInput("x", [2, 3], "FP32")
    inp.set_data_from_numpy(x)
    np.testing.assert_array_equal(client.infer("fixed", [inp]).as_numpy("y"), -x)


def test_concurrent_requests_get_their_own_rows_and_batch(server: LiveServer) -> None:
    before = server.engine.statistics("mlp")[0]
    weights = np.random.default_rng(0).standard_normal((400, 16)).astype(np.float32)

    def call(i: int) -> tuple[int, np.ndarray]:
        client = httpclient.InferenceServerClient(server.url)
        rows = weights[i : i + 1 + i % 3]
        inp = httpclient.InferInput("input", list(rows.shape), "FP32")
        inp.set_data_from_numpy(rows, binary_data=i % 2 == 0)
        return i, client.infer("mlp", [inp], request_id=str(i)).as_numpy("output")

    with ThreadPoolExecutor(32) as pool:
        results = list(pool.map(call, range(300)))
    import onnxruntime as ort

    session = ort.InferenceSession(str(server.engine.get("mlp").source.path))
    for i, got in results:
        rows = weights[i : i + 1 + i % 3]
        np.testing.assert_allclose(got, session.run(None, {"input": rows})[0], rtol=1e-5, atol=1e-6)
    after = server.engine.statistics("mlp")[0]
    executions = after["execution_count"] - before["execution_count"]
    assert executions < 300, "requests under concurrency should share batches"
    assert max(b["batch_size"] for b in after["batch_stats"]) > 3


def test_statistics_and_metrics_show_batches(server: LiveServer) -> None:
    client = httpclient.InferenceServerClient(server.url)
    inp = httpclient.InferInput("input", [1, 16], "FP32")
    inp.set_data_from_numpy(np.zeros((1, 16), np.float32))
    client.infer("mlp", [inp])
    stats = client.get_inference_statistics("mlp")["model_stats"][0]
    assert stats["inference_stats"]["success"]["count"] >= 1
    import urllib.request

    text = urllib.request.urlopen(f"http://{server.url}/metrics").read().decode()
    assert 'sluice_inference_request_success_total{model="mlp",version="1"}' in text
    assert 'sluice_batch_size_bucket{le="64.0",model="mlp",version="1"}' in text
    assert "sluice_queue_duration_us_bucket" in text and "process_resident_memory_bytes" in text
    assert 'sluice_model_loaded{model="mlp",version="1"} 1.0' in text


def test_repository_index_unload_and_load(server: LiveServer) -> None:
    client = httpclient.InferenceServerClient(server.url)
    index = {m["name"]: m for m in client.get_model_repository_index()}
    assert index["identity_int8"]["state"] == "READY"
    client.unload_model("identity_int8")
    assert not client.is_model_ready("identity_int8")
    inp = httpclient.InferInput("INPUT0", [1, 3], "INT8")
    inp.set_data_from_numpy(np.zeros((1, 3), np.int8))
    with pytest.raises(InferenceServerException) as err:
        client.infer("identity_int8", [inp])
    assert err.value.status() == "503"
    states = {m["name"]: m["state"] for m in client.get_model_repository_index()}
    assert states["identity_int8"] == "UNAVAILABLE"
    client.load_model("identity_int8")
    assert client.is_model_ready("identity_int8")
    np.testing.assert_array_equal(client.infer("identity_int8", [inp]).as_numpy("OUTPUT0"), 0)


def _post(
    server: LiveServer,
    model: str,
    body: object,
    raw: bytes | None = None,
    headers: dict | None = None,
) -> tuple[int, dict]:
    import json
    import urllib.error
    import urllib.request

    data = raw if raw is not None else json.dumps(body).encode()
    req = urllib.request.Request(
        f"http://{server.url}/v2/models/{model}/infer",
        data=data,
        headers=headers or {},
        method="POST",
    )
    try:
        with urllib.request.urlopen(req) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        with exc:
            return exc.code, json.loads(exc.read())


def test_np_to_triton_dtype_agrees_with_ours() -> None:
    from server.tensors import datatype_of

    for dtype in (np.float32, np.int64, np.bool_, np.uint8, np.float16, np.object_):
        assert datatype_of(np.dtype(dtype)) == np_to_triton_dtype(np.dtype(dtype))
