"""Request payloads, built and encoded once before the clock starts.

Inputs are random values of each input's datatype and shape (``--rows`` rows per request),
or rows of a Parquet file (``server.bench.parquet``). Each is encoded for the wire the run
uses: V2 JSON, V2 JSON with Triton's binary tensor extension, or a gRPC ``ModelInferRequest``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import orjson

from server.bench.config import PAYLOAD_BYTES_LIMIT, BenchConfig
from server.bench.model import ModelInfo
from server.errors import ConfigError
from server.tensors import BINARY_ONLY, dtype_of

Inputs = dict[str, np.ndarray]
RANDOM_PAYLOADS = 16  # distinct random requests, sent in turn, so no server caches one answer


@dataclass(frozen=True, slots=True)
class Encoded:
    """One request on the wire: the HTTP body (or gRPC message) and its content headers."""

    body: bytes
    headers: tuple[tuple[str, str], ...]


def random_inputs(info: ModelInfo, shapes: dict[str, tuple[int, ...]], seed: int) -> Inputs:
    rng = np.random.default_rng(seed)
    return {s.name: _random(rng, s.datatype, shapes[s.name]) for s in info.inputs}


def _random(rng: np.random.Generator, datatype: str, shape: tuple[int, ...]) -> np.ndarray:
    if datatype == "BYTES":
        words = rng.integers(0, 1 << 32, size=shape, dtype=np.uint64)
        return np.array([f"{w:08x}".encode() for w in words.ravel()], dtype=object).reshape(shape)
    if datatype == "BOOL":
        return rng.integers(0, 2, size=shape).astype(np.bool_)
    if datatype == "BF16":  # the upper half of a float32's bits
        return (rng.standard_normal(shape).astype(np.float32).view(np.uint32) >> 16).astype(
            np.uint16
        )
    dtype = dtype_of(datatype)
    if dtype.kind == "f":
        return rng.standard_normal(shape).astype(dtype)
    return rng.integers(0, 100, size=shape).astype(dtype)


def raw_bytes(array: np.ndarray, datatype: str) -> bytes:
    """The binary tensor layout shared by HTTP's extension and gRPC's raw contents."""
    if datatype == "BYTES":
        items = [x if isinstance(x, bytes) else str(x).encode() for x in array.ravel()]
        return b"".join(len(x).to_bytes(4, "little") + x for x in items)
    return np.ascontiguousarray(array, dtype=dtype_of(datatype).newbyteorder("<")).tobytes()


def encode(config: BenchConfig, info: ModelInfo, inputs: Inputs) -> Encoded:
    if config.protocol == "grpc":
        return _grpc(config, info, inputs)
    if config.binary:
        return _binary(info, inputs)
    return _json(info, inputs)


def _json(info: ModelInfo, inputs: Inputs) -> Encoded:
    tensors = []
    for spec in info.inputs:
        if spec.datatype in BINARY_ONLY:
            raise ConfigError(
                f"input '{spec.name}' is {spec.datatype}: JSON cannot carry it; add --binary"
            )
        array = inputs[spec.name]
        data = (
            [x.decode() if isinstance(x, bytes) else str(x) for x in array.ravel()]
            if (spec.datatype == "BYTES")
            else array.ravel()
        )
        tensors.append(
            {"name": spec.name, "shape": list(array.shape), "datatype": spec.datatype, "data": data}
        )
    body = orjson.dumps({"inputs": tensors}, option=orjson.OPT_SERIALIZE_NUMPY)
    return Encoded(body, (("Content-Type", "application/json"),))


def _binary(info: ModelInfo, inputs: Inputs) -> Encoded:
    tensors, blobs = [], []
    for spec in info.inputs:
        raw = raw_bytes(inputs[spec.name], spec.datatype)
        blobs.append(raw)
        tensors.append(
            {
                "name": spec.name,
                "shape": list(inputs[spec.name].shape),
                "datatype": spec.datatype,
                "parameters": {"binary_data_size": len(raw)},
            }
        )
    outputs = [{"name": s.name, "parameters": {"binary_data": True}} for s in info.outputs]
    head = orjson.dumps({"inputs": tensors, "outputs": outputs})
    headers = (
        ("Content-Type", "application/octet-stream"),
        ("Inference-Header-Content-Length", str(len(head))),
    )
    return Encoded(head + b"".join(blobs), headers)


def _grpc(config: BenchConfig, info: ModelInfo, inputs: Inputs) -> Encoded:
    from server.grpc.generated import inference_pb2 as pb  # the protocol's messages only

    request = pb.ModelInferRequest(model_name=config.model, model_version=config.version)
    for spec in info.inputs:
        array = inputs[spec.name]
        request.inputs.add(name=spec.name, datatype=spec.datatype, shape=array.shape)
        request.raw_input_contents.append(raw_bytes(array, spec.datatype))
    return Encoded(request.SerializeToString(), ())


def build(
    config: BenchConfig, info: ModelInfo, shapes: dict[str, tuple[int, ...]]
) -> list[Encoded]:
    """Every payload of the run: from ``--input``, or ``RANDOM_PAYLOADS`` random ones."""
    if config.input_path is not None:
        from server.bench.parquet import parquet_inputs  # pyarrow only when a file is given

        batches = parquet_inputs(config.input_path, info, config.rows, config.features)
    else:
        batches = (random_inputs(info, shapes, config.seed + i) for i in range(RANDOM_PAYLOADS))
    payloads: list[Encoded] = []
    total = 0
    for inputs in batches:
        payloads.append(encode(config, info, inputs))
        total += len(payloads[-1].body)
        if total >= PAYLOAD_BYTES_LIMIT:
            break
    return payloads
