"""``sluice serve`` as a process: tokens reloaded on SIGHUP, --require-auth refuses an
exposed address."""

from __future__ import annotations

import signal
import time
from pathlib import Path

import httpx
import pytest

from server.cli import main
from server.security.tokens import add_token
from tests.subprocess_server import ServerProcess


@pytest.mark.slow
def test_sighup_reloads_the_tokens_file(repo: Path, tmp_path: Path) -> None:
    path = tmp_path / "tokens.toml"
    first = add_token(path, "first", ["admin"])
    args = ("--tokens", str(path), "--workers", "2", "--log-level", "info")
    with ServerProcess(repo, *args) as server:
        # Each worker reads the tokens file as it starts: wait until both have.
        deadline = time.monotonic() + 60
        while server.output().count("HTTP on") < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert server.output().count("HTTP on") == 2
        url = f"http://127.0.0.1:{server.http_port}/v2/models/stats"
        assert httpx.get(url, headers={"authorization": f"Bearer {first}"}).status_code == 200
        second = add_token(path, "second", ["admin"])
        assert httpx.get(url, headers={"authorization": f"Bearer {second}"}).status_code == 401
        assert server.process is not None
        server.process.send_signal(signal.SIGHUP)
        deadline = time.monotonic() + 10
        status = 401
        while status == 401 and time.monotonic() < deadline:
            time.sleep(0.05)
            status = httpx.get(url, headers={"authorization": f"Bearer {second}"}).status_code
        assert status == 200
        assert second not in server.output() and first not in server.output()


def test_require_auth_refuses_an_exposed_address(
    repo: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(["serve", str(repo), "--host", "0.0.0.0", "--require-auth"])
    assert code == 2
    assert "without TLS or tokens (--require-auth)" in capsys.readouterr().err


def test_a_bad_tokens_file_stops_the_start(
    repo: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "tokens.toml"
    path.write_text("[x]\nsha256 = 1\n")
    assert main(["serve", str(repo), "--tokens", str(path), "--http-port", "0"]) == 2
    assert "sha256 must be 64 lowercase hex digits" in capsys.readouterr().err
