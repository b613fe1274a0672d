"""Pre-built request bodies for the reference model (input ``input`` [-1, 256] FP32).

Every body is built once and written to a file the load generator replays unchanged, so the
client spends nothing on encoding. ``check_*`` functions send one request and compare the
answer with in-process ONNX Runtime, so a benchmark never measures fast errors.
"""

from __future__ import annotations

import http.client
import json
import struct
from dataclasses import dataclass
from typing import Any

import numpy as np

INPUT = "input"
OUTPUT = "output"
WIDTH = 256
OUT_WIDTH = 8


@dataclass(frozen=True, slots=True)
class Payload:
    """One replayable request: body bytes, extra headers, and the rows it carries."""

    name: str
    rows: int
    body: bytes
    headers: dict[str, str]
    inputs: np.ndarray


def rows(n: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((n, WIDTH)).astype(np.float32)


def json_payload(n: int, seed: int = 0) -> Payload:
    """V2 JSON with the floats as a numpy client writes them (``tolist()`` of FP32)."""
    x = rows(n, seed)
    body = {
        "inputs": [
            {"name": INPUT, "shape": [n, WIDTH], "datatype": "FP32", "data": x.ravel().tolist()}
        ]
    }
    return Payload(
        f"json-{n}", n, json.dumps(body).encode(), {"Content-Type": "application/json"}, x
    )


def binary_payload(n: int, seed: int = 0) -> Payload:
    """Triton binary tensor extension: JSON header, then raw little-endian FP32, binary out."""
    x = rows(n, seed)
    raw = x.astype("<f4").tobytes()
    header = {
        "inputs": [
            {
                "name": INPUT,
                "shape": [n, WIDTH],
                "datatype": "FP32",
                "parameters": {"binary_data_size": len(raw)},
            }
        ],
        "outputs": [{"name": OUTPUT, "parameters": {"binary_data": True}}],
    }
    head = json.dumps(header).encode()
    return Payload(
        f"binary-{n}",
        n,
        head + raw,
        {
            "Content-Type": "application/octet-stream",
            "Inference-Header-Content-Length": str(len(head)),
        },
        x,
    )


def grpc_frame(model: str, n: int, seed: int = 0) -> Payload:
    """A length-prefixed gRPC message: ModelInferRequest with ``raw_input_contents``.

    Built with tritonclient's generated messages; the wire format is the Open Inference
    Protocol's (field numbers as Triton's grpc_service.proto), so any V2 gRPC server reads it.
    """
    from tritonclient.grpc import service_pb2

    x = rows(n, seed)
    request = service_pb2.ModelInferRequest(model_name=model)
    tensor = request.inputs.add()
    tensor.name = INPUT
    tensor.datatype = "FP32"
    tensor.shape.extend([n, WIDTH])
    request.raw_input_contents.append(x.astype("<f4").tobytes())
    message = request.SerializeToString()
    frame = struct.pack(">?I", False, len(message)) + message
    headers = {"content-type": "application/grpc", "te": "trailers"}
    return Payload(f"grpc-raw-{n}", n, frame, headers, x)


def post(host: str, port: int, path: str, payload: Payload) -> tuple[int, dict[str, str], bytes]:
    conn = http.client.HTTPConnection(host, port, timeout=30)
    try:
        conn.request("POST", path, payload.body, payload.headers)
        resp = conn.getresponse()
        return resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read()
    finally:
        conn.close()


def decode_output(headers: dict[str, str], body: bytes) -> np.ndarray:
    """The ``output`` tensor of a V2 response, JSON or binary-extension."""
    head_len = int(headers.get("inference-header-content-length", len(body)))
    head: dict[str, Any] = json.loads(body[:head_len])
    offset = head_len
    for out in head["outputs"]:
        size = out.get("parameters", {}).get("binary_data_size")
        if size is not None:
            data = np.frombuffer(body[offset : offset + size], dtype="<f4")
            offset += size
        else:
            data = np.asarray(out["data"], dtype=np.float32)
        if out["name"] == OUTPUT:
            return data.reshape(out["shape"])
    raise ValueError(f"no '{OUTPUT}' in response: {head}")


def check_http(host: str, port: int, model: str, payload: Payload, expected: np.ndarray) -> None:
    """Send one request; raise unless the answer has the right shape and values."""
    status, headers, body = post(host, port, f"/v2/models/{model}/infer", payload)
    if status != 200:
        raise RuntimeError(f"{payload.name} on :{port}: HTTP {status}: {body[:300]!r}")
    got = decode_output(headers, body)
    if got.shape != expected.shape or not np.allclose(got, expected, rtol=1e-3, atol=1e-4):
        raise RuntimeError(f"{payload.name} on :{port}: wrong answer {got.shape} {got.ravel()[:4]}")


def check_grpc(host: str, port: int, model: str, payload: Payload, expected: np.ndarray) -> int:
    """Send the pre-built frame through a real gRPC channel; return the response frame size.

    The size lets the h2load run prove every response was a success: an error carries no
    message, only trailers.
    """
    import grpc
    from tritonclient.grpc import service_pb2

    message = payload.body[5:]
    with grpc.insecure_channel(f"{host}:{port}") as channel:
        call = channel.unary_unary(
            "/inference.GRPCInferenceService/ModelInfer",
            request_serializer=None,
            response_deserializer=None,
        )
        raw = call(message, timeout=30)
    response = service_pb2.ModelInferResponse.FromString(raw)
    out = next(o for o in response.outputs if o.name == OUTPUT)
    index = list(response.outputs).index(out)
    if response.raw_output_contents:
        got = np.frombuffer(response.raw_output_contents[index], dtype="<f4")
    else:
        got = np.asarray(out.contents.fp32_contents, dtype=np.float32)
    got = got.reshape(tuple(out.shape))
    if got.shape != expected.shape or not np.allclose(got, expected, rtol=1e-3, atol=1e-4):
        raise RuntimeError(f"gRPC on :{port}: wrong answer {got.shape} {got.ravel()[:4]}")
    return 5 + len(raw)
