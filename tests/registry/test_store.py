"""The registry's store on both backends: versions, tags, aliases, deploys, delete protection."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from server.errors import Conflict, InvalidInput, ModelNotFound
from server.monitoring.baseline import is_baseline_file
from server.registry import Registry
from tests.registry.postgres import Cluster


def test_register_allocates_versions_and_records_hash(
    registry: Registry, model_file: Path, repo: Path
) -> None:
    first = registry.register("mlp", model_file, actor="ana")
    second = registry.register("mlp", model_file, actor="ana")
    assert (first.version, second.version) == (1, 2)
    assert (repo / "mlp" / "2" / "model.onnx").read_bytes() == model_file.read_bytes()
    import hashlib

    assert first.sha256 == hashlib.sha256(model_file.read_bytes()).hexdigest()


def test_register_refuses_a_file_that_is_not_onnx(
    registry: Registry, tmp_path: Path, repo: Path
) -> None:
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"not a model")
    with pytest.raises(InvalidInput, match="not a loadable ONNX model"):
        registry.register("m", bad)
    assert registry.search() == []
    assert not (repo / "m").exists() or not any((repo / "m").iterdir())


@pytest.mark.parametrize("name", ["../x", "a/b", "..", ".hidden", "", "a" * 200])
def test_register_refuses_bad_names(registry: Registry, model_file: Path, name: str) -> None:
    with pytest.raises(InvalidInput, match="invalid model name"):
        registry.register(name, model_file)
    assert registry.history() == []


def test_unknown_version_and_alias_are_clear_errors(registry: Registry, model_file: Path) -> None:
    registry.register("mlp", model_file)
    with pytest.raises(ModelNotFound, match="no version 9"):
        registry.get("mlp", 9)
    with pytest.raises(ModelNotFound, match="no alias 'staging'"):
        registry.get("mlp", alias="staging")
    with pytest.raises(ModelNotFound, match="unknown model 'nope'"):
        registry.deploy("nope", 1)


def test_tags_search_with_and_or(registry: Registry, model_file: Path) -> None:
    registry.register("a", model_file, tags={"team": "x", "stage": "dev"})
    registry.register("b", model_file, tags={"team": "y"})
    registry.tag("b", 1, {"stage": "dev"})
    both = registry.search(tags={"team": "x", "stage": "dev"})
    assert [(i.name, i.version) for i in both] == [("a", 1)]
    either = registry.search(tags={"team": "y", "stage": "dev"}, any_tag=True)
    assert [i.name for i in either] == ["a", "b"]
    registry.untag("a", 1, ["stage"])
    assert registry.get("a", 1).tags == {"team": "x"}
    assert [i.name for i in registry.search(pattern="b*")] == ["b"]


def test_alias_moves_and_unalias(registry: Registry, model_file: Path) -> None:
    registry.register("m", model_file)
    registry.register("m", model_file)
    registry.alias("m", "staging", 1)
    registry.alias("m", "staging", 2)
    assert registry.get("m", alias="staging").version == 2
    assert registry.get("m", 1).aliases == ()
    registry.unalias("m", "staging")
    with pytest.raises(ModelNotFound):
        registry.get("m", alias="staging")
    with pytest.raises(InvalidInput, match="cannot be a number"):
        registry.alias("m", "3", 1)


def test_delete_is_refused_while_deployed_or_aliased(
    registry: Registry, model_file: Path, repo: Path
) -> None:
    registry.register("m", model_file)
    registry.deploy("m", 1)
    registry.alias("m", "production", 1, force=True, reason="test")
    with pytest.raises(Conflict, match=r"deployed .* alias\(es\) production"):
        registry.delete("m", 1)
    registry.undeploy("m", 1)
    with pytest.raises(Conflict, match="production"):
        registry.delete("m", 1)
    registry.unalias("m", "production")
    registry.delete("m", 1, reason="obsolete")
    assert not (repo / "m" / "1").exists()
    assert registry.register("m", model_file).version == 2  # numbers are never reused


def test_deploy_replace_undeploys_the_others(registry: Registry, model_file: Path) -> None:
    for _ in range(3):
        registry.register("m", model_file)
    registry.deploy("m", 1)
    registry.deploy("m", 2)
    (served,) = registry.served()
    assert [v.version for v in served.versions] == [1, 2] and served.default == 2
    registry.alias("m", "production", 1, force=True, reason="test")
    assert registry.served()[0].default == 1
    registry.deploy("m", 3, replace=True)
    (served,) = registry.served()
    assert [v.version for v in served.versions] == [3] and served.default == 3
    actions = [(e.action, e.version) for e in registry.history("m")][-3:]
    assert actions == [("undeploy", 1), ("undeploy", 2), ("deploy", 3)]


def test_changes_counter_moves_with_each_change(registry: Registry, model_file: Path) -> None:
    before = registry.changes()
    registry.register("m", model_file)
    registry.deploy("m", 1)
    assert registry.changes() == before + 2


def test_history_at_names_what_was_deployed_and_who(registry: Registry, model_file: Path) -> None:
    registry.register("m", model_file)
    registry.register("m", model_file)
    registry.deploy("m", 1, actor="ana", reason="launch")
    middle = registry.history("m")[-1].time
    registry.deploy("m", 2, actor="bo", reason="better", replace=True)
    (then,) = registry.deployed_at("m", middle)
    assert (then.version, then.actor, then.reason) == (1, "ana", "launch")
    (now,) = registry.deployed_at("m", "2999-01-01T00:00:00Z")
    assert (now.version, now.actor) == (2, "bo")
    assert registry.deployed_at("m", "2000-01-01") == []
    with pytest.raises(InvalidInput, match="ISO 8601"):
        registry.deployed_at("m", "yesterday")


def test_archived_version_cannot_be_deployed(registry: Registry, model_file: Path) -> None:
    registry.register("m", model_file)
    registry.archive("m", 1, reason="superseded")
    assert registry.get("m", 1).archived
    with pytest.raises(Conflict, match="archived"):
        registry.deploy("m", 1)


def test_register_stores_config_and_baseline(
    registry: Registry, model_file: Path, tmp_path: Path, repo: Path
) -> None:
    config = tmp_path / "config.toml"
    config.write_text("[batching]\nmax_batch_size = 8\n")
    data = tmp_path / "train.parquet"
    pq.write_table(pa.table({"x": np.arange(100.0)}), data)
    info = registry.register("m", model_file, config=config, baseline=data)
    assert sorted(f.name for f in info.files) == ["baseline.npz", "config.toml", "model.onnx"]
    assert (repo / "m" / "1" / "config.toml").read_text() == config.read_text()
    assert is_baseline_file(str(repo / "m" / "1" / "baseline.npz"))
    garbage = tmp_path / "garbage.bin"
    garbage.write_bytes(b"{}")
    with pytest.raises(InvalidInput, match="neither a saved baseline"):
        registry.register("m", model_file, baseline=garbage)
    bad = tmp_path / "bad.toml"
    bad.write_text("[batching]\nmax_batch_size = 0\n")
    with pytest.raises(InvalidInput, match="max_batch_size"):
        registry.register("m", model_file, config=bad)


def test_postgres_connection_lost_is_a_clear_error_then_reconnects(
    repo: Path, pg_cluster: Cluster, model_file: Path
) -> None:
    import psycopg

    from server.errors import RegistryUnavailable
    from server.registry import open_registry

    url = pg_cluster.new_database()
    with open_registry(repo, url) as registry:
        registry.register("m", model_file)
        with psycopg.connect(url, autocommit=True) as admin:
            admin.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE datname = current_database() AND pid <> pg_backend_pid()"
            )
        with pytest.raises(RegistryUnavailable, match="registry 'postgresql://postgres"):
            registry.changes()
        assert registry.get("m").version == 1
