"""ModelInfer through tritonclient.grpc: every datatype, ids, requested outputs, concurrency."""

from __future__ import annotations

import concurrent.futures

import ml_dtypes
import numpy as np
import pytest
import tritonclient.grpc as triton

from tests.models import ONNX_TYPES

# What tritonclient sends for each datatype (BF16: ml_dtypes.bfloat16, as tritonclient 2.73
# requires; it used to take float32 and truncate).
NUMPY = {
    "BOOL": np.bool_,
    "UINT8": np.uint8,
    "UINT16": np.uint16,
    "UINT32": np.uint32,
    "UINT64": np.uint64,
    "INT8": np.int8,
    "INT16": np.int16,
    "INT32": np.int32,
    "INT64": np.int64,
    "FP16": np.float16,
    "BF16": ml_dtypes.bfloat16,
    "FP32": np.float32,
    "FP64": np.float64,
    "BYTES": np.object_,
}


def sample(datatype: str, rows: int = 2) -> np.ndarray:
    if datatype == "BYTES":
        words = [b"alpha", b"", "caf\u00e9".encode(), b"delta", b"e", b"ffff"]
        return np.array(words[: rows * 3], dtype=object).reshape(rows, 3)
    if datatype == "BOOL":
        return np.array([True, False, True, False, False, True][: rows * 3]).reshape(rows, 3)
    # Small exact values: representable in every type, BF16 included.
    return np.array([1, 2, 3, 0.5, 7, 96][: rows * 3], dtype=NUMPY[datatype]).reshape(rows, 3)


def infer_input(name: str, data: np.ndarray, datatype: str) -> triton.InferInput:
    tensor = triton.InferInput(name, list(data.shape), datatype)
    return tensor.set_data_from_numpy(data)


@pytest.mark.parametrize("datatype", list(ONNX_TYPES))
def test_every_datatype_round_trips(client: triton.InferenceServerClient, datatype: str) -> None:
    data = sample(datatype)
    result = client.infer(f"identity_{datatype.lower()}", [infer_input("INPUT0", data, datatype)])
    out = result.as_numpy("OUTPUT0")
    assert result.get_output("OUTPUT0").datatype == datatype
    assert out.shape == data.shape
    np.testing.assert_array_equal(out, data)


def test_request_id_is_echoed(client: triton.InferenceServerClient) -> None:
    data = sample("FP32")
    result = client.infer(
        "identity_fp32", [infer_input("INPUT0", data, "FP32")], request_id="req-42"
    )
    response = result.get_response()
    assert response.id == "req-42"
    assert response.model_name == "identity_fp32"
    assert response.model_version == "1"


def test_requested_outputs_are_honoured(client: triton.InferenceServerClient) -> None:
    a = np.arange(8, dtype=np.float32).reshape(2, 4)
    b = np.ones((2, 4), dtype=np.float32)
    inputs = [infer_input("INPUT0", a, "FP32"), infer_input("INPUT1", b, "FP32")]
    only_diff = client.infer("add_sub", inputs, outputs=[triton.InferRequestedOutput("OUTPUT1")])
    assert [o.name for o in only_diff.get_response().outputs] == ["OUTPUT1"]
    np.testing.assert_array_equal(only_diff.as_numpy("OUTPUT1"), a - b)
    both = client.infer("add_sub", inputs)
    np.testing.assert_array_equal(both.as_numpy("OUTPUT0"), a + b)
    np.testing.assert_array_equal(both.as_numpy("OUTPUT1"), a - b)


def test_concurrent_calls_keep_their_rows(client: triton.InferenceServerClient) -> None:
    def call(i: int) -> tuple[np.ndarray, np.ndarray]:
        rows = 1 + i % 4
        data = (i * 100 + np.arange(rows * 3, dtype=np.float32)).reshape(rows, 3)
        result = client.infer("identity_fp32", [infer_input("INPUT0", data, "FP32")])
        return data, result.as_numpy("OUTPUT0")

    with concurrent.futures.ThreadPoolExecutor(16) as pool:
        for sent, got in pool.map(call, range(200)):
            np.testing.assert_array_equal(got, sent)


def test_priority_and_timeout_parameters_are_accepted(
    client: triton.InferenceServerClient,
) -> None:
    data = sample("FP32")
    inputs = [infer_input("INPUT0", data, "FP32")]
    result = client.infer("identity_fp32", inputs, priority=1, timeout=5_000_000)
    np.testing.assert_array_equal(result.as_numpy("OUTPUT0"), data)
