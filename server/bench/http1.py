"""HTTP/1.1 keep-alive connections that replay pre-encoded requests, one in flight each.

An ``asyncio.Protocol`` rather than a client library: the answer is parsed in the callback
that receives it (status line, ``Content-Length`` or chunked framing) and the next request is
written from there, with no task, future or header object per request. On the reference MLP
this costs 20-35 µs of client CPU per request, as wrk does (18-26 µs), where tritonclient's
aiohttp-based client costs 330-510 µs (``benchmarks/bench_client.py``).
"""

from __future__ import annotations

import asyncio
import re
from time import monotonic_ns
from typing import Protocol, cast

from server.bench.payloads import Encoded

_LENGTH = re.compile(rb"\r\ncontent-length:[ \t]*(\d+)", re.IGNORECASE)
_CHUNKED = re.compile(rb"\r\ntransfer-encoding:[ \t]*chunked", re.IGNORECASE)


class Sink(Protocol):
    """Told about every answer and every lost connection (``server.bench.driver``)."""

    def done(self, conn: Connection, ok: bool, kind: str, answer: bytes, end_ns: int) -> None: ...
    def lost(self, conn: Connection, reason: str) -> None: ...


class Connection(Protocol):
    start_ns: int
    busy: bool
    keep: bool  # hand the answer's bytes to ``done`` (a sample to check, or an error's text)

    def send(self, start_ns: int) -> None: ...
    def close(self) -> None: ...


def requests(authority: str, path: str, payloads: list[Encoded], token: str | None) -> list[bytes]:
    """Every payload as the complete bytes of one request."""
    auth = f"Authorization: Bearer {token}\r\n" if token else ""
    out = []
    for p in payloads:
        extra = "".join(f"{k}: {v}\r\n" for k, v in p.headers)
        head = (
            f"POST {path} HTTP/1.1\r\nHost: {authority}\r\n{auth}{extra}"
            f"Content-Length: {len(p.body)}\r\n\r\n"
        )
        out.append(head.encode("latin-1") + p.body)
    return out


class Http1(asyncio.Protocol):
    def __init__(self, sink: Sink, requests: list[bytes], offset: int) -> None:
        self.sink = sink
        self.requests = requests
        self.next = offset % len(requests)
        self.start_ns = 0
        self.busy = False
        self.keep = False
        self.transport: asyncio.Transport | None = None
        self._buf = b""
        self._chunks: list[bytes] = []  # an answer that spans reads, once its size is known
        self._need = 0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is no subclass

    def send(self, start_ns: int) -> None:
        self.start_ns = start_ns
        self.busy = True
        i = self.next
        self.next = i + 1 if i + 1 < len(self.requests) else 0
        assert self.transport is not None
        self.transport.write(self.requests[i])

    def data_received(self, data: bytes) -> None:
        if self._need:
            self._chunks.append(data)
            self._need -= len(data)
            if self._need > 0:
                return
            data, self._chunks, self._need = b"".join(self._chunks), [], 0
        buf = self._buf + data if self._buf else data
        while buf:
            total = _answer_length(buf)
            if total < 0 or len(buf) < total:
                if total > 0:  # size known: gather the rest without parsing again
                    self._chunks, self._need, buf = [buf], total - len(buf), b""
                break
            answer, buf = buf[:total], buf[total:]
            self._finish(answer)
        self._buf = buf

    def _finish(self, answer: bytes) -> None:
        end_ns = monotonic_ns()
        if not self.busy:
            return  # an answer nobody asked for (a server speaking first): ignore it
        self.busy = False
        if answer[9:12] == b"200":
            self.sink.done(self, True, "", answer if self.keep else b"", end_ns)
        else:
            self.sink.done(self, False, "HTTP " + answer[9:12].decode("latin-1"), answer, end_ns)

    def connection_lost(self, exc: Exception | None) -> None:
        self.sink.lost(self, f"connection: {exc}" if exc else "connection: closed by the server")

    def close(self) -> None:
        if self.transport is not None:
            self.transport.abort()


def _answer_length(buf: bytes) -> int:
    """Bytes of the first complete answer in ``buf``; -1 while its head or chunks are partial."""
    end = buf.find(b"\r\n\r\n")
    if end < 0:
        return -1
    found = _LENGTH.search(buf, 0, end + 2)
    if found is not None:
        return end + 4 + int(found.group(1))
    if _CHUNKED.search(buf, 0, end + 2) is not None:
        return _chunked_end(buf, end + 4)
    return end + 4  # no body (204, 304) or a server that closes to end it: take the head


def _chunked_end(buf: bytes, pos: int) -> int:
    while True:
        line = buf.find(b"\r\n", pos)
        if line < 0:
            return -1
        size = int(buf[pos:line].split(b";")[0], 16)
        pos = line + 2 + size + 2
        if size == 0:
            trailer = buf.find(b"\r\n\r\n", line)  # trailers, if any, end with a blank line
            return -1 if trailer < 0 else (trailer + 4 if trailer > line else pos)
        if pos > len(buf):
            return -1


def body_of(answer: bytes) -> tuple[dict[str, str], bytes]:
    """Headers (lower-case names) and the de-chunked body of one complete answer."""
    end = answer.find(b"\r\n\r\n")
    lines = answer[:end].decode("latin-1").split("\r\n")[1:]
    headers = {k.strip().lower(): v.strip() for k, _, v in (x.partition(":") for x in lines)}
    body = answer[end + 4 :]
    if headers.get("transfer-encoding", "").lower() == "chunked":
        parts, pos = [], 0
        while True:
            line = body.find(b"\r\n", pos)
            size = int(body[pos:line].split(b";")[0], 16)
            if size == 0:
                break
            parts.append(body[line + 2 : line + 2 + size])
            pos = line + 2 + size + 2
        body = b"".join(parts)
    return headers, body
