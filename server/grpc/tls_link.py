"""TLS for the native HTTP/2 edge: Python's ``ssl.SSLObject`` between the socket and a
``Connection``, with no layer in between.

uvloop's SSL transport (``create_server(ssl=...)``) cost a 1-row gRPC call ~20 µs of the event
loop's time against ~4 µs for the record work itself (``SSLObject.read`` and ``write`` on memory
buffers): every read ended in a second ``read`` that raised ``SSLWantReadError``, and each call
went through its generic state machine. Here a read stops when the memory buffer is empty, one
``write`` becomes one record and one socket write, and the connection sees a transport that
behaves like the plain one (``write``, flow control, ``close``, ``abort``).

The handshake has ``handshake_timeout_s``; a failed or timed-out handshake closes the socket
without ever creating the ``Connection``. Closing sends close_notify first. ``can_write_eof`` is
False, as for any TLS transport: the connection closes instead of half-closing.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
from collections.abc import Callable
from typing import Any, cast

log = logging.getLogger(__name__)
_READ_SIZE = 256 * 1024


class TlsLink(asyncio.Protocol):
    """The socket's protocol: decrypts into ``app`` and encrypts what ``app`` writes, acting as
    ``app``'s transport."""

    def __init__(
        self,
        context: ssl.SSLContext,
        make_app: Callable[[], asyncio.Protocol],
        handshake_timeout_s: float,
    ) -> None:
        self._context = context
        self._make_app = make_app
        self._handshake_timeout_s = handshake_timeout_s
        self._incoming = ssl.MemoryBIO()
        self._outgoing = ssl.MemoryBIO()
        self._ssl = context.wrap_bio(self._incoming, self._outgoing, server_side=True)
        self._raw: asyncio.Transport | None = None
        self._app: asyncio.Protocol | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._closing = False

    # The socket's side -------------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._raw = cast(asyncio.Transport, transport)
        loop = asyncio.get_running_loop()
        self._timer = loop.call_later(self._handshake_timeout_s, self._handshake_expired)

    def data_received(self, data: bytes) -> None:
        self._incoming.write(data)
        if self._app is None:
            self._handshake()
            if self._app is None:
                return
        self._read()

    def eof_received(self) -> bool:
        self._incoming.write_eof()
        if self._app is not None:
            self._read()
        return False  # the socket closes; connection_lost tells the app

    def connection_lost(self, exc: Exception | None) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._raw = None
        app, self._app = self._app, None
        if app is not None:
            app.connection_lost(exc)

    def pause_writing(self) -> None:
        if self._app is not None:
            self._app.pause_writing()

    def resume_writing(self) -> None:
        if self._app is not None:
            self._app.resume_writing()

    def _handshake(self) -> None:
        try:
            self._ssl.do_handshake()
        except ssl.SSLWantReadError:
            self._send()
            return
        except (ssl.SSLError, OSError) as exc:
            log.debug("TLS handshake failed: %s", exc)
            self._send()  # the alert, when there is one
            self._abort_raw()
            return
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._send()  # the handshake's last flight and, in TLS 1.3, the session tickets
        self._app = self._make_app()
        self._app.connection_made(cast(asyncio.BaseTransport, self))

    def _handshake_expired(self) -> None:
        self._timer = None
        if self._app is None:
            log.debug("TLS handshake not done within %.1f s", self._handshake_timeout_s)
            self._abort_raw()

    def _read(self) -> None:
        """Hand the app what decrypts now, without the read that would fail."""
        chunks = []
        ssl_object, incoming = self._ssl, self._incoming
        try:
            while True:
                chunk = ssl_object.read(_READ_SIZE)
                if not chunk:  # close_notify: the peer has finished sending
                    break
                chunks.append(chunk)
                if not incoming.pending and not ssl_object.pending():
                    break
        except ssl.SSLWantReadError:
            pass
        except (ssl.SSLError, OSError) as exc:
            log.debug("TLS record refused: %s", exc)
            self.abort()
            return
        if self._outgoing.pending:  # a KeyUpdate answer, or an alert
            self._send()
        app = self._app
        if chunks and app is not None:
            app.data_received(chunks[0] if len(chunks) == 1 else b"".join(chunks))

    def _send(self) -> None:
        raw = self._raw
        if raw is not None and self._outgoing.pending:
            raw.write(self._outgoing.read())

    def _abort_raw(self) -> None:
        if self._raw is not None:
            self._raw.abort()

    # The app's transport -----------------------------------------------------------------------

    def write(self, data: bytes | bytearray | memoryview) -> None:
        if self._raw is None or self._closing:
            return
        try:
            self._ssl.write(data)
        except (ssl.SSLError, OSError) as exc:
            log.debug("TLS write failed: %s", exc)
            self.abort()
            return
        self._raw.write(self._outgoing.read())

    def writelines(self, chunks: Any) -> None:
        self.write(b"".join(chunks))

    def can_write_eof(self) -> bool:
        return False

    def write_eof(self) -> None:
        raise NotImplementedError("TLS connections close; they do not half-close")

    def close(self) -> None:
        """Send close_notify after what is queued, then close the socket once it has gone."""
        if self._closing or self._raw is None:
            return
        self._closing = True
        # The close_notify is written whether or not the peer's has arrived.
        with contextlib.suppress(ssl.SSLError, OSError):
            self._ssl.unwrap()
        self._send()
        self._raw.close()

    def abort(self) -> None:
        self._closing = True
        self._abort_raw()

    def is_closing(self) -> bool:
        return self._closing or self._raw is None or self._raw.is_closing()

    def get_write_buffer_size(self) -> int:
        return self._raw.get_write_buffer_size() if self._raw is not None else 0

    def set_write_buffer_limits(self, high: int | None = None, low: int | None = None) -> None:
        if self._raw is not None:
            self._raw.set_write_buffer_limits(high, low)

    def pause_reading(self) -> None:
        if self._raw is not None:
            self._raw.pause_reading()

    def resume_reading(self) -> None:
        if self._raw is not None:
            self._raw.resume_reading()

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        if name == "ssl_object":
            return self._ssl
        if name == "peercert":
            return self._ssl.getpeercert()
        if name == "cipher":
            return self._ssl.cipher()
        if name == "sslcontext":
            return self._context
        if self._raw is None:
            return default
        return self._raw.get_extra_info(name, default)
