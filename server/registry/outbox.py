"""The event outbox's delivery state, per webhook URL.

Events are written by the registry in the transaction of their change. A URL subscribes from
the event sequence at the time it is first configured (a new webhook receives what happens
next, not the whole history; ``replay`` resends older ones). Each (event, URL) pair moves
pending -> delivered, or pending -> dead after the last retry; state lives in the database,
so a server killed mid-delivery resumes after restart (at least once).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from .database import Database, Row
from .records import now

State = Literal["pending", "delivered", "dead"]


@dataclass(frozen=True, slots=True)
class Delivery:
    seq: int
    id: str
    type: str
    subject: str
    time: str
    body: bytes
    url: str
    state: State
    attempts: int
    next_attempt_at: float
    last_error: str


class Outbox:
    def __init__(self, db: Database) -> None:
        self.db = db

    def subscribe(self, url: str) -> None:
        with self.db.write() as tx:
            if tx.one("SELECT 1 AS x FROM endpoints WHERE url = ?", (url,)) is None:
                head = tx.one("SELECT event_seq FROM head WHERE id = 1")
                assert head is not None
                tx.execute(
                    "INSERT INTO endpoints (url, since_seq, created_at) VALUES (?, ?, ?)",
                    (url, int(head["event_seq"]), now()),
                )

    def due(self, url: str, at: float, limit: int = 100) -> list[Delivery]:
        """Events for ``url`` not yet delivered nor dead whose next attempt is due, oldest first."""
        with self.db.read() as tx:
            rows = tx.all(
                "SELECT o.seq, o.id, o.type, o.subject, o.time, o.body, d.state, d.attempts, "
                "d.next_attempt_at, d.last_error FROM outbox o "
                "JOIN endpoints e ON e.url = ? "
                "LEFT JOIN deliveries d ON d.seq = o.seq AND d.url = e.url "
                "WHERE o.seq > e.since_seq AND (d.state IS NULL OR "
                "(d.state = 'pending' AND d.next_attempt_at <= ?)) ORDER BY o.seq LIMIT ?",
                (url, at, limit),
            )
        return [_delivery(r, url) for r in rows]

    def next_due(self, url: str) -> float | None:
        """When the earliest pending retry for ``url`` is due (None: nothing scheduled)."""
        with self.db.read() as tx:
            row = tx.one(
                "SELECT MIN(next_attempt_at) AS t FROM deliveries WHERE url = ? AND state = ?",
                (url, "pending"),
            )
        return None if row is None or row["t"] is None else float(row["t"])

    def record(
        self, seq: int, url: str, state: State, attempts: int, next_attempt_at: float, error: str
    ) -> None:
        with self.db.write() as tx:
            tx.execute("DELETE FROM deliveries WHERE seq = ? AND url = ?", (seq, url))
            tx.execute(
                "INSERT INTO deliveries (seq, url, state, attempts, next_attempt_at, last_error,"
                " updated_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
                (seq, url, state, attempts, next_attempt_at, error, now()),
            )

    def claim(self, seq: int, url: str, at: float, lease_until: float) -> int | None:
        """Take the next attempt at event ``seq`` for ``url`` if it is still due at ``at``.

        The pair stays pending, not due before ``lease_until``: another deliverer sharing the
        registry skips it, and a deliverer killed during the POST retries once the lease ends.
        Returns the attempt's number, or None when another deliverer took or finished it.
        """
        with self.db.write() as tx:
            row = tx.one(
                "SELECT state, attempts, next_attempt_at FROM deliveries WHERE seq = ? AND url = ?",
                (seq, url),
            )
            if row is not None and (row["state"] != "pending" or row["next_attempt_at"] > at):
                return None
            attempt = (int(row["attempts"]) if row is not None else 0) + 1
            tx.execute("DELETE FROM deliveries WHERE seq = ? AND url = ?", (seq, url))
            tx.execute(
                "INSERT INTO deliveries (seq, url, state, attempts, next_attempt_at, last_error,"
                " updated_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
                (
                    seq,
                    url,
                    "pending",
                    attempt,
                    lease_until,
                    "attempt in progress or cut off",
                    now(),
                ),
            )
        return attempt

    def waiting(self, url: str, at: float) -> int | None:
        """The first event for ``url`` that waits for a later retry (or a lease); later events
        wait behind it, so a receiver gets events in order."""
        with self.db.read() as tx:
            row = tx.one(
                "SELECT MIN(d.seq) AS seq FROM deliveries d JOIN endpoints e ON e.url = d.url "
                "WHERE d.url = ? AND d.state = ? AND d.next_attempt_at > ? AND d.seq > e.since_seq",
                (url, "pending", at),
            )
        return None if row is None or row["seq"] is None else int(row["seq"])

    def urls(self) -> list[str]:
        """The subscribed webhook URLs."""
        with self.db.read() as tx:
            return [str(r["url"]) for r in tx.all("SELECT url FROM endpoints ORDER BY url")]

    def listing(self, state: State | None = None, url: str | None = None) -> list[Delivery]:
        """Every (event, URL) pair with its state: never-tried events count as pending."""
        with self.db.read() as tx:
            rows = tx.all(
                "SELECT o.seq, o.id, o.type, o.subject, o.time, o.body, e.url, d.state, "
                "d.attempts, d.next_attempt_at, d.last_error FROM outbox o "
                "JOIN endpoints e ON o.seq > e.since_seq "
                "LEFT JOIN deliveries d ON d.seq = o.seq AND d.url = e.url ORDER BY o.seq, e.url"
            )
        found = [_delivery(r, r["url"]) for r in rows]
        return [
            d
            for d in found
            if (state is None or d.state == state) and (url is None or d.url == url)
        ]

    def events(self, from_seq: int = 1) -> list[Delivery]:
        """The outbox itself, whatever the subscriptions (``sluice events list`` without URLs)."""
        with self.db.read() as tx:
            rows = tx.all(
                "SELECT seq, id, type, subject, time, body FROM outbox WHERE seq >= ? ORDER BY seq",
                (from_seq,),
            )
        return [_delivery(r, "") for r in rows]

    def replay(self, from_seq: int, url: str | None = None) -> int:
        """Make events from ``from_seq`` on due again (delivered and dead ones included)."""
        with self.db.write() as tx:
            if url is None:
                count = tx.execute("DELETE FROM deliveries WHERE seq >= ?", (from_seq,))
                tx.execute(
                    "UPDATE endpoints SET since_seq = ? WHERE since_seq >= ?",
                    (from_seq - 1, from_seq),
                )
            else:
                count = tx.execute(
                    "DELETE FROM deliveries WHERE seq >= ? AND url = ?", (from_seq, url)
                )
                tx.execute(
                    "UPDATE endpoints SET since_seq = ? WHERE since_seq >= ? AND url = ?",
                    (from_seq - 1, from_seq, url),
                )
        return count


def _delivery(row: Row, url: str) -> Delivery:
    body = row["body"]
    return Delivery(
        seq=int(row["seq"]),
        id=row["id"],
        type=row["type"],
        subject=row["subject"],
        time=row["time"],
        body=body.encode() if isinstance(body, str) else bytes(body),
        url=url,
        state=row.get("state") or "pending",
        attempts=int(row.get("attempts") or 0),
        next_attempt_at=float(row.get("next_attempt_at") or 0.0),
        last_error=row.get("last_error") or "",
    )
