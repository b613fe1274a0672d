"""HTTP/1.1 deadlines and the connection cap, from raw sockets on a live server."""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.live import LiveServer


@pytest.fixture(scope="module")
def strict(repo: Path) -> Iterator[LiveServer]:
    with LiveServer(
        repo,
        http_header_timeout_s=0.3,
        http_body_timeout_s=0.3,
        http_keepalive_timeout_s=0.3,
        http_max_concurrency=4,
    ) as live:
        yield live


def connect(live: LiveServer) -> socket.socket:
    host, port = live.url.split(":")
    return socket.create_connection((host, int(port)), timeout=5)


def closed_within(sock: socket.socket, seconds: float) -> bool:
    """Whether the server closes ``sock`` within ``seconds`` (reading what it sends)."""
    sock.settimeout(seconds)
    try:
        while sock.recv(65536):
            pass
    except TimeoutError:
        return False
    except OSError:
        pass
    return True


def test_a_silent_connection_is_closed(strict: LiveServer) -> None:
    with connect(strict) as sock:
        assert closed_within(sock, 3)


def test_trickled_headers_are_cut_off(strict: LiveServer) -> None:
    """Slowloris: each byte in time for a per-read timeout, the whole too slow."""
    with connect(strict) as sock:
        started = time.monotonic()
        try:
            for byte in b"GET /v2/health/live HTTP/1.1\r\nHost: x\r\nX-Slow: " + b"a" * 40:
                sock.sendall(bytes([byte]))
                time.sleep(0.05)
        except OSError:
            pass  # closed while trickling
        assert closed_within(sock, 3)
        assert time.monotonic() - started < 4


def test_a_stalled_body_is_cut_off(strict: LiveServer) -> None:
    head = b"POST /v2/models/identity_fp32/infer HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n"
    with connect(strict) as sock:
        sock.sendall(head + b'{"inputs": ')
        assert closed_within(sock, 3)


def test_a_polite_request_and_idle_keep_alive(strict: LiveServer) -> None:
    with connect(strict) as sock:
        sock.sendall(b"GET /v2/health/live HTTP/1.1\r\nHost: x\r\n\r\n")
        assert sock.recv(65536).startswith(b"HTTP/1.1 200")
        assert closed_within(sock, 3)  # the keep-alive timeout


def test_connections_over_the_cap_get_503(strict: LiveServer) -> None:
    held = [connect(strict) for _ in range(4)]
    try:
        time.sleep(0.05)
        with connect(strict) as sock:
            sock.sendall(b"GET /v2/health/live HTTP/1.1\r\nHost: x\r\n\r\n")
            assert sock.recv(65536).startswith(b"HTTP/1.1 503")
    finally:
        for sock in held:
            sock.close()
