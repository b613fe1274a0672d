from __future__ import annotations

from tests.registry.fixtures import (
    database,
    model_file,
    other_model_file,
    pg_cluster,
    registry,
    repo,
)

__all__ = ["database", "model_file", "other_model_file", "pg_cluster", "registry", "repo"]
