"""Building, binding and draining the gRPC server."""

from __future__ import annotations

import asyncio
import time

import numpy as np
import pytest
import tritonclient.grpc as triton
from tritonclient.utils import InferenceServerException

from server.errors import ConfigError
from server.grpc.server import GrpcEdge, build_grpc_server
from server.settings import ServerSettings

from .conftest import Live


def fp32() -> list[triton.InferInput]:
    data = np.ones((1, 3), dtype=np.float32)
    return [triton.InferInput("INPUT0", [1, 3], "FP32").set_data_from_numpy(data)]


def second_edge(live: Live, port: int = 0) -> GrpcEdge:
    async def build() -> GrpcEdge:
        settings = ServerSettings(grpc_port=port, grpc_transport=live.transport)
        edge = build_grpc_server(live.engine, settings)
        await edge.start()
        return edge

    return live.run(build())


def test_a_taken_port_is_a_config_error(live: Live) -> None:
    with pytest.raises(ConfigError, match="cannot bind"):
        second_edge(live, live.edge.port)


def test_stop_drains_calls_in_flight_and_refuses_new_ones(live: Live) -> None:
    edge = second_edge(live)
    answers: list[object] = []
    with triton.InferenceServerClient(f"127.0.0.1:{edge.port}") as client:
        client.async_infer("slow", fp32(), callback=lambda result, error: answers.append(result))
        time.sleep(0.1)  # the request waits in the slow model's queue
        stopping = asyncio.run_coroutine_threadsafe(edge.stop(5), live.loop)
        time.sleep(0.1)
        with pytest.raises(InferenceServerException):
            client.infer("identity_fp32", fp32(), client_timeout=1)
        stopping.result(10)
        deadline = time.monotonic() + 5
        while not answers and time.monotonic() < deadline:
            time.sleep(0.01)
    assert len(answers) == 1 and isinstance(answers[0], triton.InferResult)
