"""gRPC over HTTP/2 connections that replay pre-encoded ModelInfer messages, one in flight each.

A minimal HTTP/2 client on an ``asyncio.Protocol`` (RFC 9113: preface, SETTINGS, flow control
both ways, CONTINUATION, PING, GOAWAY, RST_STREAM): the request's header block is HPACK-encoded
once with literals that never enter the dynamic table, so every request is two frame headers
and constant bytes; answers' header blocks are decoded with ``hpack`` and cached while the
table is unchanged. Unary calls use one stream per request; ``--streaming`` keeps one
ModelStreamInfer stream per connection and sends each request as a message on it.
tritonclient's grpc.aio-based client costs 110-170 µs of CPU per call on the reference MLP;
this costs 21-37 µs, as h2load does in C (18-28 µs; ``benchmarks/bench_client.py``).
"""

from __future__ import annotations

import asyncio
import struct
from time import monotonic_ns
from typing import cast

import hpack

from server.bench.http1 import Sink

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
_HEAD = struct.Struct(">HBBBI")  # length as 16 + 8 bits, type, flags, stream id
_SETTING = struct.Struct(">HI")
_U32 = struct.Struct(">I")
DATA, HEADERS, RST_STREAM, SETTINGS, PING, GOAWAY, WINDOW_UPDATE, CONTINUATION = (
    0,
    1,
    3,
    4,
    6,
    7,
    8,
    9,
)
END_STREAM = ACK = 0x1
END_HEADERS, PADDED, PRIORITY = 0x4, 0x8, 0x20
INITIAL_WINDOW_SIZE, MAX_FRAME_SIZE, ENABLE_PUSH = 0x4, 0x5, 0x2
DEFAULT_WINDOW = 65_535
RECEIVE_WINDOW = 1 << 30  # what this client lets the server send before a WINDOW_UPDATE
MAX_STREAM_ID = 2**31 - 1

GRPC_CODES = (
    "OK", "CANCELLED", "UNKNOWN", "INVALID_ARGUMENT", "DEADLINE_EXCEEDED", "NOT_FOUND",
    "ALREADY_EXISTS", "PERMISSION_DENIED", "RESOURCE_EXHAUSTED", "FAILED_PRECONDITION", "ABORTED",
    "OUT_OF_RANGE", "UNIMPLEMENTED", "INTERNAL", "UNAVAILABLE", "DATA_LOSS", "UNAUTHENTICATED",
)  # fmt: skip
_Summary = tuple[str, str, str]  # (:status, grpc-status, grpc-message), "" when absent


def frame(kind: int, flags: int, stream_id: int, payload: bytes = b"") -> bytes:
    n = len(payload)
    return _HEAD.pack(n >> 8, n & 0xFF, kind, flags, stream_id) + payload


def header_block(authority: str, path: str, tls: bool, token: str | None) -> bytes:
    """The request's headers as never-indexed literals: valid on any connection, unchanged."""
    headers = [
        (":method", "POST"),
        (":scheme", "https" if tls else "http"),
        (":path", path),
        (":authority", authority),
        ("content-type", "application/grpc"),
        ("te", "trailers"),
    ]
    if token:
        headers.append(("authorization", f"Bearer {token}"))
    tuples = [hpack.NeverIndexedHeaderTuple(k, v) for k, v in headers]
    return bytes(hpack.Encoder().encode(tuples, huffman=True))


def message(body: bytes) -> bytes:
    """A gRPC length-prefixed message (uncompressed)."""
    return b"\x00" + _U32.pack(len(body)) + body


class Http2(asyncio.Protocol):
    def __init__(
        self, sink: Sink, messages: list[bytes], block: bytes, offset: int, streaming: bool
    ) -> None:
        self.sink = sink
        self.messages = messages
        self.block = block
        self.next = offset % len(messages)
        self.streaming = streaming
        self.start_ns = 0
        self.busy = False
        self.keep = False
        self.ready: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.transport: asyncio.Transport | None = None
        self._buf = b""
        self._stream = -1  # the stream of the request in flight (streaming: the open stream)
        self._next_stream = 1
        self._send_window = DEFAULT_WINDOW  # the connection's, granted by the server
        self._stream_window = DEFAULT_WINDOW
        self._peer_initial = DEFAULT_WINDOW
        self._max_frame = 16_384
        self._pending = memoryview(b"")  # message bytes waiting for window
        self._unacked = 0
        self._fragments: list[bytes] = []  # a header block waiting for CONTINUATION
        self._fragment_flags = 0
        self._decoder = hpack.Decoder()
        self._blocks: dict[bytes, _Summary] = {}
        self._answer: list[bytes] = []
        self._goaway = False

    # --- connection ---------------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is no subclass
        transport = self.transport
        settings = b"".join(
            _SETTING.pack(k, v)
            for k, v in ((ENABLE_PUSH, 0), (INITIAL_WINDOW_SIZE, RECEIVE_WINDOW))
        )
        transport.write(
            PREFACE
            + frame(SETTINGS, 0, 0, settings)
            + frame(WINDOW_UPDATE, 0, 0, _U32.pack(RECEIVE_WINDOW - DEFAULT_WINDOW))
        )

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.ready.done():
            self.ready.set_exception(ConnectionError(f"HTTP/2: {exc or 'closed at start'}"))
        self.sink.lost(self, f"connection: {exc}" if exc else "connection: closed by the server")

    def close(self) -> None:
        if self.transport is not None:
            self.transport.abort()

    # --- sending -------------------------------------------------------------------------
    def send(self, start_ns: int) -> None:
        self.start_ns = start_ns
        self.busy = True
        i = self.next
        self.next = i + 1 if i + 1 < len(self.messages) else 0
        msg = self.messages[i]
        size = len(msg)
        assert self.transport is not None
        if self.streaming and self._stream > 0:
            head = b""
            sid, flags = self._stream, 0
        else:
            sid = self._next_stream
            if sid > MAX_STREAM_ID:
                self.transport.close()  # a fresh connection takes over (``lost``)
                return
            self._next_stream = sid + 2
            self._stream = sid
            self._stream_window = self._peer_initial
            flags = 0 if self.streaming else END_STREAM
            n = len(self.block)
            head = _HEAD.pack(n >> 8, n & 0xFF, HEADERS, END_HEADERS, sid) + self.block
        if size <= self._send_window and size <= self._stream_window and size <= self._max_frame:
            self._send_window -= size
            self._stream_window -= size
            data = _HEAD.pack(size >> 8, size & 0xFF, DATA, flags, sid)
            self.transport.write(b"".join((head, data, msg)))
        else:
            if head:
                self.transport.write(head)
            self._pending = memoryview(msg)
            self._pump()

    def _pump(self) -> None:
        """Send what the windows allow of a message too large for one frame or window."""
        assert self.transport is not None
        while self._pending:
            room = min(self._send_window, self._stream_window, self._max_frame, len(self._pending))
            if room <= 0:
                return
            chunk, self._pending = self._pending[:room], self._pending[room:]
            last = not self._pending and not self.streaming
            self._send_window -= room
            self._stream_window -= room
            self.transport.write(frame(DATA, END_STREAM if last else 0, self._stream, bytes(chunk)))

    # --- receiving -----------------------------------------------------------------------
    def data_received(self, data: bytes) -> None:
        buf = self._buf + data if self._buf else data
        pos, end = 0, len(buf)
        head = _HEAD
        while end - pos >= 9:
            high, low, kind, flags, sid = head.unpack_from(buf, pos)
            size = high << 8 | low
            if end - pos - 9 < size:
                break
            payload = buf[pos + 9 : pos + 9 + size]
            pos += 9 + size
            if kind == DATA:
                self._on_data(flags, sid & MAX_STREAM_ID, payload)
            elif kind in (HEADERS, CONTINUATION):
                self._on_headers(kind, flags, sid & MAX_STREAM_ID, payload)
            else:
                self._on_control(kind, flags, sid & MAX_STREAM_ID, payload)
        self._buf = buf[pos:]

    def _on_data(self, flags: int, sid: int, payload: bytes) -> None:
        self._unacked += len(payload)
        if self._unacked >= RECEIVE_WINDOW // 2:
            assert self.transport is not None
            credit = _U32.pack(self._unacked)
            out = frame(WINDOW_UPDATE, 0, 0, credit)
            if self.streaming and self._stream > 0:
                out += frame(WINDOW_UPDATE, 0, self._stream, credit)
            self.transport.write(out)
            self._unacked = 0
        if sid != self._stream:
            return
        if flags & PADDED:
            payload = payload[1 : len(payload) - payload[0]]
        if self.streaming:
            self._answer.append(payload)
            self._stream_messages()
        elif self.busy and (self.keep or not self._answer):
            self._answer.append(payload)  # the first bytes suffice to know a message came
        if flags & END_STREAM and self.busy:
            self._complete(False, "gRPC: stream ended without trailers")

    def _stream_messages(self) -> None:
        """Each complete ModelStreamInferResponse answers the request in flight."""
        data = b"".join(self._answer)
        while len(data) >= 5:
            size = _U32.unpack_from(data, 1)[0]
            if len(data) < 5 + size:
                break
            msg, data = data[5 : 5 + size], data[5 + size :]
            if self.busy:
                self._answer = [msg]
                # field 1 (error_message, tag 0x0a) is set only when this request failed
                if msg[:1] == b"\x0a":
                    self._complete(False, "gRPC stream: error_message")
                else:
                    self._complete(True, "")
        self._answer = [data] if data else []

    def _on_headers(self, kind: int, flags: int, sid: int, payload: bytes) -> None:
        if kind == HEADERS:
            if flags & PADDED:
                payload = payload[1 : len(payload) - payload[0]]
            if flags & PRIORITY:
                payload = payload[5:]
            self._fragment_flags = flags
        if not flags & END_HEADERS:
            self._fragments.append(payload)
            return
        if self._fragments:
            payload = b"".join((*self._fragments, payload))
            self._fragments = []
        status, grpc_status, grpc_message = self._summary(payload)
        if sid != self._stream or not self.busy:
            return
        if status and status != "200":
            self._complete(False, f"HTTP {status}")
        elif grpc_status:
            code = int(grpc_status) if grpc_status.isdigit() else 2
            name = GRPC_CODES[code] if code < len(GRPC_CODES) else str(code)
            if code == 0 and not self.streaming:
                self._complete(True, "")
            elif code != 0:
                self._answer = [grpc_message.encode()]
                self._complete(False, f"gRPC {name}")
        elif self._fragment_flags & END_STREAM:
            self._complete(False, "gRPC: no grpc-status")

    def _summary(self, block: bytes) -> _Summary:
        """Decode a block; cache its summary while the dynamic table stays as it is."""
        hit = self._blocks.get(block)
        if hit is not None:
            return hit
        table = self._decoder.header_table
        before = list(table.dynamic_entries)
        fields = dict(self._decoder.decode(block, raw=True))
        summary = (
            fields.get(b":status", b"").decode("latin-1"),
            fields.get(b"grpc-status", b"").decode("latin-1"),
            fields.get(b"grpc-message", b"").decode("utf-8", "replace"),
        )
        if list(table.dynamic_entries) != before:
            self._blocks.clear()  # indexed references in cached blocks may mean something else
        elif len(self._blocks) < 256:
            self._blocks[block] = summary
        return summary

    def _on_control(self, kind: int, flags: int, sid: int, payload: bytes) -> None:
        assert self.transport is not None
        if kind == SETTINGS and not flags & ACK:
            for i in range(0, len(payload) - 5, 6):
                key, value = _SETTING.unpack_from(payload, i)
                if key == INITIAL_WINDOW_SIZE:
                    self._stream_window += value - self._peer_initial
                    self._peer_initial = value
                elif key == MAX_FRAME_SIZE:
                    self._max_frame = value
            self.transport.write(frame(SETTINGS, ACK, 0))
            if not self.ready.done():
                self.ready.set_result(None)
            self._pump()
        elif kind == WINDOW_UPDATE:
            increment = _U32.unpack(payload)[0] & MAX_STREAM_ID
            if sid == 0:
                self._send_window += increment
            elif sid == self._stream:
                self._stream_window += increment
            self._pump()
        elif kind == PING and not flags & ACK:
            self.transport.write(frame(PING, ACK, 0, payload))
        elif kind == RST_STREAM and sid == self._stream and self.busy:
            self._complete(False, f"HTTP/2 RST_STREAM {_U32.unpack(payload)[0]}")
            if self.streaming:
                self._stream = -1  # the next request opens a new stream
        elif kind == GOAWAY:
            self._goaway = True
            last = _U32.unpack_from(payload)[0] & MAX_STREAM_ID
            if self.busy and self._stream > last:
                self._complete(False, "connection: GOAWAY")
            self.transport.close()

    def _complete(self, ok: bool, kind: str) -> None:
        end_ns = monotonic_ns()
        self.busy = False
        self._pending = memoryview(b"")
        answer = b"".join(self._answer) if (self.keep or not ok) else b""
        if not self.streaming:
            self._answer = []
        self.sink.done(self, ok, kind, answer, end_ns)
