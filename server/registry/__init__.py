"""The model registry: versions, tags, aliases, deployments, a hash-chained audit trail and an
event outbox, in SQLite (``REPO/registry.db``) or PostgreSQL, with artifacts under ``REPO``."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from .artifacts import ArtifactStore
from .audit import load_key
from .database import Database, connect
from .records import AuditEntry, Deployment, ServedModel, VersionInfo
from .registry import PRODUCTION, Registry

DB_FILE = "registry.db"

__all__ = [
    "DB_FILE",
    "PRODUCTION",
    "AuditEntry",
    "Deployment",
    "Registry",
    "ServedModel",
    "VersionInfo",
    "exists",
    "open_registry",
]


def exists(repository: str | Path, database: str | None = None) -> bool:
    """Whether ``repository`` is governed by a registry (a database URL or ``registry.db``)."""
    return bool(database) or (Path(repository) / DB_FILE).is_file()


def open_registry(
    repository: str | Path,
    database: str | None = None,
    environ: Mapping[str, str] | None = None,
) -> Registry:
    """Open (creating when needed) the registry of ``repository``.

    ``database`` is a ``postgresql://`` URL for a shared registry; without it the registry is
    ``REPO/registry.db``. ``environ`` supplies ``SLUICE_AUDIT_KEY`` (the CLI passes the
    process environment); without it the key file ``REPO/audit.key`` is used.
    """
    root = Path(repository)
    root.mkdir(parents=True, exist_ok=True)
    from_env = (environ or {}).get("SLUICE_AUDIT_KEY")
    db = connect(database or str(root / DB_FILE))
    # The key file is created with a new registry only (no audit row yet): a later process
    # that merely lacks $SLUICE_AUDIT_KEY must fail clearly, not start a second key.
    create = _empty(db)
    return Registry(db, ArtifactStore(str(root)), lambda: load_key(root, from_env, create))


def _empty(db: Database) -> bool:
    with db.read() as tx:
        head = tx.one("SELECT audit_seq FROM head WHERE id = 1")
    return head is None or int(head["audit_seq"]) == 0
