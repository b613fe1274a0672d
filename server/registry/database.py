"""The registry's connection to its database: one small interface, SQLite and PostgreSQL.

SQL is written once with ``?`` placeholders and portable types (INTEGER, BIGINT, TEXT); the
PostgreSQL backend rewrites the placeholders. Every write transaction first locks the single
``head`` row, so writers queue instead of colliding: SQLite with ``BEGIN IMMEDIATE`` and a long
busy timeout, PostgreSQL with ``SELECT ... FOR UPDATE``. The head row also carries the audit
chain's head and a change counter that servers poll to notice deploys within a second.
"""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, Literal, Protocol

from server.errors import ConfigError, Conflict, RegistryUnavailable

Row = dict[str, Any]
Dialect = Literal["sqlite", "postgresql"]

SCHEMA_VERSION = 1
SCHEMA = """
CREATE TABLE IF NOT EXISTS head (
    id INTEGER PRIMARY KEY,
    schema_version INTEGER NOT NULL,
    audit_seq BIGINT NOT NULL,
    audit_hash TEXT NOT NULL,
    event_seq BIGINT NOT NULL,
    changes BIGINT NOT NULL
);
CREATE TABLE IF NOT EXISTS versions (
    name TEXT NOT NULL,
    version INTEGER NOT NULL,
    sha256 TEXT NOT NULL,
    files TEXT NOT NULL,
    description TEXT NOT NULL,
    created_at TEXT NOT NULL,
    actor TEXT NOT NULL,
    archived INTEGER NOT NULL DEFAULT 0,
    deleted INTEGER NOT NULL DEFAULT 0,
    validation TEXT,
    UNIQUE (name, version)
);
CREATE TABLE IF NOT EXISTS tags (
    name TEXT NOT NULL,
    version INTEGER NOT NULL,
    key TEXT NOT NULL,
    value TEXT NOT NULL,
    PRIMARY KEY (name, version, key)
);
CREATE TABLE IF NOT EXISTS aliases (
    name TEXT NOT NULL,
    alias TEXT NOT NULL,
    version INTEGER NOT NULL,
    PRIMARY KEY (name, alias)
);
CREATE TABLE IF NOT EXISTS deployments (
    name TEXT NOT NULL,
    version INTEGER NOT NULL,
    deployed_at TEXT NOT NULL,
    actor TEXT NOT NULL,
    PRIMARY KEY (name, version)
);
CREATE TABLE IF NOT EXISTS audit (
    seq BIGINT PRIMARY KEY,
    time TEXT NOT NULL,
    actor TEXT NOT NULL,
    action TEXT NOT NULL,
    model TEXT NOT NULL,
    version INTEGER,
    reason TEXT NOT NULL,
    request_id TEXT NOT NULL,
    sha256 TEXT NOT NULL,
    detail TEXT NOT NULL,
    prev_hash TEXT NOT NULL,
    hash TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS audit_model ON audit (model, seq);
CREATE TABLE IF NOT EXISTS outbox (
    seq BIGINT PRIMARY KEY,
    id TEXT NOT NULL UNIQUE,
    type TEXT NOT NULL,
    subject TEXT NOT NULL,
    time TEXT NOT NULL,
    body TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS endpoints (
    url TEXT PRIMARY KEY,
    since_seq BIGINT NOT NULL,
    created_at TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS deliveries (
    seq BIGINT NOT NULL,
    url TEXT NOT NULL,
    state TEXT NOT NULL,
    attempts INTEGER NOT NULL,
    next_attempt_at DOUBLE PRECISION NOT NULL,
    last_error TEXT NOT NULL,
    updated_at TEXT NOT NULL,
    PRIMARY KEY (seq, url)
);
CREATE TABLE IF NOT EXISTS rollouts (
    name TEXT PRIMARY KEY,
    baseline INTEGER NOT NULL,
    candidate INTEGER NOT NULL,
    weight INTEGER NOT NULL,
    policy TEXT NOT NULL,
    started_at TEXT NOT NULL,
    updated_at TEXT NOT NULL,
    actor TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS leases (
    name TEXT PRIMARY KEY,
    holder TEXT NOT NULL,
    expires_at DOUBLE PRECISION NOT NULL
);
CREATE TABLE IF NOT EXISTS rollout_figures (
    holder TEXT NOT NULL,
    name TEXT NOT NULL,
    figures TEXT NOT NULL,
    reported_at DOUBLE PRECISION NOT NULL,
    PRIMARY KEY (holder, name)
);
"""


class Tx(Protocol):
    """One transaction's cursor: ``?`` placeholders, rows as dicts."""

    def execute(self, sql: str, params: Sequence[Any] = ()) -> int: ...
    def one(self, sql: str, params: Sequence[Any] = ()) -> Row | None: ...
    def all(self, sql: str, params: Sequence[Any] = ()) -> list[Row]: ...


class Database(Protocol):
    dialect: Dialect
    location: str

    def write(self) -> contextlib.AbstractContextManager[Tx]:
        """A transaction holding the registry's write lock (the head row) until it ends."""
        ...

    def read(self) -> contextlib.AbstractContextManager[Tx]: ...
    def close(self) -> None: ...


class _SqliteTx:
    def __init__(self, conn: sqlite3.Connection) -> None:
        self._conn = conn

    def execute(self, sql: str, params: Sequence[Any] = ()) -> int:
        return self._conn.execute(sql, params).rowcount

    def one(self, sql: str, params: Sequence[Any] = ()) -> Row | None:
        row = self._conn.execute(sql, params).fetchone()
        return dict(row) if row is not None else None

    def all(self, sql: str, params: Sequence[Any] = ()) -> list[Row]:
        return [dict(r) for r in self._conn.execute(sql, params).fetchall()]


class SqliteDatabase:
    """``REPO/registry.db`` in WAL mode; one connection per instance (not thread-shared)."""

    dialect: Dialect = "sqlite"

    def __init__(self, path: Path, busy_timeout_s: float = 300.0) -> None:
        self.location = str(path)
        try:
            self._conn = sqlite3.connect(
                path, timeout=busy_timeout_s, isolation_level=None, check_same_thread=False
            )
        except sqlite3.Error as exc:
            raise ConfigError(f"registry '{path}': cannot open ({exc})") from exc
        self._conn.row_factory = sqlite3.Row
        self._conn.execute("PRAGMA journal_mode=WAL")
        # FULL: a committed register survives a power cut, not only a process kill.
        self._conn.execute("PRAGMA synchronous=FULL")
        self._conn.execute("PRAGMA foreign_keys=ON")
        _create(self)

    @contextlib.contextmanager
    def write(self) -> Iterator[Tx]:
        # IMMEDIATE takes the write lock now, so the version read below cannot go stale;
        # waiting writers sleep in SQLite's busy handler instead of failing.
        with _sqlite_errors(self.location):
            self._conn.execute("BEGIN IMMEDIATE")
            yield from self._finish()

    @contextlib.contextmanager
    def read(self) -> Iterator[Tx]:
        with _sqlite_errors(self.location):
            self._conn.execute("BEGIN")
            yield from self._finish()

    def _finish(self) -> Iterator[Tx]:
        try:
            yield _SqliteTx(self._conn)
        except BaseException:
            if self._conn.in_transaction:
                self._conn.execute("ROLLBACK")
            raise
        self._conn.execute("COMMIT")

    def script(self, sql: str) -> None:
        self._conn.executescript(sql)

    def close(self) -> None:
        self._conn.close()


class _PostgresTx:
    def __init__(self, cursor: Any) -> None:
        self._cursor = cursor

    def execute(self, sql: str, params: Sequence[Any] = ()) -> int:
        self._cursor.execute(sql.replace("?", "%s"), params)
        return int(self._cursor.rowcount)

    def one(self, sql: str, params: Sequence[Any] = ()) -> Row | None:
        self._cursor.execute(sql.replace("?", "%s"), params)
        row = self._cursor.fetchone()
        return dict(row) if row is not None else None

    def all(self, sql: str, params: Sequence[Any] = ()) -> list[Row]:
        self._cursor.execute(sql.replace("?", "%s"), params)
        return [dict(r) for r in self._cursor.fetchall()]


class PostgresDatabase:
    """A shared registry for several servers on several hosts (psycopg 3)."""

    dialect: Dialect = "postgresql"

    def __init__(self, url: str) -> None:
        import psycopg
        from psycopg.rows import dict_row

        self.location = url

        def connect() -> Any:
            return psycopg.connect(url, row_factory=dict_row, connect_timeout=10)

        self._connect = connect
        try:
            self._conn = self._connect()
        except psycopg.Error as exc:
            raise ConfigError(f"registry '{_redact(url)}': cannot connect ({exc})") from exc
        _create(self)

    @contextlib.contextmanager
    def write(self) -> Iterator[Tx]:
        with self._errors(), self._conn.transaction(), self._conn.cursor() as cursor:
            tx = _PostgresTx(cursor)
            tx.execute("SELECT id FROM head WHERE id = 1 FOR UPDATE")
            yield tx

    @contextlib.contextmanager
    def read(self) -> Iterator[Tx]:
        with self._errors(), self._conn.transaction(), self._conn.cursor() as cursor:
            yield _PostgresTx(cursor)

    @contextlib.contextmanager
    def _errors(self) -> Iterator[None]:
        """psycopg's errors as Sluice's; a connection lost (server restart) is reopened at the
        next transaction."""
        import psycopg

        if self._conn.closed or self._conn.broken:
            try:
                self._conn = self._connect()
            except psycopg.Error as exc:
                raise RegistryUnavailable(
                    f"registry '{_redact(self.location)}': cannot connect ({exc})"
                ) from exc
        try:
            yield
        except psycopg.errors.UniqueViolation as exc:
            raise Conflict(
                f"registry: a concurrent change won ({exc.diag.message_primary})"
            ) from exc
        except psycopg.Error as exc:
            raise RegistryUnavailable(f"registry '{_redact(self.location)}': {exc}") from exc

    def script(self, sql: str) -> None:
        with self._conn.transaction(), self._conn.cursor() as cursor:
            # Two servers creating the schema at once would race on CREATE TABLE IF NOT EXISTS.
            cursor.execute("SELECT pg_advisory_xact_lock(7411031)")
            for statement in sql.split(";"):
                if statement.strip():
                    cursor.execute(statement)

    def close(self) -> None:
        self._conn.close()


@contextlib.contextmanager
def _sqlite_errors(location: str) -> Iterator[None]:
    try:
        yield
    except sqlite3.IntegrityError as exc:
        raise Conflict(f"registry: a concurrent change won ({exc})") from exc
    except sqlite3.Error as exc:
        raise RegistryUnavailable(f"registry '{location}': {exc}") from exc


def _create(db: SqliteDatabase | PostgresDatabase) -> None:
    db.script(SCHEMA)
    with db.read() as tx:
        head = tx.one("SELECT schema_version FROM head WHERE id = 1")
    if head is None:
        db.script(
            "INSERT INTO head (id, schema_version, audit_seq, audit_hash, event_seq, changes) "
            f"VALUES (1, {SCHEMA_VERSION}, 0, '', 0, 0) ON CONFLICT (id) DO NOTHING;"
        )
    elif head["schema_version"] != SCHEMA_VERSION:
        raise ConfigError(
            f"registry '{_redact(db.location)}' has schema version {head['schema_version']}; "
            f"this Sluice reads version {SCHEMA_VERSION}"
        )


def _redact(url: str) -> str:
    """A connection URL without its password, for messages."""
    if "@" not in url or "://" not in url:
        return url
    scheme, rest = url.split("://", 1)
    creds, host = rest.rsplit("@", 1)
    user = creds.split(":", 1)[0]
    return f"{scheme}://{user}:***@{host}"


def connect(location: str) -> SqliteDatabase | PostgresDatabase:
    """``postgresql://...`` (or ``postgres://``) or a path to a SQLite file."""
    if location.startswith(("postgresql://", "postgres://")):
        return PostgresDatabase(location)
    return SqliteDatabase(Path(location))
