"""The JSON codec on its own: every shape of data the protocol allows, and its refusals."""

from __future__ import annotations

import json

import numpy as np
import pytest

from server.codecs.json import decode_request, encode_bytes_tensor, encode_response
from server.engine.requests import InferResponse
from server.errors import InvalidInput
from server.tensors import Tensor


def decode(inputs: list[dict], **extra: object) -> list[Tensor]:
    body = json.dumps({"inputs": inputs, **extra}).encode()
    return decode_request("m", "", body)[0].inputs


def one(datatype: str, shape: list[int], data: object) -> np.ndarray:
    return decode([{"name": "x", "datatype": datatype, "shape": shape, "data": data}])[0].data


def test_nested_and_flat_data_agree() -> None:
    nested = one("FP32", [2, 2], [[1, 2], [3.5, 4]])
    flat = one("FP32", [2, 2], [1, 2, 3.5, 4])
    np.testing.assert_array_equal(nested, flat)
    assert nested.dtype == np.float32 and nested.shape == (2, 2)


@pytest.mark.parametrize(
    ("datatype", "data", "want"),
    [
        ("INT8", [-128, 127], np.array([-128, 127], np.int8)),
        ("UINT64", [0, 2**64 - 1], np.array([0, 2**64 - 1], np.uint64)),
        ("INT64", [-(2**63), 2**63 - 1], np.array([-(2**63), 2**63 - 1], np.int64)),
        ("FP64", [0.1, 1e300], np.array([0.1, 1e300])),
        ("BOOL", [True, False], np.array([True, False])),
        ("BYTES", ["a", "é"], np.array([b"a", "é".encode()], object)),
    ],
)
def test_values_survive_exactly(datatype: str, data: list, want: np.ndarray) -> None:
    got = one(datatype, [2], data)
    assert got.dtype == want.dtype
    np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize(
    ("datatype", "data", "fragment"),
    [
        ("INT8", [1, 300], "out of range"),
        ("UINT8", [-1, 2], "out of range"),
        ("INT32", [1.5, 2], "fractions given"),
        ("FP32", [3.5e38, 1.0], "out of range for FP32"),  # numpy would make it infinity
        ("BOOL", [1, 0], "true or false"),
        ("FP32", ["a", "b"], "does not fit FP32"),
        ("FP32", [True, False], "booleans"),
        ("FP32", [[1], [2, 3, 4]], "needs 2 elements"),
        ("BYTES", [1, 2], "must be strings"),
        ("FP32", [1, 2, 3], "needs 2 elements, data has 3"),
    ],
)
def test_bad_data_is_named(datatype: str, data: list, fragment: str) -> None:
    with pytest.raises(InvalidInput) as err:
        one(datatype, [2], data)
    assert fragment in err.value.message


def test_parameters_outputs_and_id() -> None:
    body = {
        "id": "abc",
        "parameters": {"binary_data_output": True, "timeout": 5000, "priority": 2},
        "inputs": [{"name": "x", "datatype": "FP32", "shape": [1], "data": [1]}],
        "outputs": [{"name": "y", "parameters": {"binary_data": False}}, {"name": "z"}],
    }
    request, wants_binary = decode_request("m", "2", json.dumps(body).encode())
    assert (request.id, request.version, request.outputs) == ("abc", "2", ("y", "z"))
    assert (request.timeout_us, request.priority) == (5000, 2)
    assert wants_binary == {"": True, "y": False}


def test_binary_inputs_are_views_on_the_body() -> None:
    raw = np.arange(4, dtype=np.float32).tobytes()
    strings = encode_bytes_tensor(np.array([b"ab", b""], object))
    header = json.dumps(
        {
            "inputs": [
                {
                    "name": "x",
                    "datatype": "FP32",
                    "shape": [2, 2],
                    "parameters": {"binary_data_size": len(raw)},
                },
                {
                    "name": "s",
                    "datatype": "BYTES",
                    "shape": [2],
                    "parameters": {"binary_data_size": len(strings)},
                },
            ]
        }
    ).encode()
    request, _ = decode_request("m", "", header + raw + strings, len(header))
    x, s = request.inputs
    np.testing.assert_array_equal(x.data, np.arange(4, dtype=np.float32).reshape(2, 2))
    assert not x.data.flags.owndata
    assert s.data.tolist() == [b"ab", b""]


def test_response_mixes_json_and_binary_outputs() -> None:
    response = InferResponse(
        "m",
        "1",
        "r",
        [
            Tensor("a", "FP32", np.ones((1, 2), np.float32)),
            Tensor("h", "FP16", np.zeros(2, np.float16)),
        ],
    )
    body, header_length = encode_response(response, {"": False})
    assert header_length is not None  # FP16 always travels binary
    header = json.loads(body[:header_length])
    assert header["outputs"][0]["data"] == [1.0, 1.0]
    assert header["outputs"][1]["parameters"] == {"binary_data_size": 4}
    assert body[header_length:] == np.zeros(2, np.float16).tobytes()
