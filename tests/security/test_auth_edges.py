"""Tokens and scopes at both edges, with real clients, on a live server (both gRPC
transports): refused on the headers, before the body is read or anything is queued."""

from __future__ import annotations

import logging
import socket
from collections.abc import Iterator
from typing import Any

import httpx
import numpy as np
import pytest
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient
from tritonclient.utils import InferenceServerException

from server.engine.requests import InferRequest
from tests.live import LiveServer

from .conftest import Tokens

DATA = np.ones((1, 3), dtype=np.float32)


def bearer(secret: str) -> dict[str, str]:
    return {"authorization": f"Bearer {secret}"}


def http_infer(url: str, headers: dict[str, str] | None) -> np.ndarray:
    with httpclient.InferenceServerClient(url) as client:
        inputs = [httpclient.InferInput("INPUT0", [1, 3], "FP32")]
        inputs[0].set_data_from_numpy(DATA)
        result = client.infer("identity_fp32", inputs, headers=headers)
        out: np.ndarray = result.as_numpy("OUTPUT0")
        return out


def grpc_infer(url: str, headers: dict[str, str] | None) -> np.ndarray:
    with grpcclient.InferenceServerClient(url) as client:
        inputs = [grpcclient.InferInput("INPUT0", [1, 3], "FP32")]
        inputs[0].set_data_from_numpy(DATA)
        result = client.infer("identity_fp32", inputs, headers=headers)
        out: np.ndarray = result.as_numpy("OUTPUT0")
        return out


@pytest.fixture
def actors(secured: LiveServer, monkeypatch: pytest.MonkeyPatch) -> Iterator[list[str]]:
    """The actor of every request that reached the engine."""
    seen: list[str] = []
    infer = secured.engine.infer

    async def recording(request: InferRequest) -> Any:
        seen.append(request.actor)
        return await infer(request)

    monkeypatch.setattr(secured.engine, "infer", recording)
    yield seen


def test_http_inference_needs_a_token_with_its_scope(
    secured: LiveServer, tokens: Tokens, actors: list[str]
) -> None:
    np.testing.assert_array_equal(http_infer(secured.url, bearer(tokens.infer)), DATA)
    body = {"inputs": [{"name": "INPUT0", "shape": [1, 3], "datatype": "FP32", "data": [1, 1, 1]}]}
    url = f"http://{secured.url}/v2/models/identity_fp32/infer"
    for headers, status in ((None, 401), (bearer("wrong"), 401), (bearer(tokens.admin), 403)):
        answer = httpx.post(url, json=body, headers=headers)
        assert answer.status_code == status and "error" in answer.json()
        if status == 401:
            assert answer.headers["www-authenticate"] == 'Bearer realm="sluice"'
    assert actors == ["scorer"]  # the refused requests never reached the engine


def test_http_401_does_not_wait_for_the_body(secured: LiveServer) -> None:
    host, port = secured.url.split(":")
    head = (
        "POST /v2/models/identity_fp32/infer HTTP/1.1\r\nHost: x\r\n"
        "Content-Type: application/json\r\nContent-Length: 50000000\r\n\r\n"
    )
    with socket.create_connection((host, int(port)), timeout=5) as sock:
        sock.sendall(head.encode())  # and none of the 50 MB body
        answer = sock.recv(65536).decode()
    assert answer.startswith("HTTP/1.1 401")


def test_http_open_endpoints_need_no_token(secured: LiveServer, tokens: Tokens) -> None:
    base = f"http://{secured.url}"
    assert httpx.get(f"{base}/v2/health/live").status_code == 200
    assert httpx.get(f"{base}/v2/models/identity_fp32").status_code == 200
    assert httpx.get(f"{base}/metrics").status_code == 200
    config = f"{base}/v2/models/identity_fp32/config"
    assert "bearer token is required" in httpx.get(config).json()["error"]
    assert httpx.get(config, headers=bearer(tokens.admin)).status_code == 200


def test_http_model_control_with_an_admin_token(
    secured: LiveServer, tokens: Tokens, caplog: pytest.LogCaptureFixture
) -> None:
    url = f"http://{secured.url}/v2/repository/models/spare/load"
    answer = httpx.post(url, headers=bearer(tokens.infer))
    assert answer.status_code == 403 and "lacks the 'admin' scope" in answer.json()["error"]
    with caplog.at_level(logging.INFO, logger="server.engine.engine"):
        assert httpx.post(url, headers=bearer(tokens.admin), timeout=30).status_code == 200
    assert "loaded by 'operator'" in caplog.text


def test_grpc_inference_needs_a_token_with_its_scope(
    secured: LiveServer, tokens: Tokens, actors: list[str]
) -> None:
    np.testing.assert_array_equal(grpc_infer(secured.grpc_url, bearer(tokens.both)), DATA)
    cases = (
        (None, "StatusCode.UNAUTHENTICATED"),
        (bearer("wrong"), "StatusCode.UNAUTHENTICATED"),
        (bearer(tokens.admin), "StatusCode.PERMISSION_DENIED"),
    )
    for headers, status in cases:
        with pytest.raises(InferenceServerException) as exc:
            grpc_infer(secured.grpc_url, headers)
        assert exc.value.status() == status
    assert actors == ["ci-bot"]


def test_grpc_open_endpoints_and_model_control(secured: LiveServer, tokens: Tokens) -> None:
    with grpcclient.InferenceServerClient(secured.grpc_url) as client:
        assert client.is_server_live()
        assert client.get_model_metadata("identity_fp32").name == "identity_fp32"
        with pytest.raises(InferenceServerException, match="PERMISSION_DENIED"):
            client.unload_model("spare", headers=bearer(tokens.infer))
        with pytest.raises(InferenceServerException, match="UNAUTHENTICATED"):
            client.get_model_repository_index()
        client.load_model("spare", headers=bearer(tokens.admin))
        index = client.get_model_repository_index(headers=bearer(tokens.admin))
        assert any(m.name == "spare" for m in index.models)


def test_model_control_is_off_without_tokens(repo: Any) -> None:
    with LiveServer(repo) as live:
        answer = httpx.post(f"http://{live.url}/v2/repository/models/spare/load")
        assert answer.status_code == 403 and "model control is off" in answer.json()["error"]
        np.testing.assert_array_equal(http_infer(live.url, None), DATA)
