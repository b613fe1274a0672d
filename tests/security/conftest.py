"""Certificates made by a throwaway CA (trustme), a tokens file, and servers that use them."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import trustme

from server.security.tokens import add_token
from tests import models
from tests.live import LiveServer


@dataclass
class Pki:
    ca: Path
    cert: Path
    key: Path
    client_cert: Path
    client_key: Path


@dataclass
class Tokens:
    path: Path
    infer: str  # scope inference
    admin: str  # scope admin
    both: str  # both scopes


@pytest.fixture(scope="session")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    root = tmp_path_factory.mktemp("pki")
    ca = trustme.CA()
    server = ca.issue_cert("127.0.0.1", "localhost")
    client = ca.issue_cert("client@example.com")
    ca.cert_pem.write_to_path(str(root / "ca.pem"))
    server.cert_chain_pems[0].write_to_path(str(root / "cert.pem"))
    for pem in server.cert_chain_pems[1:]:
        pem.write_to_path(str(root / "cert.pem"), append=True)
    server.private_key_pem.write_to_path(str(root / "key.pem"))
    client.cert_chain_pems[0].write_to_path(str(root / "client.pem"))
    client.private_key_pem.write_to_path(str(root / "client-key.pem"))
    return Pki(
        root / "ca.pem",
        root / "cert.pem",
        root / "key.pem",
        root / "client.pem",
        root / "client-key.pem",
    )


@pytest.fixture(scope="session")
def tokens(tmp_path_factory: pytest.TempPathFactory) -> Tokens:
    path = tmp_path_factory.mktemp("tokens") / "tokens.toml"
    infer = add_token(path, "scorer", ["inference"])
    admin = add_token(path, "operator", ["admin"])
    both = add_token(path, "ci-bot", ["inference", "admin"])
    return Tokens(path, infer, admin, both)


@pytest.fixture(scope="session")
def repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    built = {"identity_fp32": models.identity("FP32"), "spare": models.identity("FP32")}
    return models.write_repository(tmp_path_factory.mktemp("repo"), built, {})


@pytest.fixture(scope="session", params=["native", "aio"])
def secured(repo: Path, tokens: Tokens, request: pytest.FixtureRequest) -> Iterator[LiveServer]:
    """A server with tokens (no TLS), once per gRPC transport."""
    with LiveServer(repo, tokens_file=str(tokens.path), grpc_transport=request.param) as live:
        yield live


@pytest.fixture(scope="session", params=["native", "aio"])
def tls_server(repo: Path, pki: Pki, request: pytest.FixtureRequest) -> Iterator[LiveServer]:
    with LiveServer(
        repo, tls_cert=str(pki.cert), tls_key=str(pki.key), grpc_transport=request.param
    ) as live:
        yield live
