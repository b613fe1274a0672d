"""Is a successful answer the answer the model gives? Its outputs' shapes, on a sample."""

from __future__ import annotations

from typing import Any

import orjson

from server.bench.http1 import body_of
from server.bench.model import shape_matches
from server.bench.target import Target


def check_answer(target: Target, answer: bytes) -> str:
    """An empty string when ``answer`` (as the connection kept it) holds every expected output
    with its expected shape; otherwise what is wrong."""
    try:
        shapes = (
            _grpc_shapes(target, answer)
            if target.config.protocol == "grpc"
            else _http_shapes(answer)
        )
    except (ValueError, KeyError, TypeError, IndexError) as exc:
        return f"unreadable answer: {exc!r}"
    for name, want in target.outputs.items():
        if name not in shapes:
            return f"output '{name}' is missing (got {sorted(shapes)})"
        if not shape_matches(want, shapes[name]):
            return f"output '{name}' has shape {list(shapes[name])}, expected {list(want)}"
    return ""


def _http_shapes(answer: bytes) -> dict[str, tuple[int, ...]]:
    headers, body = body_of(answer)
    size = headers.get("inference-header-content-length")
    doc: Any = orjson.loads(body[: int(size)] if size else body)
    return {str(t["name"]): tuple(int(d) for d in t["shape"]) for t in doc["outputs"]}


def _grpc_shapes(target: Target, answer: bytes) -> dict[str, tuple[int, ...]]:
    from google.protobuf.message import DecodeError

    from server.grpc.generated import inference_pb2 as pb  # the protocol's messages only

    try:
        if target.config.streaming:
            reply = pb.ModelStreamInferResponse.FromString(answer).infer_response
        else:
            reply = pb.ModelInferResponse.FromString(answer[5:])
    except DecodeError as exc:
        raise ValueError(str(exc)) from exc
    return {t.name: tuple(int(d) for d in t.shape) for t in reply.outputs}
