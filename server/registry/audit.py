"""The tamper-evident audit chain: each row's hash is an HMAC over the previous hash and the row.

The key is generated when the registry is created and kept outside the database
(``$SLUICE_AUDIT_KEY`` or a 0600 file beside it), so someone who can edit the database but
not read the key cannot rewrite a row, delete one, or append a forged one without
``sluice audit verify`` noticing.
Every event carries the chain head, so receivers hold copies the database cannot rewrite.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from server.errors import ConfigError

KEY_FILE = "audit.key"
FIELDS = (
    "seq",
    "time",
    "actor",
    "action",
    "model",
    "version",
    "reason",
    "request_id",
    "sha256",
    "detail",
)


def row_hash(key: bytes, prev_hash: str, row: Mapping[str, Any]) -> str:
    """HMAC-SHA256 over the previous hash and the row's fields as canonical JSON."""
    body = orjson.dumps({f: row[f] for f in FIELDS}, option=orjson.OPT_SORT_KEYS)
    return hmac.new(key, prev_hash.encode() + b"\n" + body, hashlib.sha256).hexdigest()


def load_key(directory: Path, from_env: str | None, create: bool) -> bytes:
    """The chain key: ``from_env`` when set, else ``directory/audit.key`` (created 0600)."""
    if from_env:
        return from_env.encode()
    path = directory / KEY_FILE
    if not path.exists() and create:
        directory.mkdir(parents=True, exist_ok=True)
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            pass  # another process created it first: read theirs
        else:
            with os.fdopen(fd, "w") as fh:
                fh.write(secrets.token_hex(32))
                fh.flush()
                os.fsync(fh.fileno())
    try:
        text = path.read_text().strip()
    except OSError as exc:
        raise ConfigError(
            f"audit key '{path}' cannot be read ({exc.strerror}); set $SLUICE_AUDIT_KEY"
        ) from exc
    if not text:
        raise ConfigError(f"audit key '{path}' is empty")
    return text.encode()


@dataclass(frozen=True, slots=True)
class Verification:
    ok: bool
    rows: int
    head: str
    first_bad_seq: int | None = None
    problem: str = ""


def verify(
    key: bytes, rows: Iterable[Mapping[str, Any]], head_seq: int, head_hash: str
) -> Verification:
    """Walk the chain in order; name the first row whose link or hash does not hold."""
    prev, expected_seq, count = "", 1, 0
    for row in rows:
        seq = int(row["seq"])
        if seq != expected_seq:
            return Verification(False, count, prev, expected_seq, f"row {expected_seq} is missing")
        if row["prev_hash"] != prev:
            return Verification(False, count, prev, seq, "its prev_hash does not match row before")
        if not hmac.compare_digest(row_hash(key, prev, row), str(row["hash"])):
            return Verification(False, count, prev, seq, "its contents do not match its hash")
        prev, expected_seq, count = str(row["hash"]), seq + 1, count + 1
    if count != head_seq or prev != head_hash:
        return Verification(
            False,
            count,
            prev,
            count + 1,
            f"the chain ends at row {count} but the head says row {head_seq}: rows were removed",
        )
    return Verification(True, count, prev)
