"""The audit chain on both backends: every change has its row; edits and deletions are found."""

from __future__ import annotations

from pathlib import Path

import pytest

from server.errors import ModelNotFound
from server.registry import Registry, open_registry


def _changes(registry: Registry, model_file: Path) -> None:
    registry.register("m", model_file, actor="ana", reason="new")
    registry.tag("m", 1, {"k": "v"})
    registry.alias("m", "staging", 1)
    registry.deploy("m", 1, actor="bo", reason="launch")
    registry.undeploy("m", 1)


def test_every_change_writes_one_audit_row_and_one_event(
    registry: Registry, model_file: Path
) -> None:
    _changes(registry, model_file)
    actions = [e.action for e in registry.history("m")]
    assert actions == ["register", "tag", "alias", "deploy", "undeploy"]
    from server.registry.outbox import Outbox

    events = Outbox(registry.db).events()
    assert [e.type for e in events] == [
        "io.sluice.model.registered",
        "io.sluice.model.tagged",
        "io.sluice.model.aliased",
        "io.sluice.model.deployed",
        "io.sluice.model.undeployed",
    ]
    assert events[3].subject == "models/m:1"
    assert registry.verify().ok


def test_failed_change_writes_no_audit_row(registry: Registry, model_file: Path) -> None:
    registry.register("m", model_file)
    before = len(registry.history())
    with pytest.raises(ModelNotFound):
        registry.delete("m", 5)
    assert len(registry.history()) == before


def test_edited_row_is_found(registry: Registry, model_file: Path) -> None:
    _changes(registry, model_file)
    with registry.db.write() as tx:
        tx.execute("UPDATE audit SET reason = 'nothing to see' WHERE seq = 4")
    result = registry.verify()
    assert not result.ok and result.first_bad_seq == 4 and result.rows == 3


def test_deleted_rows_are_found(registry: Registry, model_file: Path) -> None:
    _changes(registry, model_file)
    with registry.db.write() as tx:
        tx.execute("DELETE FROM audit WHERE seq = 2")
    assert registry.verify().first_bad_seq == 2
    with registry.db.write() as tx:
        tx.execute("DELETE FROM audit WHERE seq >= 2")
    result = registry.verify()
    assert not result.ok and "removed" in result.problem


def test_a_different_key_does_not_verify(
    repo: Path, database: str | None, model_file: Path
) -> None:
    with open_registry(repo, database) as registry:
        _changes(registry, model_file)
    with open_registry(repo, database, {"SLUICE_AUDIT_KEY": "guess"}) as forged:
        assert forged.verify().first_bad_seq == 1


def test_a_missing_key_file_is_an_error_not_a_new_key(
    repo: Path, database: str | None, model_file: Path
) -> None:
    from server.errors import ConfigError

    with open_registry(repo, database) as registry:
        registry.register("m", model_file)
    (repo / "audit.key").unlink()
    with open_registry(repo, database) as registry:
        assert registry.get("m").version == 1  # reading needs no key
        with pytest.raises(ConfigError, match="SLUICE_AUDIT_KEY"):
            registry.deploy("m", 1)
    assert not (repo / "audit.key").exists()
