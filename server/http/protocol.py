"""uvicorn's httptools protocol with read deadlines, as nginx has them: a request whose
headers have not all arrived ``header_timeout_s`` after it began (or after the connection
opened), or whose body stalls ``body_timeout_s`` between two reads, has its connection
closed. uvicorn itself bounds only idle keep-alive, so a client trickling its headers
(slowloris) could hold a connection and its memory for ever."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

log = logging.getLogger(__name__)


class GuardedProtocol(HttpToolsProtocol):
    header_timeout_s = 60.0  # nginx's client_header_timeout
    body_timeout_s = 60.0  # nginx's client_body_timeout

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._deadline: asyncio.TimerHandle | None = None
        self._in_body = False

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm(self.header_timeout_s, "no request headers in time")

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self._in_body:
            self._arm(self.body_timeout_s, "the request body stalled")
        super().data_received(data)

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._arm(self.header_timeout_s, "the request headers did not arrive in time")

    def on_headers_complete(self) -> None:
        super().on_headers_complete()
        self._in_body = True
        self._arm(self.body_timeout_s, "the request body stalled")

    def on_message_complete(self) -> None:
        super().on_message_complete()
        self._in_body = False
        self._disarm()

    def _arm(self, seconds: float, reason: str) -> None:
        self._disarm()
        self._deadline = self.loop.call_later(seconds, self._expired, seconds, reason)

    def _disarm(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None

    def _expired(self, seconds: float, reason: str) -> None:
        self._deadline = None
        if self.flow.read_paused:  # the application is not reading: not the client's stall
            self._arm(seconds, reason)
            return
        log.debug("closing an HTTP connection: %s", reason)
        self.transport.close()


def guarded_protocol(header_timeout_s: float, body_timeout_s: float) -> type[GuardedProtocol]:
    """The protocol class for uvicorn's ``Config(http=...)`` with these deadlines."""
    return type(
        "GuardedProtocol",
        (GuardedProtocol,),
        {"header_timeout_s": header_timeout_s, "body_timeout_s": body_timeout_s},
    )
