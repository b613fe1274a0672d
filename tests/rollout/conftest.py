from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from benchmarks.models import mlp, save
from server.registry import Registry, open_registry
from server.rollout.validation import Request, validate
from tests.registry.conftest import database, pg_cluster, repo

__all__ = ["database", "pg_cluster", "repo"]


@pytest.fixture(scope="session")
def versions(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """Same interface (input [-1, 16] → output [-1, 4]), different weights."""
    root = tmp_path_factory.mktemp("rollout-models")
    return save(mlp((16, 32, 4), seed=1), root / "v1.onnx"), save(
        mlp((16, 32, 4), seed=2), root / "v2.onnx"
    )


@pytest.fixture
def registry(repo: Path, database: str | None) -> Iterator[Registry]:
    with open_registry(repo, database) as reg:
        yield reg


@pytest.fixture
def two(registry: Registry, versions: tuple[Path, Path]) -> Registry:
    """``m`` version 1 (validated, production) and version 2, both deployed."""
    registry.register("m", versions[0])
    registry.register("m", versions[1])
    validate(registry, Request("m", 1))
    registry.alias("m", "production", 1)
    registry.deploy("m", 1)
    registry.deploy("m", 2)
    return registry


X = np.random.default_rng(0).standard_normal((1, 16)).astype(np.float32)
