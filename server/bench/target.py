"""Everything a client process needs to open connections and check answers (picklable)."""

from __future__ import annotations

import asyncio
import socket
from dataclasses import dataclass, field
from typing import Any

from server.bench import http1, http2
from server.bench.config import BenchConfig
from server.bench.http1 import Connection, Sink
from server.bench.payloads import Encoded
from server.bench.tls import client_context

GRPC_PATH = "/inference.GRPCInferenceService/"


@dataclass(frozen=True, slots=True)
class Target:
    config: BenchConfig
    payloads: tuple[Encoded, ...]
    outputs: dict[str, tuple[int, ...]] = field(default_factory=dict)  # expected answer shapes


def authority(host: str, port: int) -> str:
    """``host:port`` for the Host / :authority header (an IPv6 address in brackets)."""
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


class Opener:
    """Opens connections to the target from inside a client process's event loop."""

    def __init__(self, target: Target) -> None:
        c = self.config = target.config
        self.ssl = (
            client_context(c.ca, ["h2" if c.protocol == "grpc" else "http/1.1"]) if c.tls else None
        )
        if c.protocol == "grpc":
            method = "ModelStreamInfer" if c.streaming else "ModelInfer"
            self.block = http2.header_block(
                authority(c.host, c.port), GRPC_PATH + method, c.tls, c.token
            )
            self.messages = [http2.message(p.body) for p in target.payloads]
        else:
            path = (
                f"/v2/models/{c.model}" + (f"/versions/{c.version}" if c.version else "") + "/infer"
            )
            self.requests = http1.requests(
                authority(c.host, c.port), path, list(target.payloads), c.token
            )

    async def open(self, sink: Sink, offset: int) -> Connection:
        c = self.config
        loop = asyncio.get_running_loop()
        protocol: Any
        if c.protocol == "grpc":
            _, protocol = await loop.create_connection(
                lambda: http2.Http2(sink, self.messages, self.block, offset, c.streaming),
                c.host,
                c.port,
                ssl=self.ssl,
                server_hostname=c.host if self.ssl else None,
            )
            tls = protocol.transport.get_extra_info("ssl_object")
            if tls is not None and tls.selected_alpn_protocol() != "h2":
                protocol.close()
                raise ConnectionError("the server did not agree to HTTP/2 (ALPN h2) over TLS")
            await protocol.ready  # the server's SETTINGS: its windows and frame size are known
        else:
            _, protocol = await loop.create_connection(
                lambda: http1.Http1(sink, self.requests, offset),
                c.host,
                c.port,
                ssl=self.ssl,
                server_hostname=c.host if self.ssl else None,
            )
        sock = protocol.transport.get_extra_info("socket")
        if sock is not None:  # requests go out whole: never wait for an ACK (Nagle)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        conn: Connection = protocol
        return conn
