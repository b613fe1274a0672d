"""Values the registry hands out: versions, audit entries, events, and name rules."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from server.errors import InvalidInput

from .artifacts import FileRecord

_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,127}")


def check_name(value: str, what: str = "model name") -> str:
    """Names become directory names: no separators, no ``..``, no leading dot."""
    if not _NAME.fullmatch(value) or ".." in value:
        raise InvalidInput(
            f"invalid {what} '{value}': use letters, digits, '_', '.', '-' (not '..'), "
            "starting with a letter or digit, at most 128 characters"
        )
    return value


def check_alias(value: str) -> str:
    check_name(value, "alias")
    if value.isdigit():
        raise InvalidInput(f"invalid alias '{value}': an alias cannot be a number (versions are)")
    return value


def now() -> str:
    """UTC, microseconds, fixed width: strings sort in time order."""
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def parse_time(text: str) -> str:
    """An ISO 8601 time (naive means UTC) in the registry's sortable form."""
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise InvalidInput(
            f"'{text}' is not an ISO 8601 time (e.g. 2026-11-29T08:00:00Z)"
        ) from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


@dataclass(frozen=True, slots=True)
class VersionInfo:
    name: str
    version: int
    sha256: str
    files: tuple[FileRecord, ...]
    description: str
    created_at: str
    actor: str
    tags: dict[str, str] = field(default_factory=dict)
    aliases: tuple[str, ...] = ()
    deployed: bool = False
    archived: bool = False
    validation: dict[str, Any] | None = None

    def as_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "version": self.version,
            "sha256": self.sha256,
            "description": self.description,
            "created_at": self.created_at,
            "actor": self.actor,
            "tags": self.tags,
            "aliases": list(self.aliases),
            "deployed": self.deployed,
            "archived": self.archived,
            "files": [{"name": f.name, "sha256": f.sha256, "size": f.size} for f in self.files],
            "validation": self.validation,
        }


@dataclass(frozen=True, slots=True)
class AuditEntry:
    seq: int
    time: str
    actor: str
    action: str
    model: str
    version: int | None
    reason: str
    request_id: str
    sha256: str
    detail: str
    hash: str

    def as_json(self) -> dict[str, Any]:
        return {
            "seq": self.seq,
            "time": self.time,
            "actor": self.actor,
            "action": self.action,
            "model": self.model,
            "version": self.version,
            "reason": self.reason,
            "request_id": self.request_id,
            "sha256": self.sha256,
            "detail": self.detail,
            "hash": self.hash,
        }


@dataclass(frozen=True, slots=True)
class Deployment:
    """One version deployed at a moment, and the audit row that put it there."""

    name: str
    version: int
    since: str
    actor: str
    reason: str


@dataclass(frozen=True, slots=True)
class ServedModel:
    """What a server should run for one model: deployed versions and the default one."""

    name: str
    versions: tuple[VersionInfo, ...]
    default: int | None
