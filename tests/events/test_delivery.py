"""Webhook delivery on both registry backends, to a real receiver on loopback."""

from __future__ import annotations

import email.utils
import random
import time
from pathlib import Path

import orjson
import pytest

from server.errors import ConfigError
from server.events.delivery import Deliverer
from server.events.retry import RetryPolicy, retry_after
from server.registry import Registry, open_registry
from server.registry.outbox import Outbox
from tests.events.receiver import Answer, Receiver
from tests.registry.postgres import Cluster

SECRET = "whsec_" + "c2x1aWNlLXRlc3Qtc2VjcmV0LWtleS0zMmJ5dGVz"
FAST = RetryPolicy(base_delay_s=0.0, timeout_s=5.0)


class Clock:
    """Wall-clock time that moves only when the test says (signatures stay within 5 min)."""

    def __init__(self) -> None:
        self.now = time.time()

    def __call__(self) -> float:
        return self.now


def deliverer(
    repo: Path, database: str | None, receiver: Receiver, policy: RetryPolicy = FAST, **kw: object
) -> Deliverer:
    d = Deliverer(repo, database, [receiver.url], SECRET, policy=policy, **kw)  # type: ignore[arg-type]
    d.run_once()  # subscribes the URL: it receives what happens from now on
    return d


def state(registry: Registry, seq: int = 1) -> tuple[str, int, str]:
    (d,) = [d for d in Outbox(registry.db).listing() if d.seq == seq]
    return d.state, d.attempts, d.last_error


def test_500_twice_then_200_delivers_once_after_two_retries(
    registry: Registry, repo: Path, database: str | None, model_file: Path
) -> None:
    with Receiver(SECRET, [Answer(500), Answer(500)]) as receiver:
        d = deliverer(repo, database, receiver)
        registry.register("fraud", model_file, actor="ana", reason="first cut")
        outcomes = [[a.outcome for a in d.run_once().attempts] for _ in range(4)]
        assert outcomes == [["retry"], ["retry"], ["delivered"], []]
        got = receiver.received
    assert len(got) == 3 and all(r.verified for r in got)
    assert len({r.id for r in got}) == 1 and len({r.body for r in got}) == 1
    (stored,) = Outbox(registry.db).events()
    assert got[0].body == stored.body and got[0].id == stored.id
    assert got[0].headers["content-type"] == "application/cloudevents+json"
    event = orjson.loads(got[0].body)
    assert event["type"] == "io.sluice.model.registered"
    assert event["subject"] == "models/fraud:1"
    assert event["data"]["actor"] == "ana" and event["data"]["reason"] == "first cut"
    assert state(registry) == ("delivered", 3, "")


@pytest.mark.parametrize("form", ["seconds", "http-date"])
def test_retry_after_is_honoured(
    registry: Registry, repo: Path, database: str | None, model_file: Path, form: str
) -> None:
    clock = Clock()
    later = "30" if form == "seconds" else email.utils.formatdate(clock.now + 30, usegmt=True)
    status = 429 if form == "seconds" else 503
    policy = RetryPolicy(base_delay_s=1000.0, max_delay_s=1000.0)
    with Receiver(SECRET, [Answer(status, {"Retry-After": later})]) as receiver:
        d = deliverer(repo, database, receiver, policy, clock=clock)
        registry.register("fraud", model_file)
        assert [a.outcome for a in d.run_once().attempts] == ["retry"]
        (pending,) = Outbox(registry.db).listing("pending")
        assert pending.next_attempt_at == pytest.approx(clock.now + 30, abs=1.0)
        assert pending.last_error == f"HTTP {status}"
        clock.now += 28
        assert d.run_once().attempts == []
        clock.now += 3
        assert [a.outcome for a in d.run_once().attempts] == ["delivered"]
        assert len(receiver.received) == 2


def test_backoff_doubles_with_jitter_up_to_the_cap(
    registry: Registry, repo: Path, database: str | None, model_file: Path
) -> None:
    clock = Clock()
    policy = RetryPolicy(max_attempts=10, base_delay_s=10.0, max_delay_s=40.0)
    with Receiver(SECRET, [Answer(500)] * 5) as receiver:
        d = deliverer(repo, database, receiver, policy, clock=clock, rng=random.Random(7))
        registry.register("fraud", model_file)
        delays = []
        for _ in range(5):
            assert [a.outcome for a in d.run_once().attempts] == ["retry"]
            (pending,) = Outbox(registry.db).listing("pending")
            delays.append(pending.next_attempt_at - clock.now)
            clock.now = pending.next_attempt_at
    for attempt, delay in enumerate(delays, start=1):
        ceiling = min(10.0 * 2 ** (attempt - 1), 40.0)
        assert ceiling / 2 <= delay <= ceiling
    assert len(set(delays)) == 5  # jittered, not a fixed schedule


def test_later_events_wait_behind_one_being_retried(
    registry: Registry, repo: Path, database: str | None, model_file: Path
) -> None:
    clock = Clock()
    policy = RetryPolicy(base_delay_s=10.0)
    with Receiver(SECRET, [Answer(500)]) as receiver:
        d = deliverer(repo, database, receiver, policy, clock=clock)
        registry.register("fraud", model_file)
        registry.deploy("fraud", 1)
        assert [a.seq for a in d.run_once().attempts] == [1]
        clock.now += 1
        assert d.run_once().attempts == []  # event 2 does not overtake event 1
        clock.now += 10
        assert [a.seq for a in d.run_once().attempts] == [1, 2]
        kinds = [orjson.loads(r.body)["type"] for r in receiver.received]
    assert kinds == ["io.sluice.model.registered"] * 2 + ["io.sluice.model.deployed"]


def test_dead_after_the_attempt_limit_then_replay_resends(
    registry: Registry, repo: Path, database: str | None, model_file: Path
) -> None:
    policy = RetryPolicy(max_attempts=3, base_delay_s=0.0)
    with Receiver(SECRET, [Answer(500, body=b"boom")] * 3) as receiver:
        d = deliverer(repo, database, receiver, policy)
        registry.register("fraud", model_file)
        outcomes = [a.outcome for _ in range(4) for a in d.run_once().attempts]
        assert outcomes == ["retry", "retry", "dead"]
        assert state(registry) == ("dead", 3, "HTTP 500: boom")
        registry.deploy("fraud", 1)  # a dead event does not hold back the next one
        assert [(a.seq, a.outcome) for a in d.run_once().attempts] == [(2, "delivered")]
        assert Outbox(registry.db).replay(1) == 2
        assert [(a.seq, a.outcome) for a in d.run_once().attempts] == [
            (1, "delivered"),
            (2, "delivered"),
        ]
        ids = [r.id for r in receiver.received]
    assert state(registry) == ("delivered", 1, "")
    assert ids[0] == ids[1] == ids[2] == ids[4] != ids[3] == ids[5]


def test_wrong_secret_is_refused_by_the_receiver(
    registry: Registry, repo: Path, database: str | None, model_file: Path
) -> None:
    with Receiver("the receiver's secret") as receiver:
        d = Deliverer(repo, database, [receiver.url], "another secret", policy=FAST)
        d.run_once()
        registry.register("fraud", model_file)
        assert [a.outcome for a in d.run_once().attempts] == ["retry"]
        (got,) = receiver.received
    assert not got.verified and "no signature matches" in got.error
    assert state(registry)[2].startswith("HTTP 401")


def test_unreachable_url_is_retried_with_the_reason(
    registry: Registry, repo: Path, database: str | None, model_file: Path
) -> None:
    with Receiver(SECRET) as receiver:
        url = receiver.url
    d = Deliverer(repo, database, [url], SECRET, policy=FAST)
    d.run_once()
    registry.register("fraud", model_file)
    assert [a.outcome for a in d.run_once().attempts] == ["retry"]
    assert "ConnectError" in state(registry)[2]


def test_background_thread_delivers_on_notify_and_stops_bounded(
    registry: Registry, repo: Path, database: str | None, model_file: Path
) -> None:
    with Receiver(SECRET) as receiver:
        d = Deliverer(repo, database, [receiver.url], SECRET, policy=FAST)
        d.start()
        try:
            registry.register("fraud", model_file)
            d.notify()
            receiver.wait_for(1)
            receiver.hold.set()
            registry.deploy("fraud", 1)
            d.notify()
            receiver.wait_for(2)
            assert d.stop(timeout=0.2) is False  # its POST is held by the receiver
            receiver.release()
        finally:
            assert d.stop(timeout=10) is True
    assert d.counts["delivered"] == 2
    assert [x.state for x in Outbox(registry.db).listing()] == ["delivered", "delivered"]


def test_retry_after_forms() -> None:
    now = 1_800_000_000.0
    assert retry_after("120", now) == 120.0
    assert retry_after(email.utils.formatdate(now + 60, usegmt=True), now) == 60.0
    assert retry_after(email.utils.formatdate(now - 60, usegmt=True), now) == 0.0
    assert retry_after("soon", now) is None
    assert retry_after(None, now) is None


def test_bad_configuration_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="at least 1"):
        RetryPolicy(max_attempts=0)
    with pytest.raises(ConfigError, match="must be positive"):
        RetryPolicy(timeout_s=0)
    with pytest.raises(ConfigError, match="http:// or https://"):
        Deliverer(tmp_path, None, ["ftp://example.com/x"], None)
    with pytest.raises(ConfigError, match="no webhook URL"):
        Deliverer(tmp_path, None, [], None)
    with pytest.raises(ConfigError, match="not valid base64"):
        Deliverer(tmp_path, None, ["http://127.0.0.1:9/"], "whsec_!!")
    with pytest.raises(ConfigError, match="has no registry"):
        Deliverer(tmp_path, None, ["http://127.0.0.1:9/"], None).run_once()


def test_two_deliverers_sharing_a_registry_do_not_send_an_event_twice(
    registry: Registry, repo: Path, database: str | None, model_file: Path
) -> None:
    with Receiver(SECRET) as receiver:
        first = deliverer(repo, database, receiver)
        second = deliverer(repo, database, receiver)
        registry.register("fraud", model_file)
        registry.deploy("fraud", 1)
        receiver.hold.set()
        first.start()
        try:
            receiver.wait_for(1)
            assert second.run_once().attempts == []  # event 1 is claimed, event 2 waits
            receiver.release()
            receiver.wait_for(2)
        finally:
            assert first.stop(timeout=10)
    assert [orjson.loads(r.body)["data"]["version"] for r in receiver.received] == [1, 1]
    assert len({r.id for r in receiver.received}) == 2


def test_background_thread_reconnects_after_the_database_drops_it(
    pg_cluster: Cluster, repo: Path, model_file: Path, caplog: pytest.LogCaptureFixture
) -> None:
    database = pg_cluster.new_database()
    with Receiver(SECRET) as receiver, open_registry(repo, database) as registry:
        d = Deliverer(repo, database, [receiver.url], SECRET, policy=FAST)
        d.start()
        try:
            with registry.db.write() as tx:  # drop every other connection to this database
                tx.all(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                    "WHERE datname = current_database() AND pid <> pg_backend_pid()"
                )
            registry.register("fraud", model_file)
            d.notify()
            (got,) = receiver.wait_for(1)
        finally:
            assert d.stop(timeout=10)
    assert got.verified and orjson.loads(got.body)["subject"] == "models/fraud:1"
    assert "webhook delivery pass failed" in caplog.text
