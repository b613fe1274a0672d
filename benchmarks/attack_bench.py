"""The HTTP/2 and HTTP/1.1 attacks of tests/grpc/test_floods.py and tests/security, run once
each against ``sluice serve`` in its own process: the limit that stopped each, how the
connection ended, and the server's peak RSS growth (from /proc) while a polite tritonclient
caller kept asking. Writes ``results/attacks-<date>.md``.

    python -m benchmarks.attack_bench
"""

from __future__ import annotations

import datetime as dt
import os
import socket
import struct
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import hpack

from benchmarks.loadgen.harness import environment, log, save_result
from tests import models
from tests.grpc.test_floods import Polite, attack, frame, request_headers
from tests.subprocess_server import ServerProcess

Send = Callable[[socket.socket], None]


def ping_flood() -> Send:
    pings = frame(6, 0, 0, b"12345678") * 4096
    return lambda sock: sock.sendall(pings)


def settings_flood() -> Send:
    settings = frame(4, 0, 0, struct.pack(">HI", 4, 65_535)) * 4096
    return lambda sock: sock.sendall(settings)


def rapid_reset() -> Send:
    encoder, stream = hpack.Encoder(), iter(range(1, 2**31, 2))

    def send(sock: socket.socket) -> None:
        out = []
        for _ in range(512):
            sid = next(stream)
            out.append(frame(1, 0x4, sid, request_headers(encoder, "ServerLive")))
            out.append(frame(0, 0x1, sid, b"\x00" * 5))
            out.append(frame(3, 0, sid, struct.pack(">I", 8)))
        sock.sendall(b"".join(out))

    return send


def unread_answers() -> Send:
    encoder, stream, sent = hpack.Encoder(), iter(range(1, 2**31, 2)), [False]
    window = frame(4, 0, 0, struct.pack(">HI", 4, 2**31 - 1))
    window += frame(8, 0, 0, struct.pack(">I", 2**31 - 1 - 65_535))

    def send(sock: socket.socket) -> None:
        out = [] if sent[0] else [window]
        sent[0] = True
        for _ in range(64):
            sid = next(stream)
            out.append(frame(1, 0x4, sid, request_headers(encoder, "ServerMetadata")))
            out.append(frame(0, 0x1, sid, b"\x00" * 5))
        sock.sendall(b"".join(out))

    return send


def empty_frames() -> Send:
    encoder = hpack.Encoder()
    data = frame(1, 0x4, 1, request_headers(encoder, "ModelStreamInfer")) + frame(0, 0, 1) * 64
    return lambda sock: sock.sendall(data)


ATTACKS = {
    "PING flood, client never reads": (ping_flood, "1000 control replies queued (Envoy)"),
    "SETTINGS flood, client never reads": (settings_flood, "1000 control replies queued"),
    "Rapid Reset (open + RST, never reads)": (rapid_reset, "resets: 1000 burst, 33/s (nghttp2)"),
    "calls answered, never read (2 GiB window)": (
        unread_answers,
        "output high-water 256 KiB: reading stops",
    ),
    "empty DATA frames": (empty_frames, "1 consecutive empty frame (Envoy)"),
}


def main() -> None:
    started = dt.datetime.now(dt.UTC)
    env = environment()
    root = Path(tempfile.mkdtemp())
    repo = models.write_repository(root, {"identity_fp32": models.identity("FP32")}, {})
    rows = []
    with ServerProcess(repo) as server:
        baseline = server.rss_mb()
        for name, (make, limit) in ATTACKS.items():
            with Polite(server.grpc_port) as polite:
                t0 = time.monotonic()
                growth, closed, code = attack(server, make())
                seconds = time.monotonic() - t0
            ending = "closed" if closed else "reading stopped, connection kept"
            if code is not None:
                ending = "GOAWAY ENHANCE_YOUR_CALM" if code == 0xB else f"GOAWAY code {code}"
            rows.append(
                f"| {name} | {limit} | {ending} | +{growth:.1f} MB | {seconds:.1f} s | "
                f"{polite.answers} ok, {len(polite.failures)} failed |"
            )
            log(rows[-1])
        final = server.rss_mb()
    text = "\n".join(
        [
            f"# Attacks on the native gRPC edge, {started:%Y-%m-%d %H:%M} UTC",
            "",
            f"{env['cpu_count']} cores, load average {os.getloadavg()}; commit {env['commit']}. "
            f"Server RSS {baseline:.0f} MB before, {final:.0f} MB after all attacks.",
            "",
            "| attack | limit | how it ended | peak RSS growth | attack time | polite caller |",
            "| --- | --- | --- | ---: | ---: | --- |",
            *rows,
        ]
    )
    print(text)
    save_result("attacks", started, None, {"environment": env, "rows": rows}, text)


if __name__ == "__main__":
    main()
