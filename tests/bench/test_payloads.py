"""Payloads: every datatype encodes to what the protocol says, checked by decoding it back."""

from __future__ import annotations

import json

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from server.bench import BenchConfig
from server.bench.http1 import _answer_length, body_of
from server.bench.model import ModelInfo, resolve_shapes
from server.bench.parquet import parquet_inputs
from server.bench.payloads import encode, random_inputs
from server.errors import ConfigError, InvalidInput
from server.grpc.generated import inference_pb2 as pb
from server.tensors import DTYPES, TensorSpec

DATATYPES = [d for d in DTYPES if d not in ("BYTES", "BF16")]


def info(*specs: TensorSpec) -> ModelInfo:
    return ModelInfo("m", "", specs, ())


def config(**fields: object) -> BenchConfig:
    return BenchConfig(url="127.0.0.1:1", model="m", **fields)  # type: ignore[arg-type]


@pytest.mark.parametrize("datatype", [*DATATYPES, "BYTES", "BF16"])
def test_binary_and_grpc_carry_the_values(datatype: str) -> None:
    model = info(TensorSpec("x", datatype, (-1, 3)))
    inputs = random_inputs(model, {"x": (2, 3)}, seed=1)
    want = inputs["x"]
    _head_len, raw = _binary_parts(encode(config(binary=True), model, inputs))
    message = pb.ModelInferRequest.FromString(encode(config(protocol="grpc"), model, inputs).body)
    assert list(message.inputs[0].shape) == [2, 3] and message.inputs[0].datatype == datatype
    for blob in (raw, message.raw_input_contents[0]):
        if datatype == "BYTES":
            items, pos = [], 0
            while pos < len(blob):
                size = int.from_bytes(blob[pos : pos + 4], "little")
                items.append(blob[pos + 4 : pos + 4 + size])
                pos += 4 + size
            assert items == list(want.ravel())
        else:
            got = np.frombuffer(blob, dtype=DTYPES[datatype].newbyteorder("<")).reshape(2, 3)
            np.testing.assert_array_equal(got, want)


def _binary_parts(payload: object) -> tuple[int, bytes]:
    headers = dict(payload.headers)  # type: ignore[attr-defined]
    size = int(headers["Inference-Header-Content-Length"])
    body: bytes = payload.body  # type: ignore[attr-defined]
    head = json.loads(body[:size])
    assert head["inputs"][0]["parameters"]["binary_data_size"] == len(body) - size
    return size, body[size:]


@pytest.mark.parametrize("datatype", [*[d for d in DATATYPES if d != "FP16"], "BYTES"])
def test_json_carries_the_values(datatype: str) -> None:
    model = info(TensorSpec("x", datatype, (-1, 2)))
    inputs = random_inputs(model, {"x": (3, 2)}, seed=2)
    doc = json.loads(encode(config(), model, inputs).body)
    (tensor,) = doc["inputs"]
    assert tensor["shape"] == [3, 2] and tensor["datatype"] == datatype
    want = inputs["x"].ravel()
    if datatype == "BYTES":
        assert tensor["data"] == [x.decode() for x in want]
    else:
        np.testing.assert_allclose(np.asarray(tensor["data"], dtype=want.dtype), want, rtol=1e-6)


def test_dynamic_dimensions_need_a_shape() -> None:
    model = info(TensorSpec("x", "FP32", (-1, -1)))
    with pytest.raises(InvalidInput, match="--shape x="):
        resolve_shapes(model, 4, {})
    assert resolve_shapes(model, 4, {"x": (4, 7)}) == {"x": (4, 7)}
    assert resolve_shapes(info(TensorSpec("x", "FP32", (2, 3))), 4, {}) == {"x": (2, 3)}
    with pytest.raises(InvalidInput, match="no input 'y'"):
        resolve_shapes(model, 4, {"y": (1,)})


def test_parquet_named_columns(tmp_path: object) -> None:
    path = tmp_path / "d.parquet"  # type: ignore[operator]
    tensor = pa.FixedSizeListArray.from_arrays(pa.array(np.arange(12, dtype=np.float32)), 2)
    pq.write_table(pa.table({"t": tensor, "s": ["a", "bb", "c", "d", "e", "f"],
                             "k": np.arange(6)}), path)  # fmt: skip
    model = info(TensorSpec("t", "FP32", (-1, 2)), TensorSpec("s", "BYTES", (-1, 1)),
                 TensorSpec("k", "INT64", (-1,)))  # fmt: skip
    batches = list(parquet_inputs(path, model, 4, None))
    assert len(batches) == 1  # 6 rows: one full request of 4, the tail dropped
    np.testing.assert_array_equal(batches[0]["t"], np.arange(8, dtype=np.float32).reshape(4, 2))
    assert batches[0]["s"].shape == (4, 1) and batches[0]["s"][1, 0] == b"bb"
    np.testing.assert_array_equal(batches[0]["k"], np.arange(4))


def test_parquet_feature_columns(tmp_path: object) -> None:
    path = tmp_path / "d.parquet"  # type: ignore[operator]
    pq.write_table(pa.table({"id": ["x"] * 4, "a": [1.0, 2, 3, 4], "b": [5, 6, 7, 8]}), path)
    model = info(TensorSpec("input", "FP32", (-1, 2)))
    (first, second) = parquet_inputs(path, model, 2, None)
    np.testing.assert_array_equal(first["input"], np.array([[1, 5], [2, 6]], dtype=np.float32))
    assert second["input"].dtype == np.float32
    with pytest.raises(ConfigError, match="column 'zz' is not in the input"):
        list(parquet_inputs(path, model, 2, ["a", "zz"]))
    with pytest.raises(ConfigError, match="takes 3 features"):
        list(parquet_inputs(path, info(TensorSpec("input", "FP32", (-1, 3))), 2, None))
    with pytest.raises(ConfigError, match="cannot cast float64 to INT32"):
        list(parquet_inputs(path, info(TensorSpec("input", "INT32", (-1, 2))), 2, None))
    with pytest.raises(ConfigError, match="fewer than --rows"):
        list(parquet_inputs(path, model, 5, None))


def test_parquet_nulls_and_non_parquet(tmp_path: object) -> None:
    path = tmp_path / "d.parquet"  # type: ignore[operator]
    pq.write_table(pa.table({"input": pa.array([1.0, None])}), path)
    with pytest.raises(ConfigError, match="null values"):
        list(parquet_inputs(path, info(TensorSpec("input", "FP32", (-1,))), 1, None))
    text = tmp_path / "d.txt"  # type: ignore[operator]
    text.write_text("not parquet")
    with pytest.raises(ConfigError, match="not a readable Parquet file"):
        list(parquet_inputs(text, info(TensorSpec("input", "FP32", (-1,))), 1, None))


def test_http_answers_fixed_and_chunked() -> None:
    fixed = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello"
    assert _answer_length(fixed + b"HTTP/1.1") == len(fixed)
    assert _answer_length(fixed[:-1]) == len(fixed)  # size known before the body is whole
    assert _answer_length(fixed[:20]) == -1
    chunked = (
        b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n"
    )
    assert _answer_length(chunked) == len(chunked)
    assert _answer_length(chunked[:-2]) == -1
    assert body_of(chunked) == ({"transfer-encoding": "chunked"}, b"abcde")
