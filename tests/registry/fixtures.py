"""Registry fixtures shared by the registry and events suites (imported by both conftests)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from benchmarks.models import mlp, save
from server.registry import Registry, open_registry
from tests import models
from tests.registry.postgres import Cluster

# Each conftest that imports ``pg_cluster`` gets its own fixture definition: one cluster per
# test process, however many suites use it, keeps a full run to one ``initdb``.
_cluster: Cluster | None = None


@pytest.fixture(scope="session")
def pg_cluster() -> Iterator[Cluster]:
    global _cluster
    if _cluster is None:
        _cluster = Cluster()
        _cluster.start()
    yield _cluster
    if _cluster is not None:  # the first teardown (at the end of the session) stops it
        cluster, _cluster = _cluster, None
        cluster.stop()


@pytest.fixture(params=["sqlite", "postgresql"])
def database(request: pytest.FixtureRequest, tmp_path: Path) -> str | None:
    """None for the embedded SQLite registry, else a fresh PostgreSQL database's URL."""
    if request.param == "sqlite":
        return None
    cluster: Cluster = request.getfixturevalue("pg_cluster")
    return cluster.new_database()


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    return tmp_path / "repo"


@pytest.fixture
def registry(repo: Path, database: str | None) -> Iterator[Registry]:
    with open_registry(repo, database) as reg:
        yield reg


@pytest.fixture(scope="session")
def model_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return save(models.small_mlp(), tmp_path_factory.mktemp("models") / "mlp.onnx")


@pytest.fixture(scope="session")
def other_model_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return save(mlp((4, 8, 2), seed=3), tmp_path_factory.mktemp("models") / "other.onnx")
