"""Webhook delivery: the registry's outbox POSTed to each URL, at least once, in order.

For each URL, due events are sent oldest first as CloudEvents in structured mode (the body is
exactly the stored outbox body), signed per Standard Webhooks. A 2xx answer is delivered;
anything else, a timeout or a refused connection is retried with exponential backoff and
jitter (or after the receiver's ``Retry-After`` on 429 and 503) until the attempt limit, after
which the event is dead for that URL (``sluice events replay`` resends it). Later events wait
behind one that is being retried, so a receiver sees events in order.

Each attempt is claimed in the database before the POST (a lease of the timeout plus a
margin) and its outcome recorded after it: a deliverer killed mid-POST sends again once the
lease ends, and several deliverers sharing a registry (server workers, hosts) do not send one
event twice at once. State lives in the outbox tables, never in memory.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal
from urllib.parse import urlsplit

import httpx

from server import __version__
from server.errors import ConfigError
from server.registry import DB_FILE, exists
from server.registry.database import connect
from server.registry.outbox import Delivery, Outbox

from . import cloudevent, signing
from .retry import RetryPolicy, retry_after

log = logging.getLogger(__name__)

LEASE_MARGIN_S = 2.0  # beyond the HTTP timeout, before a claimed attempt counts as cut off
Outcome = Literal["delivered", "retry", "dead"]


@dataclass(frozen=True, slots=True)
class Attempt:
    seq: int
    id: str
    url: str
    attempt: int
    outcome: Outcome
    status: int | None
    error: str


@dataclass(slots=True)
class DeliveryReport:
    attempts: list[Attempt] = field(default_factory=list)

    def count(self, outcome: Outcome) -> int:
        return sum(1 for a in self.attempts if a.outcome == outcome)

    @property
    def delivered(self) -> int:
        return self.count("delivered")

    @property
    def failed(self) -> int:
        """Attempts that did not deliver (retried later or dead)."""
        return len(self.attempts) - self.delivered


def check_url(url: str) -> str:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigError(f"webhook URL '{url}' must be an http:// or https:// URL with a host")
    return url


def open_outbox(repository: str | Path, database_url: str | None) -> Outbox:
    """The outbox of an existing registry (``REPO/registry.db`` or a PostgreSQL URL)."""
    if not exists(repository, database_url):
        raise ConfigError(f"'{repository}' has no registry ({DB_FILE}): register a model first")
    return Outbox(connect(database_url or str(Path(repository) / DB_FILE)))


class Deliverer:
    """Delivers the outbox of one registry to ``urls``.

    ``run_once()`` makes one pass in the caller's thread; ``start()`` runs passes in a daemon
    thread every ``poll_interval_s`` (sooner after ``notify()``) until ``stop()``. Each thread
    uses its own database connection. ``secret`` None sends unsigned requests.
    """

    def __init__(
        self,
        repository: str | Path,
        database_url: str | None,
        urls: Sequence[str],
        secret: str | None,
        *,
        policy: RetryPolicy | None = None,
        clock: Callable[[], float] = time.time,
        rng: random.Random | None = None,
    ) -> None:
        if not urls:
            raise ConfigError("no webhook URL to deliver to")
        self.repository = repository
        self.database_url = database_url
        self.urls = tuple(dict.fromkeys(check_url(u) for u in urls))
        if secret is not None:
            signing.secret_key(secret)  # a malformed whsec_ secret fails here, not per POST
        self.secret = secret
        self.policy = policy or RetryPolicy()
        self.counts = {"delivered": 0, "retry": 0, "dead": 0}
        self._clock = clock
        self._rng = rng or random.Random()
        self._wake = threading.Event()
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None

    # -- one pass ------------------------------------------------------------------------

    def run_once(self) -> DeliveryReport:
        """Subscribe the URLs and attempt every due event once (in order, per URL)."""
        outbox = self._open()
        try:
            with self._client() as client:
                return self._pass(outbox, client)
        finally:
            outbox.db.close()

    def _open(self) -> Outbox:
        outbox = open_outbox(self.repository, self.database_url)
        try:
            for url in self.urls:
                outbox.subscribe(url)
        except BaseException:
            outbox.db.close()
            raise
        return outbox

    def _client(self) -> httpx.Client:
        return httpx.Client(timeout=self.policy.timeout_s, follow_redirects=False)

    def _pass(self, outbox: Outbox, client: httpx.Client) -> DeliveryReport:
        report = DeliveryReport()
        for url in self.urls:
            self._deliver_url(outbox, client, url, report)
        return report

    def _deliver_url(
        self, outbox: Outbox, client: httpx.Client, url: str, report: DeliveryReport
    ) -> None:
        while not self._stopping.is_set():
            now = self._clock()
            blocked = outbox.waiting(url, now)
            due = [d for d in outbox.due(url, now) if blocked is None or d.seq < blocked]
            if not due:
                return
            for delivery in due:
                if self._stopping.is_set():
                    return
                started = self._clock()
                lease = started + self.policy.timeout_s + LEASE_MARGIN_S
                attempt = outbox.claim(delivery.seq, url, started, lease)
                if attempt is None:
                    return  # another deliverer has it in flight: later events wait behind it
                result = self._attempt(outbox, client, delivery, attempt)
                report.attempts.append(result)
                self.counts[result.outcome] += 1
                if result.outcome == "retry":
                    return

    def _attempt(
        self, outbox: Outbox, client: httpx.Client, delivery: Delivery, attempt: int
    ) -> Attempt:
        status, error, wait = self._post(client, delivery)
        now = self._clock()
        if status is not None and 200 <= status < 300:
            outbox.record(delivery.seq, delivery.url, "delivered", attempt, now, "")
            log.info(
                "webhook %s: event %d (%s) delivered, attempt %d",
                delivery.url,
                delivery.seq,
                delivery.type,
                attempt,
            )
            return Attempt(
                delivery.seq, delivery.id, delivery.url, attempt, "delivered", status, ""
            )
        if attempt >= self.policy.max_attempts:
            outcome: Outcome = "dead"
            log.warning(
                "webhook %s: event %d (%s) is dead after %d attempts: %s",
                delivery.url,
                delivery.seq,
                delivery.type,
                attempt,
                error,
            )
            outbox.record(delivery.seq, delivery.url, "dead", attempt, now, error)
        else:
            outcome = "retry"
            delay = (
                min(wait, self.policy.max_retry_after_s)
                if wait is not None
                else self.policy.backoff(attempt, self._rng)
            )
            log.info(
                "webhook %s: event %d attempt %d failed (%s); retry in %.1f s",
                delivery.url,
                delivery.seq,
                attempt,
                error,
                delay,
            )
            outbox.record(delivery.seq, delivery.url, "pending", attempt, now + delay, error)
        return Attempt(delivery.seq, delivery.id, delivery.url, attempt, outcome, status, error)

    def _post(
        self, client: httpx.Client, delivery: Delivery
    ) -> tuple[int | None, str, float | None]:
        """(status or None, error text, Retry-After seconds or None): HTTP errors are
        translated here and nowhere else."""
        headers = {
            "content-type": cloudevent.CONTENT_TYPE,
            "user-agent": f"sluice/{__version__}",
            **signing.headers(self.secret, delivery.id, delivery.body, int(self._clock())),
        }
        try:
            with client.stream("POST", delivery.url, content=delivery.body, headers=headers) as r:
                if 200 <= r.status_code < 300:
                    return r.status_code, "", None
                snippet = _first_bytes(r, 200).decode(errors="replace").strip()
                wait = None
                if r.status_code in (429, 503):
                    wait = retry_after(r.headers.get("retry-after"), self._clock())
        except httpx.TimeoutException:
            return None, f"no answer within {self.policy.timeout_s:g} s", None
        except httpx.HTTPError as exc:
            return None, f"{type(exc).__name__}: {exc}", None
        error = f"HTTP {r.status_code}" + (f": {snippet}" if snippet else "")
        return r.status_code, error, wait

    # -- background thread ---------------------------------------------------------------

    def start(self) -> None:
        """Open the registry and subscribe the URLs (errors raise here), then deliver in a
        daemon thread."""
        if self._thread is not None:
            raise RuntimeError("the deliverer is already started")
        outbox = self._open()
        self._stopping.clear()
        self._thread = threading.Thread(
            target=self._run, args=(outbox,), name="sluice-webhooks", daemon=True
        )
        self._thread.start()

    def notify(self) -> None:
        """Something was written to the outbox: deliver now rather than at the next poll."""
        self._wake.set()

    def stop(self, timeout: float | None = None) -> bool:
        """Stop after the POST in flight; False if the thread was still running at ``timeout``
        (its attempt is then redelivered later, at least once)."""
        thread = self._thread
        if thread is None:
            return True
        self._stopping.set()
        self._wake.set()
        thread.join(timeout)
        if thread.is_alive():
            log.warning("webhook delivery did not stop within %s s", timeout)
            return False
        self._thread = None
        return True

    def _run(self, outbox: Outbox | None) -> None:
        failures = 0
        with self._client() as client:
            while not self._stopping.is_set():
                try:
                    if outbox is None:
                        outbox = self._open()
                    self._pass(outbox, client)
                    failures = 0
                except Exception as exc:
                    # The database went away (a PostgreSQL restart): reconnect, backing off to
                    # 30 s between tries so an outage is not a log line every half second.
                    log.warning("webhook delivery pass failed: %s", exc, exc_info=failures == 0)
                    failures += 1
                    if outbox is not None:
                        _close_quietly(outbox)
                        outbox = None
                wait = self.policy.poll_interval_s * 2.0 ** min(failures, 6)
                self._wake.wait(min(wait, max(30.0, self.policy.poll_interval_s)))
                self._wake.clear()
        if outbox is not None:
            outbox.db.close()


def _first_bytes(response: httpx.Response, limit: int) -> bytes:
    """At most ``limit`` bytes of a body for the error text: a receiver's huge error page is
    not read into memory."""
    buffer = b""
    for chunk in response.iter_bytes():
        buffer += chunk
        if len(buffer) >= limit:
            break
    return buffer[:limit]


def _close_quietly(outbox: Outbox) -> None:
    try:
        outbox.db.close()
    except Exception as exc:  # the connection is already broken: nothing left to release
        log.debug("closing the registry connection failed: %s", exc)
