"""``sluice events`` as a user runs it, and a deliverer killed mid-POST."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from server.cli import main
from server.registry import Registry
from server.registry.outbox import Outbox
from tests.events.receiver import Answer, Receiver

SECRET = "cli-secret"


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def where(repo: Path, database: str | None) -> list[str]:
    return ["--repository", str(repo), *(["--registry", database] if database else [])]


def deliver_once(capsys: pytest.CaptureFixture[str], loc: list[str], url: str) -> tuple[int, str]:
    code, out, _ = run(
        capsys, "events", "deliver", "--webhook", url, "--secret", SECRET, "--once",
        "--max-attempts", "2", "--base-delay-s", "0", *loc,
    )  # fmt: skip
    return code, out


def test_deliver_list_and_replay(
    capsys: pytest.CaptureFixture[str],
    registry: Registry,
    repo: Path,
    database: str | None,
    model_file: Path,
) -> None:
    loc = where(repo, database)
    with Receiver(SECRET, [Answer(500, body=b"down")] * 2) as receiver:
        assert deliver_once(capsys, loc, receiver.url)[0] == 0  # subscribes; nothing due
        registry.register("fraud", model_file)
        code, out = deliver_once(capsys, loc, receiver.url)
        assert code == 1 and "retry" in out and "will retry 1" in out
        code, out = deliver_once(capsys, loc, receiver.url)
        assert code == 1 and "dead 1" in out

        code, out, _ = run(capsys, "events", "list", "--dead", *loc)
        assert code == 0
        header, row = out.splitlines()
        assert header.split() == [
            "seq", "type", "subject", "url", "state", "attempts", "last_error",
        ]  # fmt: skip
        assert row.split()[:6] == [
            "1", "io.sluice.model.registered", "models/fraud:1", receiver.url, "dead", "2",
        ]  # fmt: skip
        assert row.endswith("HTTP 500: down")
        assert run(capsys, "events", "list", "--pending", *loc)[1].strip() == "(none)"

        code, out, _ = run(capsys, "events", "replay", "--from", "1", *loc)
        assert code == 0 and "due again" in out
        (listed,) = json.loads(run(capsys, "events", "list", "--pending", "--json", *loc)[1])
        assert listed["state"] == "pending" and listed["attempts"] == 0
        code, out = deliver_once(capsys, loc, receiver.url)
        assert code == 0 and "delivered 1" in out
        assert len(receiver.received) == 3
    (listed,) = json.loads(run(capsys, "events", "list", "--delivered", "--json", *loc)[1])
    assert listed["seq"] == 1 and listed["url"] == receiver.url and listed["attempts"] == 1


def test_list_shows_events_before_any_webhook(
    capsys: pytest.CaptureFixture[str], registry: Registry, repo: Path, database: str | None,
    model_file: Path,
) -> None:  # fmt: skip
    registry.register("fraud", model_file)
    registry.alias("fraud", "production", 1, force=True, reason="test")
    code, out, _ = run(capsys, "events", "list", "--json", *where(repo, database))
    assert code == 0
    rows = json.loads(out)
    assert [(r["seq"], r["type"], r["state"]) for r in rows] == [
        (1, "io.sluice.model.registered", None),
        (2, "io.sluice.model.aliased", None),
    ]


def test_errors_go_to_stderr_with_a_non_zero_exit(
    capsys: pytest.CaptureFixture[str], registry: Registry, repo: Path, database: str | None,
    model_file: Path, tmp_path: Path,
) -> None:  # fmt: skip
    loc = where(repo, database)
    code, out, err = run(capsys, "events", "replay", "--from", "1", *loc)
    assert (code, out) == (1, "") and "no event with sequence number 1" in err
    registry.register("fraud", model_file)
    code, _, err = run(capsys, "events", "replay", "--from", "1", *loc)
    assert code == 1 and "no webhook has been delivered to" in err
    code, _, err = run(capsys, "events", "replay", "--from", "0", *loc)
    assert code == 1 and "--from must be" in err
    code, _, err = run(capsys, "events", "list", "--webhook", "http://127.0.0.1:9/x", *loc)
    assert code == 1 and "no webhook 'http://127.0.0.1:9/x'" in err
    code, _, err = run(capsys, "events", "deliver", "--webhook", "nope", "--once", *loc)
    assert code == 1 and "must be an http:// or https:// URL" in err
    code, _, err = run(capsys, "events", "list", "--repository", str(tmp_path / "empty"))
    assert code == 1 and "has no registry" in err


def deliver_process(repo: Path, database: str | None, url: str) -> subprocess.Popen[bytes]:
    argv = [sys.executable, "-m", "server", "events", "deliver", "--webhook", url, "--follow"]
    argv += ["--timeout-s", "1", "--secret", SECRET, *where(repo, database)]
    return subprocess.Popen(argv, stderr=subprocess.DEVNULL, env={**os.environ})


@pytest.mark.slow
def test_deliverer_killed_mid_post_delivers_after_restart(
    registry: Registry, repo: Path, database: str | None, model_file: Path
) -> None:
    with Receiver(SECRET) as receiver:
        Outbox(registry.db).subscribe(receiver.url)
        registry.register("fraud", model_file)
        receiver.hold.set()
        first = deliver_process(repo, database, receiver.url)
        try:
            receiver.wait_for(1)
        finally:
            first.send_signal(signal.SIGKILL)
            first.wait(30)
        assert first.returncode == -signal.SIGKILL
        assert Outbox(registry.db).listing()[0].state == "pending"
        receiver.hold.clear()
        receiver.release()
        second = deliver_process(repo, database, receiver.url)
        try:
            got = receiver.wait_for(2)
            deadline = time.monotonic() + 30
            while Outbox(registry.db).listing()[0].state != "delivered":
                assert time.monotonic() < deadline, "the delivery was never recorded"
                time.sleep(0.05)
        finally:
            second.send_signal(signal.SIGTERM)
            assert second.wait(30) == 0
    assert got[0].id == got[1].id and got[0].body == got[1].body
    assert all(r.verified for r in got)
    (done,) = Outbox(registry.db).listing()
    assert (done.state, done.attempts) == ("delivered", 2)
