"""Protobuf ⇄ engine values for ModelInfer: the hot path of the gRPC edge.

Raw contents are little-endian row-major bytes, one entry per tensor; a BYTES element is a
4-byte little-endian length followed by that many bytes. Inputs become numpy views of the
request's bytes (``np.frombuffer``: no copy beyond the one protobuf makes when Python reads
the field); outputs are written with one ``tobytes`` each. Typed ``contents`` are accepted
for every datatype that has a field (not FP16 or BF16); responses are always raw, as Triton's.
"""

from __future__ import annotations

import struct
from collections.abc import Mapping, Sequence

import numpy as np

from server.engine.requests import InferRequest, InferResponse
from server.errors import DeadlineExceeded, InvalidInput
from server.tensors import DTYPES, Tensor

from .generated import inference_pb2 as pb

_LENGTH = struct.Struct("<I")
FINAL_RESPONSE_WANTED = "triton_enable_empty_final_response"
FINAL_RESPONSE = "triton_final_response"

# Datatype -> the InferTensorContents field carrying it and that field's numpy dtype.
_CONTENTS: dict[str, tuple[str, np.dtype[np.generic]]] = {
    "BOOL": ("bool_contents", np.dtype(np.bool_)),
    "INT8": ("int_contents", np.dtype(np.int32)),
    "INT16": ("int_contents", np.dtype(np.int32)),
    "INT32": ("int_contents", np.dtype(np.int32)),
    "INT64": ("int64_contents", np.dtype(np.int64)),
    "UINT8": ("uint_contents", np.dtype(np.uint32)),
    "UINT16": ("uint_contents", np.dtype(np.uint32)),
    "UINT32": ("uint_contents", np.dtype(np.uint32)),
    "UINT64": ("uint64_contents", np.dtype(np.uint64)),
    "FP32": ("fp32_contents", np.dtype(np.float32)),
    "FP64": ("fp64_contents", np.dtype(np.float64)),
    "BYTES": ("bytes_contents", np.dtype(np.object_)),
}


def decode_request(msg: pb.ModelInferRequest, time_remaining: float | None) -> InferRequest:
    """The engine request for ``msg``; ``time_remaining`` is the client's deadline (seconds)."""
    raw = msg.raw_input_contents
    if raw and len(raw) != len(msg.inputs):
        raise InvalidInput(
            f"raw_input_contents has {len(raw)} entries for {len(msg.inputs)} inputs; "
            "give raw contents for every input or for none"
        )
    inputs = []
    for i, tensor in enumerate(msg.inputs):
        shape = tuple(tensor.shape)
        if raw:
            data = from_raw(tensor.name, tensor.datatype, shape, raw[i])
        else:
            data = from_contents(tensor.name, tensor.datatype, shape, tensor.contents)
        inputs.append(Tensor(tensor.name, tensor.datatype, data))
    request = InferRequest(
        msg.model_name,
        inputs,
        msg.model_version,
        tuple([out.name for out in msg.outputs]) if msg.outputs else (),
        msg.id,
    )
    if msg.parameters:
        _apply_parameters(request, msg.parameters)
    if time_remaining is not None:
        if time_remaining <= 0:
            raise DeadlineExceeded("the client's deadline passed before the request was queued")
        deadline_us = max(int(time_remaining * 1e6), 1)
        if request.timeout_us <= 0 or deadline_us < request.timeout_us:
            request.timeout_us = deadline_us
    return request


def _apply_parameters(request: InferRequest, params: Mapping[str, pb.InferParameter]) -> None:
    for key in ("priority", "timeout"):
        if key not in params:
            continue
        param = params[key]
        choice = param.WhichOneof("parameter_choice")
        if choice not in ("int64_param", "uint64_param"):
            raise InvalidInput(f"parameter '{key}' must be an integer, got {choice}")
        value = int(getattr(param, choice))
        if value < 0:
            raise InvalidInput(f"parameter '{key}' must be >= 0, got {value}")
        if key == "priority":
            request.priority = value
        else:
            request.timeout_us = value


def _count(name: str, shape: tuple[int, ...]) -> int:
    count = 1
    for dim in shape:
        if dim < 0:
            raise InvalidInput(f"input '{name}' has a negative dimension in shape {list(shape)}")
        count *= dim
    return count


def from_raw(name: str, datatype: str, shape: tuple[int, ...], raw: bytes) -> np.ndarray:
    """A read-only view of ``raw`` as ``shape`` (BYTES: an object array of ``bytes``)."""
    count = _count(name, shape)
    if datatype == "BYTES":
        return bytes_from_raw(name, raw, count).reshape(shape)
    dtype = DTYPES.get(datatype)
    if dtype is None:
        raise InvalidInput(f"input '{name}' has unknown datatype '{datatype}'")
    if len(raw) != count * dtype.itemsize:
        raise InvalidInput(
            f"input '{name}' has {len(raw)} bytes of raw contents; shape {list(shape)} of "
            f"{datatype} needs {count * dtype.itemsize}"
        )
    return np.frombuffer(raw, dtype).reshape(shape)


def from_contents(
    name: str, datatype: str, shape: tuple[int, ...], contents: pb.InferTensorContents
) -> np.ndarray:
    count = _count(name, shape)
    entry = _CONTENTS.get(datatype)
    if entry is None:
        if datatype in DTYPES:
            raise InvalidInput(f"input '{name}': {datatype} must be sent in raw_input_contents")
        raise InvalidInput(f"input '{name}' has unknown datatype '{datatype}'")
    field, wide = entry
    values: Sequence[object] = getattr(contents, field)
    if len(values) != count:
        raise InvalidInput(
            f"input '{name}' has {len(values)} values in {field}; shape {list(shape)} needs {count}"
        )
    if datatype == "BYTES":
        data = np.empty(count, dtype=object)
        data[:] = list(values)
        return data.reshape(shape)
    data = np.array(values, dtype=wide)
    dtype = DTYPES[datatype]
    if dtype != wide:
        narrow = data.astype(dtype)
        if not np.array_equal(narrow, data):
            raise InvalidInput(f"input '{name}' has values out of range for {datatype}")
        data = narrow
    return data.reshape(shape)


def bytes_from_raw(name: str, raw: bytes, count: int) -> np.ndarray:
    """Split length-prefixed BYTES elements into a flat object array of ``bytes``."""
    data = np.empty(count, dtype=object)
    offset, end = 0, len(raw)
    for i in range(count):
        if offset + 4 > end:
            raise InvalidInput(f"input '{name}': raw BYTES contents end after {i} of {count}")
        (size,) = _LENGTH.unpack_from(raw, offset)
        offset += 4
        if offset + size > end:
            raise InvalidInput(f"input '{name}': raw BYTES element {i} overruns the contents")
        data[i] = raw[offset : offset + size]
        offset += size
    if offset != end:
        raise InvalidInput(
            f"input '{name}': {end - offset} bytes left over after {count} BYTES elements"
        )
    return data


def bytes_to_raw(data: np.ndarray) -> bytes:
    """Length-prefixed elements; ``str`` (what ONNX Runtime returns) is encoded UTF-8."""
    parts = []
    for item in data.flat:
        value = item.encode() if isinstance(item, str) else bytes(item)
        parts.append(_LENGTH.pack(len(value)))
        parts.append(value)
    return b"".join(parts)


def to_raw(tensor: Tensor) -> bytes:
    if tensor.datatype == "BYTES":
        return bytes_to_raw(tensor.data)
    return tensor.data.tobytes()


def encode_response(response: InferResponse) -> pb.ModelInferResponse:
    outputs = response.outputs
    return pb.ModelInferResponse(
        model_name=response.model,
        model_version=response.version,
        id=response.id,
        outputs=[
            pb.ModelInferResponse.InferOutputTensor(
                name=t.name, datatype=t.datatype, shape=t.data.shape
            )
            for t in outputs
        ],
        raw_output_contents=[to_raw(t) for t in outputs],
    )


def stream_answer(
    msg: pb.ModelInferRequest, response: InferResponse | None, error: str = ""
) -> pb.ModelStreamInferResponse:
    """A stream's answer to one request: its response, or its error and its id to match it.

    A client that asked for Triton's final-response flag (``triton_enable_empty_final_response``)
    gets it on this answer: every Sluice model answers a request exactly once.
    """
    if response is None:
        infer_response = pb.ModelInferResponse(
            model_name=msg.model_name, model_version=msg.model_version, id=msg.id
        )
    else:
        infer_response = encode_response(response)
    if msg.parameters and _flag(msg.parameters, FINAL_RESPONSE_WANTED):
        infer_response.parameters[FINAL_RESPONSE].bool_param = True
    return pb.ModelStreamInferResponse(error_message=error, infer_response=infer_response)


def _flag(params: Mapping[str, pb.InferParameter], key: str) -> bool:
    return key in params and params[key].bool_param
