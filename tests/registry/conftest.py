from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from benchmarks.models import mlp, save
from server.registry import Registry, open_registry
from tests import models
from tests.registry.postgres import Cluster


@pytest.fixture(scope="session")
def pg_cluster() -> Iterator[Cluster]:
    cluster = Cluster()
    cluster.start()
    try:
        yield cluster
    finally:
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
