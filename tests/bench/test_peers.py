"""Protocol-generic: sluice bench against servers that are not Sluice, with tokens and TLS."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from server.bench import Bench, Step, run_step
from server.bench.control import ServerUnreachable
from tests.bench.conftest import quick
from tests.bench.peers import grpc_peer, http_peer, self_signed

needs_openssl = pytest.mark.skipif(shutil.which("openssl") is None, reason="no openssl")


def test_http_peer_gets_the_token() -> None:
    with http_peer() as (url, seen):
        result = run_step(quick(url, model="echo", token="s3cret", rows=2))
    assert result.errors == 0, result.error_messages
    assert result.requests > 0
    assert result.server is None  # this server has no statistics endpoint
    assert seen.tokens == {"Bearer s3cret"}


def test_grpc_peer_gets_the_token() -> None:
    with grpc_peer() as (url, seen):
        result = run_step(quick(url, model="echo", protocol="grpc", token="s3cret"))
    assert result.errors == 0, result.error_messages
    assert result.requests > 0
    assert seen.tokens == {"Bearer s3cret"}


@needs_openssl
def test_tls_with_a_ca_file(tmp_path: Path) -> None:
    cert = self_signed(tmp_path)
    with http_peer(cert) as (url, seen):
        result = run_step(quick(url, model="echo", tls=True, ca=cert.cert, token="t"))
        assert result.errors == 0 and result.requests > 0
        assert seen.tokens == {"Bearer t"}
    with grpc_peer(cert) as (url, seen):
        result = run_step(quick(url, model="echo", protocol="grpc", tls=True, ca=cert.cert))
        assert result.errors == 0 and result.requests > 0


@needs_openssl
def test_tls_refuses_an_unknown_certificate(tmp_path: Path) -> None:
    cert = self_signed(tmp_path)
    with http_peer(cert) as (url, _), pytest.raises(ServerUnreachable, match="TLS"):
        run_step(quick(url, model="echo", tls=True))  # the system store does not know it


def test_slow_answers_time_out() -> None:
    with http_peer(delay_s=1.0) as (url, _):
        result = run_step(quick(url, model="echo", timeout_s=0.3, warmup_s=0, duration_s=1.0))
    assert result.requests == 0
    assert result.error_kinds.keys() == {"timeout"}
    assert 2 <= result.errors <= 8  # 2 connections, each failing every 0.3-0.4 s


def test_a_server_that_goes_away_counts_connection_errors() -> None:
    with http_peer() as (url, _):
        bench = Bench(quick(url, model="echo", warmup_s=0, duration_s=0.5))  # prepared while up
    with bench:
        result = bench.run_step(Step(concurrency=2))
    assert result.requests == 0
    assert result.errors > 0
    assert all(kind.startswith("connection") for kind in result.error_kinds), result.error_kinds
