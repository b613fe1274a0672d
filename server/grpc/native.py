"""The native gRPC edge: the servicer's RPCs over Sluice's own HTTP/2 connection protocol.

Why not grpc.aio: measured on the reference MLP, grpc.aio costs ~0.54 ms of CPU per ModelInfer
call (44% of a profile in its own machinery on the loop, 11% in its poller thread), three times
the HTTP JSON path; that caps gRPC far below HTTP. This edge runs the very same servicer on the
serving loop, with a ``Context`` standing in for grpc.aio's, so the RPCs, the error table and
the codec are shared; only the transport differs. ``--grpc-transport aio`` selects grpc.aio.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import ssl
from collections.abc import AsyncIterator, Callable
from functools import partial
from typing import Any, NoReturn

import grpc
from google.protobuf.message import DecodeError, Message

from . import frames as f
from .call import Call, CallError
from .connection import Authorize, Connection
from .errors import status_of
from .generated import inference_pb2 as pb
from .limits import Limits
from .tls_link import TlsLink

log = logging.getLogger(__name__)

SERVICE = "inference.GRPCInferenceService"


class Context:
    """The part of grpc.aio's ServicerContext the servicer uses."""

    __slots__ = ("call",)

    def __init__(self, call: Call) -> None:
        self.call = call

    def time_remaining(self) -> float | None:
        return self.call.time_remaining()

    @property
    def actor(self) -> str:
        return self.call.actor

    def invocation_metadata(self) -> tuple[tuple[str, str], ...]:
        return tuple((k, v) for k, v in self.call.metadata if not k.startswith(":"))

    async def abort(self, code: grpc.StatusCode, details: str = "") -> NoReturn:
        raise CallError(code.value[0], details)


def _status(exc: BaseException) -> tuple[int, str]:
    while isinstance(exc, BaseExceptionGroup) and len(exc.exceptions) == 1:
        exc = exc.exceptions[0]  # the stream's reader runs in a TaskGroup
    if isinstance(exc, CallError):
        return exc.code, exc.message
    code, message = status_of(exc)
    return code.value[0], message


class Method:
    """One RPC: parse the request, run the servicer's coroutine in a task, answer."""

    def __init__(
        self,
        name: str,
        request: type[Message],
        impl: Callable[..., Any],
        client_streaming: bool,
        server_streaming: bool,
    ) -> None:
        self.name = name
        self.request = request
        self.impl = impl
        self.client_streaming = client_streaming
        self.server_streaming = server_streaming

    def start(self, call: Call) -> None:
        if self.client_streaming:
            arg: Any = self._requests(call)
        else:
            if len(call.inbox) != 1:
                call.finish(
                    f.UNIMPLEMENTED if call.inbox else f.INTERNAL,
                    f"{self.name} takes exactly one request message, got {len(call.inbox)}",
                )
                call.handler_done()
                return
            try:
                arg = self.request.FromString(call.inbox.popleft())
            except DecodeError as exc:
                call.finish(f.INVALID_ARGUMENT, f"cannot parse the {self.name} request: {exc}")
                call.handler_done()
                return
        context = Context(call)
        if self.server_streaming:
            coro = self._stream(call, self.impl(arg, context))
        else:
            coro = self.impl(arg, context)
        task = asyncio.get_running_loop().create_task(coro)
        call.on_cancel = task.cancel
        task.add_done_callback(lambda done: self._answer(call, done))

    async def _requests(self, call: Call) -> AsyncIterator[Message]:
        while (data := await call.read()) is not None:
            try:
                yield self.request.FromString(data)
            except DecodeError as exc:
                raise CallError(
                    f.INVALID_ARGUMENT, f"cannot parse a {self.name} request: {exc}"
                ) from exc

    async def _stream(self, call: Call, answers: AsyncIterator[Message]) -> None:
        async for answer in answers:
            call.send(answer.SerializeToString())
            if call.pending:
                await call.drained()

    def _answer(self, call: Call, task: asyncio.Task[Any]) -> None:
        call.handler_done()
        if task.cancelled():
            call.finish(f.CANCELLED, "the call was cancelled")
            return
        exc = task.exception()
        if exc is not None:
            call.finish(*_status(exc))
        elif self.server_streaming:
            call.finish(f.OK)
        else:
            call.respond(task.result().SerializeToString())


def routes(servicer: Any) -> dict[str, Method]:
    """``/package.Service/Method`` → its ``Method``, for every RPC of the service."""
    service = pb.DESCRIPTOR.services_by_name["GRPCInferenceService"]
    table = {}
    for method in service.methods:
        request = getattr(pb, method.input_type.name)
        table[f"/{SERVICE}/{method.name}"] = Method(
            method.name,
            request,
            getattr(servicer, method.name),
            method.client_streaming,
            method.server_streaming,
        )
    return table


class NativeEdge:
    """The listening socket, its connections, and a graceful stop."""

    def __init__(
        self,
        servicer: Any,
        sock: socket.socket,
        limits: Limits,
        address: str,
        authorize: Authorize | None = None,
        tls: ssl.SSLContext | None = None,
    ) -> None:
        self._routes = routes(servicer)
        self._sock = sock
        self._limits = limits
        self._authorize = authorize
        self._tls = tls
        self._server: asyncio.Server | None = None
        self._connections: set[Connection] = set()
        self._idle: asyncio.Event | None = None
        self.port = sock.getsockname()[1]
        self.address = address

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        self._idle = asyncio.Event()
        factory: Callable[[], asyncio.Protocol] = self._connect
        if self._tls is not None:
            context, limits = self._tls, self._limits
            factory = partial(TlsLink, context, self._connect, limits.handshake_timeout_s)
        self._server = await loop.create_server(factory, sock=self._sock, backlog=2048)
        log.debug("gRPC (Open Inference Protocol, native HTTP/2) listening on %s", self.address)

    def _connect(self) -> Connection:
        return Connection(self._routes, self._limits, self._closed, self._authorize, self._opened)

    def _opened(self, connection: Connection) -> None:
        # Counted once open: under TLS a failed handshake never opens, nor closes, its protocol.
        self._connections.add(connection)
        if self._idle is not None:
            self._idle.clear()

    def _closed(self, connection: Connection) -> None:
        self._connections.discard(connection)
        if not self._connections and self._idle is not None:
            self._idle.set()

    async def stop(self, grace_s: float) -> None:
        """Refuse new calls at once (GOAWAY); end those still running after ``grace_s``."""
        if self._server is not None:
            self._server.close()
        for connection in list(self._connections):
            connection.drain()
        if self._connections and self._idle is not None:
            try:
                await asyncio.wait_for(self._idle.wait(), grace_s)
            except TimeoutError:
                for connection in list(self._connections):
                    connection.abort("the server is shutting down")
        if self._server is not None:
            await self._server.wait_closed()
