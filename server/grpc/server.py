"""Build, start and drain the gRPC edge on the serving event loop: native HTTP/2 or grpc.aio."""

from __future__ import annotations

import logging
from typing import Protocol

import grpc

from server.engine.engine import Engine
from server.errors import ConfigError
from server.security.access import Guard
from server.security.tls import read_pem, server_context
from server.settings import ServerSettings
from server.sockets import bind

from .auth import AuthInterceptor, native_authorize
from .generated import inference_pb2_grpc as pb_grpc
from .limits import Limits
from .native import NativeEdge
from .servicer import InferenceServicer

log = logging.getLogger(__name__)


class GrpcEdge(Protocol):
    """A started-or-not gRPC server and the port it is bound to (the OS's pick for 0)."""

    port: int
    address: str

    async def start(self) -> None: ...

    async def stop(self, grace_s: float) -> None: ...


class AioEdge:
    """The grpc.aio server."""

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


def build_grpc_server(
    engine: Engine, settings: ServerSettings, guard: Guard | None = None
) -> GrpcEdge:
    """The gRPC edge for ``engine`` bound to ``settings.host:grpc_port``, not yet started.

    Call it on the serving event loop (both transports serve on the running loop). A message
    over ``grpc_max_message_bytes`` is refused with RESOURCE_EXHAUSTED. ``guard`` checks each
    call's token and scope on its metadata (None: no check); TLS when ``settings`` has a
    certificate.
    """
    servicer = InferenceServicer(engine, guard)
    host = f"[{settings.host}]" if ":" in settings.host else settings.host
    if settings.grpc_transport == "native":
        try:
            sock = bind(settings.host, settings.grpc_port, reuse_port=settings.workers > 1)
        except OSError as exc:
            raise ConfigError(f"cannot bind gRPC to {host}:{settings.grpc_port}: {exc}") from exc
        port = sock.getsockname()[1]
        limits = Limits(
            max_message_bytes=settings.grpc_max_message_bytes,
            max_concurrent_streams=settings.grpc_max_concurrent_streams,
            max_buffered_input=settings.grpc_max_buffered_input_bytes,
            idle_timeout_s=settings.grpc_idle_timeout_s,
        )
        tls = None
        if settings.tls_cert:
            tls = server_context(
                settings.tls_cert, settings.tls_key, settings.tls_client_ca, alpn=("h2",)
            )
        authorize = None if guard is None else native_authorize(guard)
        return NativeEdge(servicer, sock, limits, f"{host}:{port}", authorize, tls)
    interceptors = [] if guard is None else [AuthInterceptor(guard)]
    server = grpc.aio.server(options=server_options(settings), interceptors=interceptors)
    pb_grpc.add_GRPCInferenceServiceServicer_to_server(servicer, server)  # type: ignore[no-untyped-call]
    address = f"{host}:{settings.grpc_port}"
    try:
        if settings.tls_cert:
            port = server.add_secure_port(address, _credentials(settings))
        else:
            port = server.add_insecure_port(address)
    except RuntimeError as exc:
        raise ConfigError(f"cannot bind gRPC to {address}: {exc}") from exc
    if port == 0:
        raise ConfigError(f"cannot bind gRPC to {address}")
    return AioEdge(server, port, f"{host}:{port}")


def _credentials(settings: ServerSettings) -> grpc.ServerCredentials:
    ca = read_pem(settings.tls_client_ca) if settings.tls_client_ca else None
    pair = (read_pem(settings.tls_key), read_pem(settings.tls_cert))
    return grpc.ssl_server_credentials([pair], root_certificates=ca, require_client_auth=bool(ca))
