"""One HTTP/2 connection of the native gRPC edge, as an asyncio protocol.

Speaks what gRPC uses of RFC 9113: the preface and SETTINGS, HEADERS/CONTINUATION decoded with
HPACK, DATA under flow control in both directions, PING, RST_STREAM, WINDOW_UPDATE and GOAWAY.
Each client-opened stream is a ``Call`` handed to the ``Route`` its ``:path`` names: a unary
route once the request has fully arrived, a streaming one as soon as its headers have.

Flow control: the connection window is credited as DATA arrives (every call's input is bounded
on its own) while the input buffered in the connection's calls is under its cap, a unary
call's stream window as DATA arrives (its one message is bounded by the message
limit), and a streaming call's stream window as its handler reads, so a slow handler pushes
back on its client alone.

Every per-connection resource is bounded by ``limits.Limits``, enforced here and by
``limits.Floods``; see that module for each limit and where its default comes from.
"""

from __future__ import annotations

import asyncio
import logging
import socket
from collections.abc import Callable, Mapping
from typing import Protocol, cast

from . import frames as f
from .call import ENCODINGS, Call, CallError
from .limits import Floods, Limits, ProtocolError

# The authorization hook: given a call's path and headers, the actor (who is calling), or
# ``CallError`` to refuse it. Run when the headers arrive, before any of the body is read.
Authorize = Callable[[str, Mapping[str, str]], str]

log = logging.getLogger(__name__)


class Route(Protocol):
    """The handler of one gRPC method."""

    client_streaming: bool

    def start(self, call: Call) -> None: ...


class Connection(asyncio.Protocol):
    def __init__(
        self,
        routes: Mapping[str, Route],
        limits: Limits,
        on_close: Callable[[Connection], None],
        authorize: Authorize | None = None,
        on_open: Callable[[Connection], None] | None = None,
    ) -> None:
        self.routes = routes
        self.on_open = on_open
        self.limits = limits
        self.on_close = on_close
        self.authorize = authorize
        self.calls: dict[int, Call] = {}
        self.transport: asyncio.Transport | None = None
        self._loop = asyncio.get_running_loop()
        self._buf = bytearray()
        self._preface = False
        self._settled = False  # the client's first SETTINGS arrived
        self._decoder = f.HeaderDecoder(limits.max_header_list_size)
        self._last_stream_id = 0
        self._send_window = f.DEFAULT_WINDOW
        self._peer_window = f.DEFAULT_WINDOW  # the client's initial stream window
        self._peer_frame_size = f.DEFAULT_FRAME_SIZE
        self._received = 0  # connection-level bytes not yet credited back
        self._blocked: dict[int, Call] = {}  # calls waiting for connection window
        self._continued: tuple[int, int, bytearray] | None = None  # stream, flags, block
        self._draining = False
        self._paused = False  # output above the high-water mark: reading stopped
        self._orphans = 0  # streams the client reset whose handler is still running
        self._floods = Floods(limits, self._loop.time())
        self._withheld = False  # connection credit held back: buffered input over its cap
        self._timer: asyncio.TimerHandle | None = None
        self._timer_reason = ""
        self._cutoff: asyncio.TimerHandle | None = None
        self._handlers = {
            f.DATA: self._on_data,
            f.HEADERS: self._on_headers,
            f.PRIORITY: self._on_priority,
            f.RST_STREAM: self._on_rst_stream,
            f.SETTINGS: self._on_settings,
            f.PUSH_PROMISE: self._on_push_promise,
            f.PING: self._on_ping,
            f.GOAWAY: self._on_goaway,
            f.WINDOW_UPDATE: self._on_window_update,
            f.CONTINUATION: self._on_continuation,
        }

    # asyncio.Protocol --------------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports are not asyncio.Transport subclasses, hence the cast.
        self.transport = cast(asyncio.Transport, transport)
        sock = transport.get_extra_info("socket")
        if sock is not None and sock.family != socket.AF_UNIX:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        limits = self.limits
        settings = {
            f.ENABLE_PUSH: 0,
            f.MAX_CONCURRENT_STREAMS: limits.max_concurrent_streams,
            f.INITIAL_WINDOW_SIZE: limits.stream_window,
            f.MAX_FRAME_SIZE: limits.max_frame_size,
            f.MAX_HEADER_LIST_SIZE: limits.max_header_list_size,
        }
        greeting = f.settings_frame(settings)
        if limits.connection_window > f.DEFAULT_WINDOW:
            greeting += f.window_update(0, limits.connection_window - f.DEFAULT_WINDOW)
        self.transport.set_write_buffer_limits(high=limits.write_high_water)
        self.transport.write(greeting)
        self._rearm()
        if self.on_open is not None:
            self.on_open(self)

    def connection_lost(self, exc: Exception | None) -> None:
        for call in list(self.calls.values()):
            call.cancel()
        self.calls.clear()
        self._blocked.clear()
        self.transport = None
        for timer in (self._timer, self._cutoff):
            if timer is not None:
                timer.cancel()
        self.on_close(self)

    def pause_writing(self) -> None:
        # The client is not reading: stop reading it, so it cannot make the server queue more.
        self._paused = True
        if self.transport is not None:
            self.transport.pause_reading()

    def resume_writing(self) -> None:
        self._paused = False
        if self.transport is None:
            return
        self.transport.resume_reading()
        blocked, self._blocked = self._blocked, {}
        for call in blocked.values():
            self.flush(call)

    def data_received(self, data: bytes) -> None:
        if self.transport is None:
            return  # closing: the input is dropped
        buf = self._buf
        buf += data
        pos = 0
        try:
            if not self._preface:
                if len(buf) < len(f.PREFACE):
                    if not f.PREFACE.startswith(bytes(buf)):
                        raise ProtocolError(f.PROTOCOL_ERROR, "not an HTTP/2 connection preface")
                    return
                if not buf.startswith(f.PREFACE):
                    raise ProtocolError(f.PROTOCOL_ERROR, "not an HTTP/2 connection preface")
                self._preface = True
                pos = len(f.PREFACE)
            end = len(buf)
            limit = self.limits.max_frame_size
            while end - pos >= f.HEAD_SIZE:
                high, low, kind, flags, stream_id = f.HEAD.unpack_from(buf, pos)
                size = high << 8 | low
                if size > limit:
                    raise ProtocolError(f.FRAME_SIZE_ERROR, f"a frame of {size} bytes")
                start = pos + f.HEAD_SIZE
                if end - start < size:
                    break
                payload = bytes(buf[start : start + size])
                pos = start + size
                self._floods.frame(kind, flags, size)
                if not self._settled:
                    if kind != f.SETTINGS:
                        raise ProtocolError(f.PROTOCOL_ERROR, "the first frame is not SETTINGS")
                    self._settled = True
                if self._continued is not None and kind != f.CONTINUATION:
                    raise ProtocolError(f.PROTOCOL_ERROR, "a header block was interrupted")
                handler = self._handlers.get(kind)
                if handler is not None:  # unknown frame types are ignored (RFC 9113 §4.1)
                    handler(flags, stream_id & 0x7FFFFFFF, payload)
                if self.transport is None:
                    return
        except ProtocolError as exc:
            self._fail(exc.code, str(exc))
            return
        del buf[:pos]
        self._rearm()

    # Frames ------------------------------------------------------------------------------------

    def _on_headers(self, flags: int, stream_id: int, payload: bytes) -> None:
        if stream_id == 0 or stream_id % 2 == 0:
            raise ProtocolError(f.PROTOCOL_ERROR, f"HEADERS on stream {stream_id}")
        payload = _unpad(flags, payload)
        if flags & f.PRIORITY_FLAG:
            payload = payload[5:]
        if len(payload) > 2 * self.limits.max_header_list_size:
            raise ProtocolError(f.PROTOCOL_ERROR, "the header block is too large")
        if flags & f.END_HEADERS:
            self._header_block(stream_id, flags, payload)
        else:
            self._continued = (stream_id, flags, bytearray(payload))

    def _on_continuation(self, flags: int, stream_id: int, payload: bytes) -> None:
        if self._continued is None or self._continued[0] != stream_id:
            raise ProtocolError(f.PROTOCOL_ERROR, "CONTINUATION without its HEADERS")
        _, first_flags, block = self._continued
        block += payload
        if len(block) > 2 * self.limits.max_header_list_size:
            raise ProtocolError(f.PROTOCOL_ERROR, "the header block is too large")
        if flags & f.END_HEADERS:
            self._continued = None
            self._header_block(stream_id, first_flags, bytes(block))

    def _header_block(self, stream_id: int, flags: int, block: bytes) -> None:
        try:
            headers = self._decoder.decode(block)
        except f.HPACKError as exc:
            raise ProtocolError(f.COMPRESSION_ERROR, f"bad header block ({exc})") from exc
        call = self.calls.get(stream_id)
        if call is not None:  # the client's trailers: they only end its input
            if not flags & f.END_STREAM:
                raise ProtocolError(f.PROTOCOL_ERROR, "trailers without END_STREAM")
            self._end_input(call)
            return
        if stream_id <= self._last_stream_id:
            return  # a stream this side already closed
        self._last_stream_id = stream_id
        self._floods.streams += 1
        # A stream the client reset still counts until its handler has ended (Rapid Reset).
        if self._draining or len(self.calls) + self._orphans >= self.limits.max_concurrent_streams:
            self._spend_reset()
            self._control(f.rst_stream(stream_id, f.REFUSED_STREAM))
            return
        self._open(stream_id, headers, bool(flags & f.END_STREAM))

    def _open(self, stream_id: int, headers: list[tuple[str, str]], ended: bool) -> None:
        fields = dict(headers)
        path = fields.get(":path", "")
        timeout = fields.get("grpc-timeout")
        seconds = None if timeout is None else f.parse_timeout(timeout)
        deadline = None if seconds is None else self._loop.time() + seconds
        encoding = fields.get("grpc-encoding", "identity")
        call = Call(
            self,
            stream_id,
            path,
            headers,
            deadline,
            encoding,
            self.limits.max_message_bytes,
            self._peer_window,
        )
        self.calls[stream_id] = call
        if ended:
            call.input_ended = True
        route = self.routes.get(path)
        refusal = None
        if self.authorize is not None:
            try:
                call.actor = self.authorize(path, fields)
            except CallError as exc:
                refusal = exc
        if fields.get(":method") != "POST":
            call.reject(405)
        elif not fields.get("content-type", "").startswith("application/grpc"):
            call.reject(415)
        elif timeout is not None and seconds is None:
            call.finish(f.INVALID_ARGUMENT, f"malformed grpc-timeout '{timeout}'")
        elif encoding not in ENCODINGS:
            call.finish(f.UNIMPLEMENTED, f"grpc-encoding '{encoding}' is not supported")
        elif route is None:
            call.finish(f.UNIMPLEMENTED, f"unknown method {path}")
        elif refusal is not None:
            call.finish(refusal.code, refusal.message)
        else:
            call.streaming = route.client_streaming
            if deadline is not None:
                call.timer = self._loop.call_at(deadline, self._expire, call)
            if route.client_streaming or ended:
                self._start(route, call)

    def _on_data(self, flags: int, stream_id: int, payload: bytes) -> None:
        self._received += len(payload)
        call = self.calls.get(stream_id)
        if call is None or call.input_ended:
            if stream_id > self._last_stream_id:
                raise ProtocolError(f.PROTOCOL_ERROR, f"DATA on idle stream {stream_id}")
            return  # the call is over on this side; its late data is dropped
        payload = _unpad(flags, payload)
        try:
            if not call.closed:
                call.receive(payload)
                if len(call.inbox) > 1 and not call.streaming:
                    # Refused at once: crediting more input to a unary call would let a
                    # client queue messages without bound.
                    raise CallError(f.UNIMPLEMENTED, "a unary call takes one request message")
            if flags & f.END_STREAM:
                self._end_input(call)
            elif not call.streaming:  # its one message is bounded by the message limit
                call.consumed += len(payload)
                self.flush(call)
        except CallError as exc:
            call.finish(exc.code, exc.message)
            call.stop_handler()  # a streaming handler: its call is over
        self._credit()

    def _credit(self) -> None:
        """Credit the connection window for received input, unless the input buffered in
        this connection's calls is over its cap: then the client waits for the handlers."""
        if self._received < self.limits.connection_window // 2:
            return
        buffered = sum(call.buffered for call in self.calls.values())
        self._withheld = buffered > self.limits.max_buffered_input
        if not self._withheld:
            self._write(f.window_update(0, self._received))
            self._received = 0

    def _end_input(self, call: Call) -> None:
        try:
            call.end_input()
        except CallError as exc:
            call.finish(exc.code, exc.message)
            call.stop_handler()
        if call.closed:
            if not call.pending:
                self.finished(call)
            return
        route = self.routes.get(call.path)
        if route is not None and not route.client_streaming:
            self._start(route, call)

    def _start(self, route: Route, call: Call) -> None:
        call.running = True
        try:
            route.start(call)
        except Exception:  # a bug; the connection and its other calls go on
            log.exception("cannot start the gRPC call %s", call.path)
            call.running = False
            call.finish(f.INTERNAL, "internal error")

    def handler_done(self, call: Call) -> None:
        """``call``'s handler has ended; a reset stream stops counting against the cap."""
        call.running = False
        if call.orphaned:
            call.orphaned = False
            self._orphans -= 1

    def _on_rst_stream(self, flags: int, stream_id: int, payload: bytes) -> None:
        if len(payload) != 4:
            raise ProtocolError(f.FRAME_SIZE_ERROR, "RST_STREAM is not 4 bytes")
        if stream_id == 0 or stream_id > self._last_stream_id:
            raise ProtocolError(f.PROTOCOL_ERROR, f"RST_STREAM on idle stream {stream_id}")
        self._spend_reset()
        call = self.calls.pop(stream_id, None)
        if call is not None:
            self._drop(call)

    def _drop(self, call: Call) -> None:
        self._blocked.pop(call.stream_id, None)
        if call.running:
            call.orphaned = True
            self._orphans += 1
        call.cancel()

    def _spend_reset(self) -> None:
        self._floods.reset(self._loop.time())

    def _reset(self, call: Call, code: int) -> None:
        """A stream error: reset the stream, which spends the client's reset budget too."""
        self._spend_reset()
        self.calls.pop(call.stream_id, None)
        self._drop(call)
        self._control(f.rst_stream(call.stream_id, code))

    def _on_settings(self, flags: int, stream_id: int, payload: bytes) -> None:
        if flags & f.ACK:
            return
        if stream_id != 0 or len(payload) % 6:
            raise ProtocolError(f.PROTOCOL_ERROR, "malformed SETTINGS")
        self._floods.settings(len(payload))
        for key, value in f.parse_settings(payload):
            if key == f.INITIAL_WINDOW_SIZE:
                if value > f.MAX_WINDOW:
                    raise ProtocolError(f.FLOW_CONTROL_ERROR, "initial window too large")
                delta, self._peer_window = value - self._peer_window, value
                for call in self.calls.values():
                    call.send_window += delta
                    if call.send_window > f.MAX_WINDOW:
                        raise ProtocolError(f.FLOW_CONTROL_ERROR, "a stream window overflowed")
            elif key == f.MAX_FRAME_SIZE:
                if not f.DEFAULT_FRAME_SIZE <= value <= f.MAX_FRAME_LIMIT:
                    raise ProtocolError(f.PROTOCOL_ERROR, "bad SETTINGS_MAX_FRAME_SIZE")
                self._peer_frame_size = value
        self._control(f.frame(f.SETTINGS, f.ACK, 0))
        for call in list(self.calls.values()):
            self.flush(call)

    def _on_push_promise(self, flags: int, stream_id: int, payload: bytes) -> None:
        raise ProtocolError(f.PROTOCOL_ERROR, "a client cannot push")

    def _on_ping(self, flags: int, stream_id: int, payload: bytes) -> None:
        if len(payload) != 8:
            raise ProtocolError(f.FRAME_SIZE_ERROR, "PING is not 8 bytes")
        if stream_id != 0:
            raise ProtocolError(f.PROTOCOL_ERROR, "PING on a stream")
        if not flags & f.ACK:
            self._control(f.frame(f.PING, f.ACK, 0, payload))

    def _on_goaway(self, flags: int, stream_id: int, payload: bytes) -> None:
        self._draining = True  # the client opens no more streams; those open finish
        self._close_if_idle()

    def _on_window_update(self, flags: int, stream_id: int, payload: bytes) -> None:
        if len(payload) != 4:
            raise ProtocolError(f.FRAME_SIZE_ERROR, "WINDOW_UPDATE is not 4 bytes")
        self._floods.window_update()
        increment = f.u31(payload)
        if stream_id == 0:
            if increment == 0:
                raise ProtocolError(f.PROTOCOL_ERROR, "WINDOW_UPDATE of 0")
            self._send_window += increment
            if self._send_window > f.MAX_WINDOW:
                raise ProtocolError(f.FLOW_CONTROL_ERROR, "the connection window overflowed")
            blocked, self._blocked = self._blocked, {}
            for call in blocked.values():
                self.flush(call)
            return
        stream = self.calls.get(stream_id)
        if stream is None:
            return
        stream.send_window += increment
        if increment == 0:
            self._reset(stream, f.PROTOCOL_ERROR)
        elif stream.send_window > f.MAX_WINDOW:
            self._reset(stream, f.FLOW_CONTROL_ERROR)
        else:
            self.flush(stream)

    def _on_priority(self, flags: int, stream_id: int, payload: bytes) -> None:
        self._floods.priority()

    # Output ------------------------------------------------------------------------------------

    def flush(self, call: Call) -> None:
        """Write what flow control allows of ``call``'s queue; credit its consumed input."""
        if self.transport is None:
            return
        if self._withheld:
            self._credit()
        out = []
        if call.consumed >= self.limits.stream_window // 4 and not call.input_ended:
            out.append(f.window_update(call.stream_id, call.consumed))
            call.consumed = 0
        pending = call.pending
        while pending:
            is_data, payload = pending[0]
            if not is_data:
                out.append(payload)
                pending.popleft()
                continue
            room = min(self._send_window, call.send_window, self._peer_frame_size)
            if room <= 0 or self._paused:
                if self._send_window <= 0 or self._paused:
                    self._blocked[call.stream_id] = call
                break
            if len(payload) <= room:
                pending.popleft()
                chunk = payload
            else:
                chunk, pending[0] = payload[:room], (True, payload[room:])
            self._send_window -= len(chunk)
            call.send_window -= len(chunk)
            self._floods.data_sent += 1
            out.append(f.frame(f.DATA, 0, call.stream_id, chunk))
        if out:
            self.transport.write(b"".join(out))
        if not pending:
            call.wrote_all()
            if call.closed:
                self.finished(call)

    def finished(self, call: Call) -> None:
        """The call's trailers are out: forget it, and tell the client to stop sending."""
        if self.calls.pop(call.stream_id, None) is None:
            return
        self._blocked.pop(call.stream_id, None)
        if not call.input_ended:
            self._write(f.rst_stream(call.stream_id, f.NO_ERROR))
        if self._withheld:
            self._credit()
        self._close_if_idle()
        self._rearm()

    def _expire(self, call: Call) -> None:
        call.timer = None
        call.finish(f.DEADLINE_EXCEEDED, "Deadline Exceeded")
        call.stop_handler()

    def _write(self, data: bytes) -> None:
        if self.transport is not None:
            self.transport.write(data)

    def _control(self, frame: bytes) -> None:
        """A control reply. Those queued in user space (the socket is full: the client is
        not reading) are counted, and past the cap the connection ends, as Envoy does."""
        transport = self.transport
        if transport is None:
            return
        self._floods.control(queued=transport.get_write_buffer_size() > 0)
        transport.write(frame)

    # Deadlines ---------------------------------------------------------------------------------

    def _rearm(self) -> None:
        """One timer, for whichever deadline applies now: the preface and first SETTINGS,
        a header block left open, or a connection with no call."""
        limits = self.limits
        if not self._settled:
            reason, seconds = "no HTTP/2 preface and SETTINGS in time", limits.handshake_timeout_s
        elif self._continued is not None:
            reason, seconds = "a header block did not end in time", limits.header_timeout_s
        elif not self.calls:
            reason, seconds = "idle", limits.idle_timeout_s
        else:
            reason, seconds = "", 0.0
        if reason == self._timer_reason:
            return
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._timer_reason = reason
        if reason and self.transport is not None:
            self._timer = self._loop.call_later(seconds, self._timed_out, reason)

    def _timed_out(self, reason: str) -> None:
        self._timer = None
        if reason == "idle":
            self.drain()
        else:
            self._fail(f.PROTOCOL_ERROR, reason)

    # Shutdown ----------------------------------------------------------------------------------

    def drain(self) -> None:
        """Refuse new streams (GOAWAY); close once the open ones are answered."""
        self._draining = True
        self._write(f.goaway(self._last_stream_id, f.NO_ERROR))
        self._close_if_idle()

    def abort(self, message: str) -> None:
        """End every open call with UNAVAILABLE and close."""
        for call in list(self.calls.values()):
            call.finish(f.UNAVAILABLE, message)
            call.stop_handler()
        self._close()

    def _close_if_idle(self) -> None:
        if self._draining and not self.calls:
            self._close()

    def _fail(self, code: int, message: str) -> None:
        log.debug("closing an HTTP/2 connection: %s", message)
        self._write(f.goaway(self._last_stream_id, code, message.encode()[:256]))
        self._close()

    def _close(self) -> None:
        """Close once what is written has gone; nothing more is written or read."""
        transport, self.transport = self.transport, None
        if transport is None:
            return
        if transport.can_write_eof():
            # A lingering close: FIN after the output, and the client's input read and dropped
            # until it closes, since closing with unread input would reset the connection
            # and lose the GOAWAY before the client has read it.
            try:
                transport.write_eof()
            except OSError:  # the peer is already gone (ENOTCONN): nothing to linger for
                transport.abort()
                return
            transport.resume_reading()
        else:
            transport.close()
        # Either waits for the output to go; a client that never reads would hold it.
        self._cutoff = self._loop.call_later(self.limits.close_timeout_s, transport.abort)


def _unpad(flags: int, payload: bytes) -> bytes:
    if not flags & f.PADDED:
        return payload
    if not payload or payload[0] >= len(payload):
        raise ProtocolError(f.PROTOCOL_ERROR, "bad padding")
    return payload[1 : len(payload) - payload[0]]
