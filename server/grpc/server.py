"""Build, start and drain the grpc.aio server on the serving event loop."""

from __future__ import annotations

import logging

import grpc

from server.engine.engine import Engine
from server.errors import ConfigError
from server.settings import ServerSettings

from .generated import inference_pb2_grpc as pb_grpc
from .servicer import InferenceServicer

log = logging.getLogger(__name__)


class GrpcEdge:
    """The gRPC server and the port it is bound to (the OS's pick when the setting is 0)."""

    def __init__(self, server: grpc.aio.Server, port: int, address: str) -> None:
        self.server = server
        self.port = port
        self.address = address

    async def start(self) -> None:
        await self.server.start()
        log.debug("gRPC (Open Inference Protocol) listening on %s", self.address)

    async def stop(self, grace_s: float) -> None:
        """Refuse new RPCs at once; cancel those still running after ``grace_s`` seconds."""
        await self.server.stop(grace_s)


def server_options(settings: ServerSettings) -> list[tuple[str, int]]:
    return [
        ("grpc.max_receive_message_length", settings.grpc_max_message_bytes),
        ("grpc.max_send_message_length", settings.grpc_max_message_bytes),
        # gRPC shares ports by default; a second server on a taken port must fail, unless
        # several workers share the port on purpose.
        ("grpc.so_reuseport", 1 if settings.workers > 1 else 0),
    ]


def build_grpc_server(engine: Engine, settings: ServerSettings) -> GrpcEdge:
    """A grpc.aio server for ``engine`` bound to ``settings.host:grpc_port``, not yet started.

    Call it on the serving event loop (grpc.aio binds the server to the running loop).
    A message over ``grpc_max_message_bytes`` is refused by gRPC with RESOURCE_EXHAUSTED.
    """
    server = grpc.aio.server(options=server_options(settings))
    pb_grpc.add_GRPCInferenceServiceServicer_to_server(InferenceServicer(engine), server)  # type: ignore[no-untyped-call]
    host = f"[{settings.host}]" if ":" in settings.host else settings.host
    address = f"{host}:{settings.grpc_port}"
    try:
        port = server.add_insecure_port(address)
    except RuntimeError as exc:
        raise ConfigError(f"cannot bind gRPC to {address}: {exc}") from exc
    if port == 0:
        raise ConfigError(f"cannot bind gRPC to {address}")
    return GrpcEdge(server, port, f"{host}:{port}")
