"""The native edge's per-connection limits, one by one, from a raw socket on a small edge."""

from __future__ import annotations

import socket
import struct
import time

import hpack
import numpy as np
import pytest

from .conftest import Live
from .test_floods import ENHANCE_YOUR_CALM, PREFACE, SETTINGS, frame, goaway_code, request_headers
from .test_http2 import PATH, Answer, Raw, framed, infer_message, small_edge

pytestmark = pytest.mark.parametrize("live", ["native"], indirect=True)


HEADERS = [
    (":method", "POST"),
    (":scheme", "http"),
    (":path", PATH),
    (":authority", "localhost"),
    ("content-type", "application/grpc"),
]


def send(port: int, data: bytes) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port), timeout=10)
    sock.sendall(PREFACE + SETTINGS + data)
    return sock


def closing_code(live: Live, data: bytes, **limits: float) -> int | None:
    edge = small_edge(live, **limits)  # type: ignore[arg-type]
    try:
        with send(edge.port, data) as sock:
            return goaway_code(sock)[1]
    finally:
        live.run(edge.stop(1))


def test_a_reset_stream_counts_until_its_handler_ends(live: Live) -> None:
    edge = small_edge(live, max_concurrent_streams=2)
    client = Raw(edge.port)
    try:
        ids = []
        for model in ("slow", "slow", "identity_fp32"):
            sid = client.conn.get_next_available_stream_id()
            client.conn.send_headers(sid, HEADERS)
            client.conn.send_data(sid, framed(infer_message(model, np.ones((1, 3)))), True)
            if not ids:
                client.conn.reset_stream(sid)
            client.answers[sid] = Answer()
            ids.append(sid)
        client.flush()
        _, first, second = ids
        # One write: the reset call's handler has not ended when the third stream arrives.
        assert client.answer(second).reset == 7  # REFUSED_STREAM
        assert client.answer(first).status == 0
    finally:
        client.close()
        live.run(edge.stop(1))


def test_resets_past_the_budget_end_the_connection(live: Live) -> None:
    encoder = hpack.Encoder()
    out = []
    for sid in range(1, 2 * 40, 2):
        out.append(frame(1, 0x5, sid, request_headers(encoder, "ServerLive")))
        out.append(frame(3, 0, sid, struct.pack(">I", 8)))
    assert closing_code(live, b"".join(out), reset_burst=10) == ENHANCE_YOUR_CALM


def test_server_resets_spend_the_budget_too(live: Live) -> None:
    """The 2025 variant: the client makes the server reset (here, WINDOW_UPDATE of 0)."""
    encoder = hpack.Encoder()
    out = []
    for sid in range(1, 2 * 40, 2):
        out.append(frame(1, 0x4, sid, request_headers(encoder, "ModelStreamInfer")))
        out.append(frame(8, 0, sid, struct.pack(">I", 0)))
    assert closing_code(live, b"".join(out), reset_burst=10) == ENHANCE_YOUR_CALM


def test_empty_frames_end_the_connection(live: Live) -> None:
    encoder = hpack.Encoder()
    data = frame(1, 0x4, 1, request_headers(encoder, "ModelStreamInfer")) + frame(0, 0, 1) * 3
    assert closing_code(live, data) == ENHANCE_YOUR_CALM


def test_too_many_settings_entries(live: Live) -> None:
    data = frame(4, 0, 0, struct.pack(">HI", 4, 65_535) * 33)
    assert closing_code(live, data) == ENHANCE_YOUR_CALM


def test_window_update_flood(live: Live) -> None:
    data = frame(8, 0, 0, struct.pack(">I", 1)) * 100
    assert closing_code(live, data) == ENHANCE_YOUR_CALM


def test_priority_flood(live: Live) -> None:
    data = frame(2, 0, 1, struct.pack(">IB", 0, 16)) * 200
    assert closing_code(live, data) == ENHANCE_YOUR_CALM


def test_window_overflow_is_a_flow_control_error(live: Live) -> None:
    data = frame(8, 0, 0, struct.pack(">I", 2**31 - 1))
    assert closing_code(live, data) == 0x3


def test_oversized_header_block_is_refused(live: Live) -> None:
    block = hpack.Encoder().encode([("x-big", "a" * 140_000)], huffman=False)
    assert closing_code(live, frame(1, 0x5, 1, block)) == 0x1


def test_a_connection_without_a_preface_is_closed(live: Live) -> None:
    edge = small_edge(live, handshake_timeout_s=0.2)
    try:
        with socket.create_connection(("127.0.0.1", edge.port), timeout=10) as sock:
            started = time.monotonic()
            assert sock.recv(1 << 16)  # the server's SETTINGS
            assert goaway_code(sock) == (True, 0x1)
            assert time.monotonic() - started < 5
    finally:
        live.run(edge.stop(1))


def test_a_header_block_left_open_is_closed(live: Live) -> None:
    block = request_headers(hpack.Encoder(), "ServerLive")
    code = closing_code(live, frame(1, 0x1, 1, block), header_timeout_s=0.2)
    assert code == 0x1


def test_an_idle_connection_is_sent_away(live: Live) -> None:
    assert closing_code(live, b"", idle_timeout_s=0.2) == 0x0


def test_input_over_the_cap_is_not_credited(live: Live) -> None:
    """Past the cap on buffered input, the connection window is not credited, so a client
    holding many unfinished requests cannot make the server buffer more."""
    edge = small_edge(live, connection_window=65_535, max_buffered_input=40_000)
    encoder = hpack.Encoder()
    partial = struct.pack(">BI", 0, 500_000) + b"x" * 16_000  # a message never finished
    out = [frame(4, 0, 0, struct.pack(">HI", 4, 2**20))]
    for sid in (1, 3, 5):
        out.append(frame(1, 0x4, sid, request_headers(encoder, "ModelInfer")))
        out.append(frame(0, 0, sid, partial[:16_000]))
    try:
        with send(edge.port, b"".join(out)) as sock:
            sock.settimeout(1.0)
            received = b""
            try:
                while chunk := sock.recv(1 << 16):
                    received += chunk
            except TimeoutError:
                pass
    finally:
        live.run(edge.stop(1))
    updates = [
        struct.unpack_from(">I", received, i + 9)[0]
        for i in _frame_offsets(received)
        if received[i + 3] == 8 and struct.unpack_from(">I", received, i + 5)[0] == 0
    ]
    assert updates == []  # 48 KB buffered, over the 40 KB cap: no connection credit


def _frame_offsets(data: bytes) -> list[int]:
    offsets, pos = [], 0
    while pos + 9 <= len(data):
        offsets.append(pos)
        high, low = struct.unpack_from(">HB", data, pos)
        pos += 9 + (high << 8 | low)
    return offsets


def test_hpack_table_over_the_default_is_refused(live: Live) -> None:
    """The server never raises SETTINGS_HEADER_TABLE_SIZE, so the client's table stays 4 KiB."""
    encoder = hpack.Encoder()
    encoder.header_table_size = 1 << 20  # the next block starts with a size update to 1 MiB
    block = request_headers(encoder, "ServerLive")
    assert closing_code(live, frame(1, 0x5, 1, block)) == 0x9  # COMPRESSION_ERROR
