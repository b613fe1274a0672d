"""The protobuf ⇄ engine codec on its own: typed contents, raw contents, parameters."""

from __future__ import annotations

import grpc
import numpy as np
import pytest

from server.engine.requests import InferResponse
from server.errors import DeadlineExceeded, InvalidInput
from server.grpc.codec import bytes_from_raw, bytes_to_raw, decode_request, encode_response
from server.grpc.generated import inference_pb2 as pb
from server.grpc.generated import inference_pb2_grpc as pb_grpc
from server.tensors import Tensor

from .conftest import Live

TYPED = [
    ("BOOL", "bool_contents", [True, False]),
    ("INT8", "int_contents", [-128, 127]),
    ("INT16", "int_contents", [-3, 4]),
    ("INT32", "int_contents", [-(2**31), 5]),
    ("INT64", "int64_contents", [-(2**63), 6]),
    ("UINT8", "uint_contents", [0, 255]),
    ("UINT16", "uint_contents", [1, 65535]),
    ("UINT32", "uint_contents", [2, 2**32 - 1]),
    ("UINT64", "uint64_contents", [3, 2**64 - 1]),
    ("FP32", "fp32_contents", [0.5, -1.25]),
    ("FP64", "fp64_contents", [1e300, -2.5]),
    ("BYTES", "bytes_contents", [b"a", b""]),
]


def request(
    datatype: str, shape: list[int], field: str = "", values: object = ()
) -> pb.ModelInferRequest:
    msg = pb.ModelInferRequest(model_name="m", id="7")
    tensor = msg.inputs.add(name="INPUT0", datatype=datatype, shape=shape)
    if field:
        getattr(tensor.contents, field).extend(values)
    return msg


@pytest.mark.parametrize(("datatype", "field", "values"), TYPED)
def test_typed_contents(datatype: str, field: str, values: list[object]) -> None:
    (tensor,) = decode_request(request(datatype, [1, 2], field, values), None).inputs
    assert tensor.datatype == datatype
    assert tensor.data.shape == (1, 2)
    assert tensor.data.ravel().tolist() == values


def test_typed_contents_out_of_range() -> None:
    with pytest.raises(InvalidInput, match="out of range"):
        decode_request(request("INT8", [1], "int_contents", [300]), None)


def test_typed_contents_wrong_count() -> None:
    with pytest.raises(InvalidInput, match="needs 4"):
        decode_request(request("FP32", [2, 2], "fp32_contents", [1.0]), None)


def test_fp16_needs_raw_contents() -> None:
    with pytest.raises(InvalidInput, match="raw_input_contents"):
        decode_request(request("FP16", [1]), None)


def test_unknown_datatype() -> None:
    with pytest.raises(InvalidInput, match="unknown datatype"):
        decode_request(request("FP8", [1]), None)


def test_raw_contents_are_a_view_of_the_request_bytes() -> None:
    msg = request("FP32", [2, 2])
    msg.raw_input_contents.append(np.arange(4, dtype=np.float32).tobytes())
    (tensor,) = decode_request(msg, None).inputs
    assert not tensor.data.flags.owndata
    np.testing.assert_array_equal(tensor.data, [[0, 1], [2, 3]])


def test_raw_contents_of_the_wrong_size() -> None:
    msg = request("FP32", [2, 2])
    msg.raw_input_contents.append(b"\0" * 12)
    with pytest.raises(InvalidInput, match="needs 16"):
        decode_request(msg, None)


def test_raw_contents_for_some_inputs_only() -> None:
    msg = request("FP32", [1])
    msg.inputs.add(name="INPUT1", datatype="FP32", shape=[1])
    msg.raw_input_contents.append(b"\0" * 4)
    with pytest.raises(InvalidInput, match="every input or for none"):
        decode_request(msg, None)


def test_negative_dimension() -> None:
    with pytest.raises(InvalidInput, match="negative"):
        decode_request(request("FP32", [-1, 2], "fp32_contents", [1.0, 2.0]), None)


def test_bytes_round_trip() -> None:
    data = np.array([b"x", b"", "\u00e9t\u00e9".encode()], dtype=object)
    assert list(bytes_from_raw("t", bytes_to_raw(data), 3)) == list(data)
    assert bytes_to_raw(np.array(["\u00e9"], dtype=object)) == b"\x02\x00\x00\x00\xc3\xa9"


@pytest.mark.parametrize("raw", [b"\x05\x00\x00\x00ab", b"\x01\x00", b"\x01\x00\x00\x00a\x00", b""])
def test_malformed_bytes_are_invalid(raw: bytes) -> None:
    with pytest.raises(InvalidInput):
        bytes_from_raw("t", raw, 1 if raw != b"" else 2)


def test_deadline_becomes_the_timeout() -> None:
    msg = request("FP32", [1], "fp32_contents", [1.0])
    assert decode_request(msg, 0.25).timeout_us == 250_000
    assert decode_request(msg, None).timeout_us == 0
    with pytest.raises(DeadlineExceeded):
        decode_request(msg, 0.0)


def test_timeout_and_priority_parameters() -> None:
    msg = request("FP32", [1], "fp32_contents", [1.0])
    msg.parameters["timeout"].int64_param = 1000
    msg.parameters["priority"].uint64_param = 2
    decoded = decode_request(msg, 5.0)
    assert (decoded.timeout_us, decoded.priority) == (1000, 2)
    msg.parameters["priority"].string_param = "high"
    with pytest.raises(InvalidInput, match="priority"):
        decode_request(msg, None)


def test_encode_response() -> None:
    data = np.arange(6, dtype=np.int64).reshape(2, 3)
    msg = encode_response(InferResponse("m", "1", "id-1", [Tensor("OUT", "INT64", data)]))
    assert (msg.model_name, msg.model_version, msg.id) == ("m", "1", "id-1")
    assert (msg.outputs[0].name, msg.outputs[0].datatype) == ("OUT", "INT64")
    assert list(msg.outputs[0].shape) == [2, 3]
    assert msg.raw_output_contents[0] == data.tobytes()


def test_typed_contents_over_the_wire(live: Live) -> None:
    msg = pb.ModelInferRequest(model_name="identity_bytes", id="typed")
    tensor = msg.inputs.add(name="INPUT0", datatype="BYTES", shape=[1, 3])
    tensor.contents.bytes_contents.extend([b"a", b"bc", b""])
    with grpc.insecure_channel(live.url) as channel:
        stub = pb_grpc.GRPCInferenceServiceStub(channel)  # type: ignore[no-untyped-call]
        response = stub.ModelInfer(msg)
    assert response.id == "typed"
    assert response.raw_output_contents[0] == b"\1\0\0\0a\2\0\0\0bc\0\0\0\0"
