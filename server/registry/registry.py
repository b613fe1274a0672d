"""The registry's Python API: every change is the state change, its audit row and its event,
committed in one transaction (no change without its audit row, no event for a change that did
not commit)."""

from __future__ import annotations

import fnmatch
import tempfile
import uuid
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import orjson

from server.errors import Conflict, InvalidInput, ModelNotFound
from server.events import cloudevent

from . import audit
from .artifacts import BASELINE_FILE, CONFIG_FILE, MODEL_FILE, ArtifactStore, FileRecord
from .database import Database, Row, Tx
from .records import (
    AuditEntry,
    Deployment,
    ServedModel,
    VersionInfo,
    check_alias,
    check_name,
    now,
    parse_time,
)
from .rollouts import check_gate

PRODUCTION = "production"
# Where ``set_profile`` keeps a ``sluice profile`` result: tags, so the schema stays as it is.
PROFILE_CONFIG_TAG = "profile.config"
PROFILE_RECOMMENDATION_TAG = "profile.recommendation"
_PAST = {
    "register": "registered",
    "tag": "tagged",
    "untag": "untagged",
    "alias": "aliased",
    "unalias": "unaliased",
    "archive": "archived",
    "deploy": "deployed",
    "undeploy": "undeployed",
    "delete": "deleted",
    "load": "loaded",
    "unload": "unloaded",
    "load_failed": "load_failed",
    "describe": "described",
    "profile": "profiled",
}


class Registry:
    """One process's handle on a registry. Not shared between threads: open one per thread."""

    def __init__(
        self, db: Database, artifacts: ArtifactStore, key: bytes | Callable[[], bytes]
    ) -> None:
        self.db = db
        self.artifacts = artifacts
        self._key_source = key
        self._key_bytes: bytes | None = key if isinstance(key, bytes) else None

    @property
    def _key(self) -> bytes:
        """The audit key, read at the first change or verify (readers never need it)."""
        if self._key_bytes is None:
            assert callable(self._key_source)
            self._key_bytes = self._key_source()
        return self._key_bytes

    def close(self) -> None:
        self.db.close()

    def __enter__(self) -> Registry:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- writes ---------------------------------------------------------------------------

    def register(
        self,
        name: str,
        model_file: Path,
        *,
        tags: Mapping[str, str] | None = None,
        description: str = "",
        reason: str = "",
        actor: str = "",
        config: Path | None = None,
        baseline: Path | None = None,
        request_id: str = "",
    ) -> VersionInfo:
        """Check the model loads and answers, store its files, and record the next version."""
        from .checks import baseline_file, check_config, check_model

        check_name(name)
        tags = _check_tags(tags or {})
        check_model(name, model_file)
        files = {MODEL_FILE: model_file}
        if config is not None:
            check_config(config)
            files[CONFIG_FILE] = config
        self.artifacts.sweep(name)
        with tempfile.TemporaryDirectory(prefix="sluice-register-") as scratch:
            if baseline is not None:
                files[BASELINE_FILE] = baseline_file(baseline, Path(scratch))
            staged = self.artifacts.stage(name, files)
        try:
            with self.db.write() as tx:
                row = tx.one("SELECT MAX(version) AS v FROM versions WHERE name = ?", (name,))
                version = int(row["v"] or 0) + 1 if row else 1
                created = now()
                files_json = orjson.dumps(
                    [{"name": f.name, "sha256": f.sha256, "size": f.size} for f in staged.files]
                ).decode()
                tx.execute(
                    "INSERT INTO versions (name, version, sha256, files, description, created_at,"
                    " actor) VALUES (?, ?, ?, ?, ?, ?, ?)",
                    (name, version, staged.sha256, files_json, description, created, actor),
                )
                for key, value in tags.items():
                    tx.execute(
                        "INSERT INTO tags (name, version, key, value) VALUES (?, ?, ?, ?)",
                        (name, version, key, value),
                    )
                self._change(
                    tx, "register", name, version, actor, reason, staged.sha256, request_id
                )
                # Last before the commit: a crash after this leaves an orphan directory that
                # the next register replaces, never a row without its files.
                self.artifacts.publish(staged, version)
        except BaseException:
            self.artifacts.discard(staged)
            raise
        return self.get(name, version)

    def describe(self, name: str, version: int, description: str, *, actor: str = "") -> None:
        with self.db.write() as tx:
            info = self._row(tx, name, version)
            tx.execute(
                "UPDATE versions SET description = ? WHERE name = ? AND version = ?",
                (description, name, version),
            )
            self._change(tx, "describe", name, version, actor, description, info["sha256"])

    def tag(
        self, name: str, version: int, tags: Mapping[str, str], *, actor: str = "", reason: str = ""
    ) -> None:
        tags = _check_tags(tags)
        with self.db.write() as tx:
            info = self._row(tx, name, version)
            _set_tags(tx, name, version, tags)
            detail = ",".join(f"{k}={v}" for k, v in tags.items())
            self._change(tx, "tag", name, version, actor, reason, info["sha256"], detail=detail)

    def untag(
        self, name: str, version: int, keys: Sequence[str], *, actor: str = "", reason: str = ""
    ) -> None:
        with self.db.write() as tx:
            info = self._row(tx, name, version)
            for key in keys:
                if not tx.execute(
                    "DELETE FROM tags WHERE name = ? AND version = ? AND key = ?",
                    (name, version, key),
                ):
                    raise InvalidInput(f"model '{name}' version {version} has no tag '{key}'")
            detail = ",".join(keys)
            self._change(tx, "untag", name, version, actor, reason, info["sha256"], detail=detail)

    def alias(
        self,
        name: str,
        alias: str,
        version: int,
        *,
        actor: str = "",
        reason: str = "",
        force: bool = False,
    ) -> None:
        """Point ``alias`` at ``version`` (moving it if it pointed elsewhere). ``production``
        needs a passing validation record, or ``force`` with a reason (audited)."""
        check_alias(alias)
        with self.db.write() as tx:
            info = self._row(tx, name, version)
            if info["archived"]:
                raise Conflict(f"model '{name}' version {version} is archived: cannot alias it")
            forced = check_gate(info, force, reason) if alias == PRODUCTION else ""
            tx.execute("DELETE FROM aliases WHERE name = ? AND alias = ?", (name, alias))
            tx.execute(
                "INSERT INTO aliases (name, alias, version) VALUES (?, ?, ?)",
                (name, alias, version),
            )
            detail = f"{alias}; {forced}" if forced else alias
            self._change(tx, "alias", name, version, actor, reason, info["sha256"], detail=detail)

    def unalias(self, name: str, alias: str, *, actor: str = "", reason: str = "") -> None:
        with self.db.write() as tx:
            row = tx.one("SELECT version FROM aliases WHERE name = ? AND alias = ?", (name, alias))
            if row is None:
                raise ModelNotFound(f"model '{name}' has no alias '{alias}'")
            version = int(row["version"])
            info = self._row(tx, name, version)
            tx.execute("DELETE FROM aliases WHERE name = ? AND alias = ?", (name, alias))
            self._change(tx, "unalias", name, version, actor, reason, info["sha256"], detail=alias)

    def archive(self, name: str, version: int, *, actor: str = "", reason: str = "") -> None:
        with self.db.write() as tx:
            info = self._row(tx, name, version)
            holders = _holders(tx, name, version)
            if holders:
                raise Conflict(f"model '{name}' version {version} cannot be archived: {holders}")
            tx.execute(
                "UPDATE versions SET archived = 1 WHERE name = ? AND version = ?", (name, version)
            )
            self._change(tx, "archive", name, version, actor, reason, info["sha256"])

    def deploy(
        self,
        name: str,
        version: int,
        *,
        actor: str = "",
        reason: str = "",
        replace: bool = False,
        request_id: str = "",
    ) -> None:
        """Add ``version`` to the served versions; ``replace`` undeploys the others at once."""
        with self.db.write() as tx:
            info = self._row(tx, name, version)
            if info["archived"]:
                raise Conflict(f"model '{name}' version {version} is archived: cannot deploy it")
            current = [
                int(r["version"])
                for r in tx.all("SELECT version FROM deployments WHERE name = ?", (name,))
            ]
            if replace:
                for other in current:
                    if other != version:
                        sha = self._row(tx, name, other)["sha256"]
                        tx.execute(
                            "DELETE FROM deployments WHERE name = ? AND version = ?",
                            (name, other),
                        )
                        self._change(
                            tx,
                            "undeploy",
                            name,
                            other,
                            actor,
                            reason,
                            sha,
                            request_id,
                            detail=f"replaced by version {version}",
                        )
            if version not in current:
                tx.execute(
                    "INSERT INTO deployments (name, version, deployed_at, actor) "
                    "VALUES (?, ?, ?, ?)",
                    (name, version, now(), actor),
                )
                self._change(tx, "deploy", name, version, actor, reason, info["sha256"], request_id)

    def undeploy(
        self,
        name: str,
        version: int | None = None,
        *,
        actor: str = "",
        reason: str = "",
        request_id: str = "",
    ) -> list[int]:
        """Stop serving ``version`` (every version when None); returns what was undeployed."""
        with self.db.write() as tx:
            if version is not None:
                self._row(tx, name, version)
            rows = tx.all("SELECT version FROM deployments WHERE name = ?", (name,))
            targets = [int(r["version"]) for r in rows]
            if version is not None:
                if version not in targets:
                    raise Conflict(f"model '{name}' version {version} is not deployed")
                targets = [version]
            elif not targets and not self._exists(tx, name):
                raise ModelNotFound(f"unknown model '{name}'")
            for target in targets:
                sha = self._row(tx, name, target)["sha256"]
                tx.execute("DELETE FROM deployments WHERE name = ? AND version = ?", (name, target))
                self._change(tx, "undeploy", name, target, actor, reason, sha, request_id)
        return targets

    def delete(self, name: str, version: int, *, actor: str = "", reason: str = "") -> None:
        """Remove a version's files; refused while it is deployed or aliased. The number is
        never reused and the audit trail keeps its history."""
        with self.db.write() as tx:
            info = self._row(tx, name, version)
            holders = _holders(tx, name, version)
            if holders:
                raise Conflict(f"model '{name}' version {version} cannot be deleted: {holders}")
            tx.execute("DELETE FROM tags WHERE name = ? AND version = ?", (name, version))
            tx.execute(
                "UPDATE versions SET deleted = 1 WHERE name = ? AND version = ?", (name, version)
            )
            self._change(tx, "delete", name, version, actor, reason, info["sha256"])
        # After the commit: a crash here leaves files of a deleted version, never a version
        # row whose files are gone.
        self.artifacts.remove(name, version)

    def record(
        self,
        action: str,
        name: str,
        version: int | None,
        *,
        actor: str = "",
        reason: str = "",
        request_id: str = "",
        detail: str = "",
    ) -> None:
        """Audit something the server did (load, unload, load_failed) and emit its event."""
        with self.db.write() as tx:
            sha = ""
            if version is not None:
                row = tx.one(
                    "SELECT sha256 FROM versions WHERE name = ? AND version = ?", (name, version)
                )
                sha = row["sha256"] if row else ""
            self._change(
                tx,
                action,
                name,
                version,
                actor,
                reason,
                sha,
                request_id,
                detail=detail,
                touch=False,
            )

    def set_validation(
        self, name: str, version: int, record: Mapping[str, Any], *, actor: str = ""
    ) -> None:
        with self.db.write() as tx:
            info = self._row(tx, name, version)
            tx.execute(
                "UPDATE versions SET validation = ? WHERE name = ? AND version = ?",
                (orjson.dumps(dict(record)).decode(), name, version),
            )
            passed = bool(record.get("passed"))
            self._change(
                tx,
                "validate",
                name,
                version,
                actor,
                "passed" if passed else "failed",
                info["sha256"],
                event=f"io.sluice.validation.{'passed' if passed else 'failed'}",
            )

    def set_profile(
        self,
        name: str,
        version: int,
        config_toml: str,
        recommendation: Mapping[str, Any],
        *,
        actor: str = "",
    ) -> None:
        """Store a ``sluice profile`` result with a version: the tuned config (TOML text) and
        the recommendation (JSON), as the tags ``profile.config`` and
        ``profile.recommendation``, audited as ``profile``."""
        values = {
            PROFILE_CONFIG_TAG: config_toml,
            PROFILE_RECOMMENDATION_TAG: orjson.dumps(dict(recommendation)).decode(),
        }
        with self.db.write() as tx:
            info = self._row(tx, name, version)
            _set_tags(tx, name, version, values)
            rule = str(recommendation.get("rule", ""))
            self._change(tx, "profile", name, version, actor, rule, info["sha256"])

    # -- reads ----------------------------------------------------------------------------

    def get(self, name: str, version: int | None = None, alias: str | None = None) -> VersionInfo:
        """One version: by number, by alias, or (neither) the highest live version."""
        with self.db.read() as tx:
            if alias is not None:
                row = tx.one(
                    "SELECT version FROM aliases WHERE name = ? AND alias = ?", (name, alias)
                )
                if row is None:
                    self._require_model(tx, name)
                    raise ModelNotFound(f"model '{name}' has no alias '{alias}'")
                version = int(row["version"])
            if version is None:
                row = tx.one(
                    "SELECT MAX(version) AS v FROM versions WHERE name = ? AND deleted = 0",
                    (name,),
                )
                if row is None or row["v"] is None:
                    raise ModelNotFound(f"unknown model '{name}'")
                version = int(row["v"])
            return self._info(tx, self._row(tx, name, version))

    def search(
        self,
        pattern: str | None = None,
        tags: Mapping[str, str] | None = None,
        any_tag: bool = False,
        include_archived: bool = True,
    ) -> list[VersionInfo]:
        with self.db.read() as tx:
            rows = tx.all("SELECT * FROM versions WHERE deleted = 0 ORDER BY name, version")
            infos = [self._info(tx, r) for r in rows]
        if pattern:
            infos = [i for i in infos if fnmatch.fnmatchcase(i.name, pattern)]
        if not include_archived:
            infos = [i for i in infos if not i.archived]
        if tags:
            wanted = list(tags.items())
            match = any if any_tag else all
            infos = [i for i in infos if match(i.tags.get(k) == v for k, v in wanted)]
        return infos

    def served(self) -> list[ServedModel]:
        """Every model with deployed versions, and the version a request without one gets:
        the ``production`` alias when it points at a deployed version, else the highest."""
        with self.db.read() as tx:
            rows = tx.all(
                "SELECT v.* FROM versions v JOIN deployments d "
                "ON d.name = v.name AND d.version = v.version ORDER BY v.name, v.version"
            )
            production = {
                r["name"]: int(r["version"])
                for r in tx.all("SELECT name, version FROM aliases WHERE alias = ?", (PRODUCTION,))
            }
            infos = [self._info(tx, r) for r in rows]
        by_name: dict[str, list[VersionInfo]] = {}
        for info in infos:
            by_name.setdefault(info.name, []).append(info)
        served = []
        for name, versions in by_name.items():
            numbers = [v.version for v in versions]
            default = production.get(name)
            if default not in numbers:
                default = max(numbers)
            served.append(ServedModel(name, tuple(versions), default))
        return served

    def names(self) -> list[str]:
        with self.db.read() as tx:
            rows = tx.all("SELECT DISTINCT name FROM versions WHERE deleted = 0 ORDER BY name")
        return [r["name"] for r in rows]

    def changes(self) -> int:
        """A counter bumped by every change to what is served; cheap to poll."""
        with self.db.read() as tx:
            row = tx.one("SELECT changes FROM head WHERE id = 1")
        return int(row["changes"]) if row else 0

    def history(self, name: str | None = None, limit: int | None = None) -> list[AuditEntry]:
        with self.db.read() as tx:
            if name is None:
                rows = tx.all("SELECT * FROM audit ORDER BY seq")
            else:
                rows = tx.all("SELECT * FROM audit WHERE model = ? ORDER BY seq", (name,))
                if not rows:
                    self._require_model(tx, name)
        entries = [_entry(r) for r in rows]
        return entries[-limit:] if limit else entries

    def deployed_at(self, name: str, at: str) -> list[Deployment]:
        """What was deployed at ``at`` (ISO 8601), and the audit row that put each there."""
        moment = parse_time(at)
        live: dict[int, Deployment] = {}
        for entry in self.history(name):
            if entry.time > moment:
                break
            if entry.version is None:
                continue
            if entry.action == "deploy":
                live[entry.version] = Deployment(
                    name, entry.version, entry.time, entry.actor, entry.reason
                )
            elif entry.action in ("undeploy", "delete"):
                live.pop(entry.version, None)
        return sorted(live.values(), key=lambda d: d.version)

    def verify(self) -> audit.Verification:
        with self.db.read() as tx:
            rows = tx.all("SELECT * FROM audit ORDER BY seq")
            head = tx.one("SELECT audit_seq, audit_hash FROM head WHERE id = 1")
        assert head is not None
        return audit.verify(self._key, rows, int(head["audit_seq"]), str(head["audit_hash"]))

    # -- internals ------------------------------------------------------------------------

    def _change(
        self,
        tx: Tx,
        action: str,
        name: str,
        version: int | None,
        actor: str,
        reason: str,
        sha256: str,
        request_id: str = "",
        *,
        detail: str = "",
        event: str | None = None,
        touch: bool = True,
    ) -> None:
        """Append the audit row and the outbox row, and advance the head, in ``tx``."""
        head = tx.one("SELECT audit_seq, audit_hash, event_seq, changes FROM head WHERE id = 1")
        assert head is not None
        time = now()
        row: dict[str, Any] = {
            "seq": int(head["audit_seq"]) + 1,
            "time": time,
            "actor": actor,
            "action": action,
            "model": name,
            "version": version,
            "reason": reason,
            "request_id": request_id,
            "sha256": sha256,
            "detail": detail,
        }
        digest = audit.row_hash(self._key, str(head["audit_hash"]), row)
        tx.execute(
            "INSERT INTO audit (seq, time, actor, action, model, version, reason, request_id, "
            "sha256, detail, prev_hash, hash) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (*row.values(), head["audit_hash"], digest),
        )
        event_seq = int(head["event_seq"]) + 1
        subject = f"models/{name}:{version}" if version is not None else f"models/{name}"
        data = {
            "name": name,
            "version": version,
            "actor": actor,
            "reason": reason,
            "sha256": sha256,
            "detail": detail,
            "request_id": request_id,
            "audit_seq": row["seq"],
            "chain_head": digest,
        }
        type_ = event or f"io.sluice.model.{_PAST.get(action, action)}"
        body = cloudevent.build(uuid.uuid4().hex, type_, subject, time, data)
        tx.execute(
            "INSERT INTO outbox (seq, id, type, subject, time, body) VALUES (?, ?, ?, ?, ?, ?)",
            (event_seq, body["id"], type_, subject, time, cloudevent.encode(body).decode()),
        )
        tx.execute(
            "UPDATE head SET audit_seq = ?, audit_hash = ?, event_seq = ?, changes = ? "
            "WHERE id = 1",
            (row["seq"], digest, event_seq, int(head["changes"]) + (1 if touch else 0)),
        )

    def emit(self, type_: str, subject: str, data: Mapping[str, Any]) -> None:
        """An event that changes no registry state (a drift alert), through the same outbox."""
        with self.db.write() as tx:
            head = tx.one("SELECT audit_seq, audit_hash, event_seq FROM head WHERE id = 1")
            assert head is not None
            event_seq = int(head["event_seq"]) + 1
            time = now()
            body = cloudevent.build(
                uuid.uuid4().hex,
                type_,
                subject,
                time,
                {**data, "audit_seq": head["audit_seq"], "chain_head": head["audit_hash"]},
            )
            tx.execute(
                "INSERT INTO outbox (seq, id, type, subject, time, body) VALUES (?, ?, ?, ?, ?, ?)",
                (event_seq, body["id"], type_, subject, time, cloudevent.encode(body).decode()),
            )
            tx.execute("UPDATE head SET event_seq = ? WHERE id = 1", (event_seq,))

    def _exists(self, tx: Tx, name: str) -> bool:
        return (
            tx.one("SELECT 1 AS x FROM versions WHERE name = ? AND deleted = 0", (name,))
            is not None
        )

    def _require_model(self, tx: Tx, name: str) -> None:
        if not self._exists(tx, name):
            raise ModelNotFound(f"unknown model '{name}'")

    def _row(self, tx: Tx, name: str, version: int) -> Row:
        row = tx.one(
            "SELECT * FROM versions WHERE name = ? AND version = ? AND deleted = 0",
            (name, version),
        )
        if row is None:
            self._require_model(tx, name)
            raise ModelNotFound(f"model '{name}' has no version {version}")
        return row

    def _info(self, tx: Tx, row: Row) -> VersionInfo:
        name, version = row["name"], int(row["version"])
        tags = {
            r["key"]: r["value"]
            for r in tx.all(
                "SELECT key, value FROM tags WHERE name = ? AND version = ? ORDER BY key",
                (name, version),
            )
        }
        aliases = tuple(
            r["alias"]
            for r in tx.all(
                "SELECT alias FROM aliases WHERE name = ? AND version = ? ORDER BY alias",
                (name, version),
            )
        )
        deployed = (
            tx.one("SELECT 1 AS x FROM deployments WHERE name = ? AND version = ?", (name, version))
            is not None
        )
        files = tuple(FileRecord(**f) for f in orjson.loads(row["files"]))
        return VersionInfo(
            name=name,
            version=version,
            sha256=row["sha256"],
            files=files,
            description=row["description"],
            created_at=row["created_at"],
            actor=row["actor"],
            tags=tags,
            aliases=aliases,
            deployed=deployed,
            archived=bool(row["archived"]),
            validation=orjson.loads(row["validation"]) if row["validation"] else None,
        )


def _holders(tx: Tx, name: str, version: int) -> str:
    """What keeps a version alive (deployment, aliases), in words; empty when nothing."""
    held = []
    if tx.one("SELECT 1 AS x FROM deployments WHERE name = ? AND version = ?", (name, version)):
        held.append("it is deployed (undeploy it first)")
    aliases = [
        r["alias"]
        for r in tx.all(
            "SELECT alias FROM aliases WHERE name = ? AND version = ? ORDER BY alias",
            (name, version),
        )
    ]
    if aliases:
        held.append(f"alias(es) {', '.join(aliases)} point at it (unalias or move them first)")
    return "; ".join(held)


def _set_tags(tx: Tx, name: str, version: int, tags: Mapping[str, str]) -> None:
    """Set (insert or replace) ``tags`` on a version."""
    for key, value in tags.items():
        tx.execute(
            "DELETE FROM tags WHERE name = ? AND version = ? AND key = ?", (name, version, key)
        )
        tx.execute(
            "INSERT INTO tags (name, version, key, value) VALUES (?, ?, ?, ?)",
            (name, version, key, value),
        )


def _check_tags(tags: Mapping[str, str]) -> dict[str, str]:
    for key in tags:
        if not key or "=" in key:
            raise InvalidInput(f"invalid tag key '{key}': non-empty, without '='")
    return {str(k): str(v) for k, v in tags.items()}


def _entry(row: Row) -> AuditEntry:
    return AuditEntry(
        seq=int(row["seq"]),
        time=row["time"],
        actor=row["actor"],
        action=row["action"],
        model=row["model"],
        version=None if row["version"] is None else int(row["version"]),
        reason=row["reason"],
        request_id=row["request_id"],
        sha256=row["sha256"],
        detail=row["detail"],
        hash=row["hash"],
    )
