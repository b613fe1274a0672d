"""The inference route as a bare ASGI handler: the hot path skips Starlette's request and
response objects (on the reference MLP they cost more than decoding the JSON body)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from server.codecs.json import decode_request, encode_response
from server.engine.engine import Engine
from server.engine.requests import InferRequest, InferResponse
from server.errors import InvalidInput, PayloadTooLarge

from .auth import ACTOR
from .errors import error_body

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

_JSON = (b"content-type", b"application/json")
_OCTETS = (b"content-type", b"application/octet-stream")
_HEADER_LENGTH = b"inference-header-content-length"
_LINGER_BYTES = 64 * 1024 * 1024


def _header(scope: Scope, name: bytes) -> str:
    for key, value in scope["headers"]:
        if key == name:
            return bytes(value).decode("latin-1")
    return ""


def parse_infer_path(path: str) -> tuple[str, str] | None:
    """``/v2/models/{m}[/versions/{v}]/infer`` → (model, version), else None."""
    parts = path.split("/")
    # ['', 'v2', 'models', m, 'infer'] or ['', 'v2', 'models', m, 'versions', v, 'infer']
    if len(parts) == 5 and parts[1] == "v2" and parts[2] == "models" and parts[4] == "infer":
        return parts[3], ""
    if (
        len(parts) == 7
        and parts[1] == "v2"
        and parts[2] == "models"
        and parts[4] == "versions"
        and parts[6] == "infer"
    ):
        return parts[3], parts[5]
    return None


class InferHandler:
    """POST …/infer: read the body (bounded), decode, run through the engine, encode."""

    def __init__(self, engine: Engine, max_request_bytes: int) -> None:
        self.engine = engine
        self.max_request_bytes = max_request_bytes

    async def __call__(
        self, scope: Scope, receive: Receive, send: Send, model: str, version: str
    ) -> None:
        try:
            header_length = None
            declared = None
            for key, value in scope["headers"]:
                if key == _HEADER_LENGTH:
                    header_length = _int_header(value, "Inference-Header-Content-Length")
                elif key == b"content-length":
                    declared = _int_header(value, "Content-Length")
            if declared is not None and declared > self.max_request_bytes:
                await _discard_body(receive, _LINGER_BYTES)
                raise PayloadTooLarge(self._too_large(declared))
            body = await self._read_body(receive)
            request, wants_binary = decode_request(model, version, body, header_length)
            request.actor = scope.get(ACTOR, "")
            sticky = self.engine.sticky_header(model)
            if sticky:
                request.routing_key = _header(scope, sticky.encode())
            response = await self._infer_unless_disconnected(request, receive)
            payload, json_length = encode_response(response, wants_binary)
        except _ClientGone:
            return  # nobody to answer; the batcher dropped the request if it had not run
        except Exception as exc:
            status, err = error_body(exc)
            await _respond(send, status, err, [_JSON])
            return
        if json_length is None:
            await _respond(send, 200, payload, [_JSON])
        else:
            headers = [_OCTETS, (_HEADER_LENGTH, str(json_length).encode())]
            await _respond(send, 200, payload, headers)

    def _too_large(self, size: int) -> str:
        return f"request body of {size} bytes is over the limit of {self.max_request_bytes} bytes"

    async def _read_body(self, receive: Receive) -> bytes:
        message = await receive()
        body = message.get("body", b"")
        if not message.get("more_body", False):
            if len(body) > self.max_request_bytes:
                raise PayloadTooLarge(self._too_large(len(body)))
            return bytes(body)
        chunks = [body]
        size = len(body)
        while message.get("more_body", False):
            message = await receive()
            if message["type"] == "http.disconnect":
                raise _ClientGone
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_request_bytes:
                await _discard_body(receive, _LINGER_BYTES)
                raise PayloadTooLarge(self._too_large(size))
            chunks.append(chunk)
        return b"".join(chunks)

    async def _infer_unless_disconnected(
        self, request: InferRequest, receive: Receive
    ) -> InferResponse:
        """Run the request; a client that disconnects first has its request dropped before
        it runs."""
        # uvicorn's request cycle keeps a ``disconnected`` flag: polling it costs nothing,
        # where a watcher task per request cost ~10% of the event loop on the reference MLP.
        cycle = getattr(receive, "__self__", None)
        if cycle is not None and isinstance(getattr(cycle, "disconnected", None), bool):
            request.client_gone = lambda: bool(cycle.disconnected)
            try:
                return await self.engine.infer(request)
            except asyncio.CancelledError:
                if cycle.disconnected:
                    raise _ClientGone from None
                raise
        work = asyncio.ensure_future(self.engine.infer(request))
        watcher = asyncio.ensure_future(receive())
        watcher.add_done_callback(lambda _: work.cancel())
        try:
            return await work
        except asyncio.CancelledError:
            if watcher.done() and not watcher.cancelled():
                raise _ClientGone from None
            raise
        finally:
            watcher.cancel()


class _ClientGone(Exception):
    """The client disconnected while its request waited."""


async def _discard_body(receive: Receive, limit: int) -> None:
    """Read and drop up to ``limit`` more bytes of a refused body, so the client, still
    sending, reads our 413 instead of a connection reset."""
    seen = 0
    while seen <= limit:
        message = await receive()
        seen += len(message.get("body", b""))
        if not message.get("more_body", False):
            return


def _int_header(value: bytes, name: str) -> int:
    try:
        number = int(value)
    except ValueError:
        raise InvalidInput(f"header {name} is not an integer") from None
    if number < 0:
        raise InvalidInput(f"header {name} is negative")
    return number


async def _respond(
    send: Send, status: int, body: bytes, headers: list[tuple[bytes, bytes]]
) -> None:
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [*headers, (b"content-length", str(len(body)).encode())],
        }
    )
    await send({"type": "http.response.body", "body": body})
