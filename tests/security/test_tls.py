"""TLS on both edges (both gRPC transports): real clients connect with the CA's root,
mutual TLS refuses a client without a certificate, old protocol versions are refused."""

from __future__ import annotations

import socket
import ssl
import subprocess
import warnings
from pathlib import Path

import httpx
import numpy as np
import pytest
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient

from server.errors import ConfigError
from server.security.tls import server_context
from tests import models
from tests.live import LiveServer

from .conftest import Pki

DATA = np.ones((1, 3), dtype=np.float32)


def grpc_client(live: LiveServer, pki: Pki, cert: bool = False) -> grpcclient.InferenceServerClient:
    return grpcclient.InferenceServerClient(
        f"localhost:{live.grpc_url.split(':')[1]}",
        ssl=True,
        root_certificates=str(pki.ca),
        private_key=str(pki.client_key) if cert else None,
        certificate_chain=str(pki.client_cert) if cert else None,
    )


def test_grpc_over_tls(tls_server: LiveServer, pki: Pki) -> None:
    with grpc_client(tls_server, pki) as client:
        inputs = [grpcclient.InferInput("INPUT0", [1, 3], "FP32")]
        inputs[0].set_data_from_numpy(DATA)
        result = client.infer("identity_fp32", inputs)
    np.testing.assert_array_equal(result.as_numpy("OUTPUT0"), DATA)


def test_http_over_tls(tls_server: LiveServer, pki: Pki) -> None:
    context = ssl.create_default_context(cafile=str(pki.ca))
    with httpx.Client(verify=context) as client:
        answer = client.get(f"https://localhost:{tls_server.url.split(':')[1]}/v2/health/ready")
    assert answer.status_code == 200


def test_curl_over_tls(tls_server: LiveServer, pki: Pki) -> None:
    port = tls_server.url.split(":")[1]
    out = subprocess.run(
        ["curl", "-sS", "--cacert", str(pki.ca), f"https://localhost:{port}/v2/health/live"],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert out.returncode == 0, out.stderr
    assert '"live":true' in out.stdout


def test_cleartext_is_refused(tls_server: LiveServer) -> None:
    with pytest.raises(httpx.HTTPError):
        httpx.get(f"http://{tls_server.url}/v2/health/live", timeout=5)


def test_tls_1_1_is_refused(tls_server: LiveServer, pki: Pki) -> None:
    port = int(tls_server.url.split(":")[1])
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.load_verify_locations(str(pki.ca))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        context.minimum_version = ssl.TLSVersion.TLSv1
        context.maximum_version = ssl.TLSVersion.TLSv1_1
    context.set_ciphers("ALL:@SECLEVEL=0")
    with (
        socket.create_connection(("127.0.0.1", port), timeout=5) as sock,
        pytest.raises(ssl.SSLError),
    ):
        context.wrap_socket(sock, server_hostname="localhost")


def test_the_server_context(pki: Pki) -> None:
    context = server_context(str(pki.cert), str(pki.key), alpn=("h2",))
    assert context.minimum_version == ssl.TLSVersion.TLSv1_2
    assert context.options & ssl.OP_NO_RENEGOTIATION and context.options & ssl.OP_NO_COMPRESSION
    suites = context.get_ciphers()
    assert suites and all(s["aead"] for s in suites)
    assert all("ECDHE" in s["name"] or s["protocol"] == "TLSv1.3" for s in suites)


def test_a_missing_certificate_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot load the TLS certificate"):
        server_context(str(tmp_path / "no.pem"), str(tmp_path / "no.key"))


def test_the_native_edge_offers_h2_only(repo: Path, pki: Pki) -> None:
    with LiveServer(repo, tls_cert=str(pki.cert), tls_key=str(pki.key)) as live:
        context = ssl.create_default_context(cafile=str(pki.ca))
        context.set_alpn_protocols(["http/1.1", "h2"])
        port = int(live.grpc_url.split(":")[1])
        with (
            socket.create_connection(("127.0.0.1", port), timeout=5) as sock,
            context.wrap_socket(sock, server_hostname="localhost") as tls,
        ):
            assert tls.selected_alpn_protocol() == "h2"
            assert tls.version() in ("TLSv1.2", "TLSv1.3")


@pytest.mark.parametrize("transport", ["native", "aio"])
def test_mutual_tls(tmp_path: Path, pki: Pki, transport: str) -> None:
    repo = models.write_repository(tmp_path, {"identity_fp32": models.identity("FP32")}, {})
    settings = {
        "tls_cert": str(pki.cert),
        "tls_key": str(pki.key),
        "tls_client_ca": str(pki.ca),
        "grpc_transport": transport,
    }
    with LiveServer(repo, **settings) as live:
        with grpc_client(live, pki, cert=True) as client:
            assert client.is_server_live()
        with (
            grpc_client(live, pki, cert=False) as client,
            pytest.raises(Exception, match="UNAVAILABLE"),
        ):
            client.is_server_live(client_timeout=5)
        port = live.url.split(":")[1]
        with pytest.raises(httpx.HTTPError):
            context = ssl.create_default_context(cafile=str(pki.ca))
            httpx.get(f"https://localhost:{port}/v2/health/live", verify=context, timeout=5)
        context = ssl.create_default_context(cafile=str(pki.ca))
        context.load_cert_chain(str(pki.client_cert), str(pki.client_key))
        answer = httpx.get(f"https://localhost:{port}/v2/health/live", verify=context)
        assert answer.status_code == 200


def test_tritonclient_http_over_tls(tls_server: LiveServer, pki: Pki) -> None:
    port = tls_server.url.split(":")[1]
    context = ssl.create_default_context(cafile=str(pki.ca))
    client = httpclient.InferenceServerClient(
        f"localhost:{port}", ssl=True, ssl_context_factory=lambda: context
    )
    inputs = [httpclient.InferInput("INPUT0", [1, 3], "FP32")]
    inputs[0].set_data_from_numpy(DATA)
    result = client.infer("identity_fp32", inputs)
    np.testing.assert_array_equal(result.as_numpy("OUTPUT0"), DATA)
    client.close()
