"""The control plane over gRPC: ``grpcio``'s blocking client with the protocol's messages.

The messages come from ``server.grpc.generated`` (built from ``protos/inference.proto``, the
public protocol, into a private descriptor pool); nothing else of the gRPC edge is imported.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import grpc
from google.protobuf.json_format import MessageToDict
from google.protobuf.message import Message

from server.bench.config import BenchConfig
from server.bench.control import CONTROL_TIMEOUT_S, Counters, ServerUnreachable, counters_from
from server.bench.target import authority
from server.errors import ModelNotFound
from server.grpc.generated import inference_pb2 as pb

SERVICE = "/inference.GRPCInferenceService/"


class GrpcControl:
    def __init__(self, config: BenchConfig) -> None:
        self.config = config
        target = authority(config.host, config.port)
        if config.tls:
            roots = config.ca.read_bytes() if config.ca is not None else None
            self._channel = grpc.secure_channel(target, grpc.ssl_channel_credentials(roots))
        else:
            self._channel = grpc.insecure_channel(target)
        self._metadata = (("authorization", f"Bearer {config.token}"),) if config.token else ()

    def _call(self, method: str, request: Message, reply: type[Message]) -> Any:
        call = self._channel.unary_unary(
            SERVICE + method,
            request_serializer=lambda m: m.SerializeToString(),
            response_deserializer=reply.FromString,
        )
        with _translated(self.config):
            return call(request, timeout=CONTROL_TIMEOUT_S, metadata=self._metadata)

    def metadata(self, version: str) -> dict[str, Any]:
        request = pb.ModelMetadataRequest(name=self.config.model, version=version)
        reply = self._call("ModelMetadata", request, pb.ModelMetadataResponse)
        return MessageToDict(reply, preserving_proto_field_name=True)

    def infer(self, body: bytes, headers: dict[str, str]) -> tuple[str, bytes]:
        call = self._channel.unary_unary(SERVICE + "ModelInfer")  # raw bytes both ways
        try:
            answer: bytes = call(body, timeout=CONTROL_TIMEOUT_S, metadata=self._metadata)
        except grpc.RpcError as exc:
            if exc.code() == grpc.StatusCode.UNAVAILABLE:
                raise ServerUnreachable(f"ModelInfer: {exc.details()}") from exc
            return f"gRPC {exc.code().name}: {exc.details()}", b""
        return "", b"\x00" + len(answer).to_bytes(4, "big") + answer  # as a connection keeps it

    def counters(self) -> Counters | None:
        request = pb.ModelStatisticsRequest(name=self.config.model, version=self.config.version)
        try:
            reply = self._call("ModelStatistics", request, pb.ModelStatisticsResponse)
        except (ServerUnreachable, ModelNotFound):
            return None
        stats = MessageToDict(reply, preserving_proto_field_name=True).get("model_stats", [])
        return counters_from(stats[0]) if stats else None

    def close(self) -> None:
        self._channel.close()


@contextmanager
def _translated(config: BenchConfig) -> Iterator[None]:
    where = f"{config.host}:{config.port}"
    try:
        yield
    except grpc.RpcError as exc:
        code, details = exc.code(), exc.details()
        if code == grpc.StatusCode.NOT_FOUND:
            raise ModelNotFound(details or f"model '{config.model}' not found") from exc
        if code == grpc.StatusCode.UNAVAILABLE:
            raise ServerUnreachable(f"cannot reach a gRPC server at {where}: {details}") from exc
        raise ServerUnreachable(f"gRPC server at {where} answered {code.name}: {details}") from exc
