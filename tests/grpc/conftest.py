"""A live engine + gRPC edge on a loopback port, driven by tritonclient.grpc.

The server runs on its own uvloop event loop in a background thread, as ``sluice serve`` runs
it; the tests talk to it over a real socket with Triton's client. Every test that uses ``live``
runs once per transport: the native HTTP/2 edge and grpc.aio.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import threading
from collections.abc import Coroutine, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import pytest
import tritonclient.grpc as triton
import uvloop
from prometheus_client import CollectorRegistry

from server.engine.engine import Engine
from server.engine.repository import Repository
from server.grpc.server import GrpcEdge, build_grpc_server
from server.metrics import Metrics
from server.settings import ServerSettings
from tests import models

T = TypeVar("T")

MAX_MESSAGE_BYTES = 1 << 20
# A queue delay long enough that a request waits in the queue while a test cancels it.
SLOW_DELAY_US = 600_000


@pytest.fixture(scope="session")
def repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    built = {f"identity_{dt.lower()}": models.identity(dt) for dt in models.ONNX_TYPES}
    built.update(add_sub=models.add_sub(), spare=models.identity("FP32"))
    built["slow"] = models.identity("FP32")
    slow = f"[batching]\nmax_queue_delay_us = {SLOW_DELAY_US}\n"
    return models.write_repository(tmp_path_factory.mktemp("repo"), built, {"slow": slow})


@dataclass
class Live:
    """The running server: its URL for clients, its engine, and a way onto its loop."""

    url: str
    transport: str
    engine: Engine
    edge: GrpcEdge
    loop: asyncio.AbstractEventLoop

    def run(self, coro: Coroutine[Any, Any, T], timeout: float = 30) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def run_later(self, coro: Coroutine[Any, Any, T]) -> concurrent.futures.Future[T]:
        return asyncio.run_coroutine_threadsafe(coro, self.loop)


@pytest.fixture(scope="session", params=["native", "aio"])
def live(repo: Path, request: pytest.FixtureRequest) -> Iterator[Live]:
    transport = request.param
    loop = uvloop.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, name="sluice-test-loop", daemon=True)
    thread.start()
    settings = ServerSettings(
        host="127.0.0.1",
        grpc_port=0,
        grpc_max_message_bytes=MAX_MESSAGE_BYTES,
        grpc_transport=transport,
    )

    async def up() -> tuple[Engine, GrpcEdge]:
        engine = Engine(Repository(repo), Metrics(CollectorRegistry()), drain_timeout_s=5)
        await engine.start()
        edge = build_grpc_server(engine, settings)
        await edge.start()
        return engine, edge

    engine, edge = asyncio.run_coroutine_threadsafe(up(), loop).result(60)
    server = Live(f"127.0.0.1:{edge.port}", transport, engine, edge, loop)
    yield server

    async def down() -> None:
        await edge.stop(1)
        await engine.stop()

    server.run(down())
    loop.call_soon_threadsafe(loop.stop)
    thread.join(10)
    loop.close()


@pytest.fixture
def client(live: Live) -> Iterator[triton.InferenceServerClient]:
    with triton.InferenceServerClient(live.url) as c:
        yield c
