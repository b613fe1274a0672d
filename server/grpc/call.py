"""One gRPC call on the native edge: an HTTP/2 stream from its request headers to its trailers.

Inbound, the stream's DATA is cut into gRPC messages (length-prefixed, maybe compressed) and
queued for the handler. Outbound, the handler's messages and the closing status become frames
that wait in ``pending`` until HTTP/2 flow control lets the connection write them.
"""

from __future__ import annotations

import asyncio
import zlib
from collections import deque
from collections.abc import Callable
from typing import Protocol

from . import frames as f

# zlib's wbits for the encodings gRPC clients send: gzip, and deflate (zlib-wrapped).
_WBITS = {"gzip": 31, "deflate": 15}
ENCODINGS = ("identity", *_WBITS)


class Link(Protocol):
    """What a call needs from its connection."""

    def flush(self, call: Call) -> None: ...

    def finished(self, call: Call) -> None: ...

    def handler_done(self, call: Call) -> None: ...


class CallError(Exception):
    """The call must end with this gRPC status: raised while reading its input, and by a
    handler's ``context.abort``."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


class Call:
    """One call. The connection feeds ``receive``/``end_input``; the handler reads with
    ``read`` and answers with ``respond`` (unary) or ``send`` … ``finish`` (streaming)."""

    def __init__(
        self,
        link: Link,
        stream_id: int,
        path: str,
        metadata: list[tuple[str, str]],
        deadline: float | None,
        encoding: str,
        max_message_bytes: int,
        send_window: int,
    ) -> None:
        self.link = link
        self.stream_id = stream_id
        self.path = path
        self.metadata = metadata
        self.deadline = deadline
        self.encoding = encoding
        self.max_message_bytes = max_message_bytes
        self.send_window = send_window
        self.streaming = False  # a client-streaming method: input is credited as it is read
        self.inbox: deque[bytes] = deque()
        self.input_ended = False
        self.consumed = 0  # bytes the handler has taken since the last stream credit
        self.pending: deque[tuple[bool, bytes]] = deque()  # (is DATA, payload or whole frame)
        self.closed = False  # trailers queued, or the call was cancelled
        self.on_cancel: Callable[[], object] | None = None
        self.timer: asyncio.TimerHandle | None = None
        self.running = False  # its handler has started and not yet ended
        self.orphaned = False  # reset by the client while its handler runs
        self.actor = ""  # the authenticated token's name, when tokens are in use
        self._partial = bytearray()
        self._headers_sent = False
        self._waiter: asyncio.Future[None] | None = None
        self._drained: asyncio.Future[None] | None = None

    # Inbound ---------------------------------------------------------------------------------

    def receive(self, data: bytes) -> None:
        """Queue the whole messages in ``data``; raises ``CallError`` on a bad message."""
        buf = self._partial
        if not buf and len(data) >= 5:
            flag, size = f.MESSAGE_PREFIX.unpack_from(data)
            if size + 5 == len(data):  # the common case: one frame, one message
                self._check(size)
                self._queue(flag, data[5:])
                return
        buf += data
        while len(buf) >= 5:
            flag, size = f.MESSAGE_PREFIX.unpack_from(buf)
            self._check(size)
            if len(buf) < size + 5:
                break
            message = bytes(buf[5 : size + 5])
            del buf[: size + 5]
            self._queue(flag, message)

    @property
    def buffered(self) -> int:
        """Bytes of input received and not yet taken by the handler."""
        return len(self._partial) + sum(len(message) for message in self.inbox)

    def end_input(self) -> None:
        self.input_ended = True
        if self._partial:
            raise CallError(f.INTERNAL, "the request stream ended inside a message")
        self._wake()

    def _check(self, size: int) -> None:
        if size > self.max_message_bytes:
            raise CallError(
                f.RESOURCE_EXHAUSTED,
                f"received message larger than max ({size} vs. {self.max_message_bytes})",
            )

    def _queue(self, flag: int, message: bytes) -> None:
        if flag:
            message = self._decompress(message)
        self.inbox.append(message)
        self._wake()

    def _decompress(self, message: bytes) -> bytes:
        wbits = _WBITS.get(self.encoding)
        if wbits is None:
            raise CallError(f.INTERNAL, "a compressed message came without a grpc-encoding")
        inflate = zlib.decompressobj(wbits)
        try:
            out = inflate.decompress(message, self.max_message_bytes + 1)
        except zlib.error as exc:
            raise CallError(f.INTERNAL, f"cannot decompress the message ({exc})") from exc
        self._check(len(out))
        return out

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    async def read(self) -> bytes | None:
        """The next request message, or None once the client has sent its last."""
        while not self.inbox:
            if self.input_ended or self.closed:
                return None
            self._waiter = asyncio.get_running_loop().create_future()
            await self._waiter
        message = self.inbox.popleft()
        self.consumed += len(message) + 5
        self.link.flush(self)  # the connection may credit the stream's window now
        return message

    # Outbound --------------------------------------------------------------------------------

    def time_remaining(self) -> float | None:
        if self.deadline is None:
            return None
        return self.deadline - asyncio.get_running_loop().time()

    def respond(self, message: bytes) -> None:
        """A unary answer: headers, the message and an OK status, in one write when it fits."""
        if self.closed:
            return
        self._headers()
        self._data(message)
        self._trailers(f.OK_TRAILERS)

    def send(self, message: bytes) -> None:
        """One message of a streamed answer."""
        if self.closed:
            return
        self._headers()
        self._data(message)
        self.link.flush(self)

    def finish(self, code: int, message: str = "") -> None:
        """End the call with ``code``; trailers-only when nothing was sent yet."""
        if self.closed:
            return
        block = f.status_block(code, message)
        if not self._headers_sent:
            self._headers_sent = True
            block = f.RESPONSE_HEADERS + block
        self._trailers(block)

    def reject(self, http_status: int) -> None:
        """Answer a request that is not gRPC at all (wrong method or content type)."""
        if self.closed:
            return
        self._headers_sent = True
        self._trailers(f.http_status_block(http_status))

    async def drained(self) -> None:
        """Wait until flow control has let every queued message out (or the call ended)."""
        while self.pending and not self.closed:
            self._drained = asyncio.get_running_loop().create_future()
            await self._drained

    def wrote_all(self) -> None:
        drained = self._drained
        if drained is not None and not drained.done():
            drained.set_result(None)

    def cancel(self) -> None:
        """The client reset the stream or went away: drop what is queued and stop the work."""
        self.closed = True
        self.pending.clear()
        self._wake()
        self.wrote_all()
        if self.timer is not None:
            self.timer.cancel()
        self.stop_handler()

    def handler_done(self) -> None:
        self.link.handler_done(self)

    def stop_handler(self) -> None:
        if self.on_cancel is not None:
            self.on_cancel()

    def _headers(self) -> None:
        if not self._headers_sent:
            self._headers_sent = True
            self.pending.append(
                (False, f.frame(f.HEADERS, f.END_HEADERS, self.stream_id, f.RESPONSE_HEADERS))
            )

    def _data(self, message: bytes) -> None:
        prefix = f.MESSAGE_PREFIX.pack(0, len(message))
        if len(message) <= 65_536:
            self.pending.append((True, prefix + message))
        else:  # no copy of a large message: its prefix goes first on its own
            self.pending.append((True, prefix))
            self.pending.append((True, message))

    def _trailers(self, block: bytes) -> None:
        self.closed = True
        self.pending.append(
            (False, f.frame(f.HEADERS, f.END_HEADERS | f.END_STREAM, self.stream_id, block))
        )
        if self.timer is not None:
            self.timer.cancel()
        self.link.flush(self)
