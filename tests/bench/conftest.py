"""A live Sluice server (HTTP and gRPC on loopback ports) and a quick bench configuration."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from server.bench import BenchConfig, Step
from tests import models
from tests.live import LiveServer

# 4.4 MB per row: above Sluice's 4 MiB stream window and its 16 kB frames.
WIDE = 1_100_000


@pytest.fixture(scope="session")
def bench_repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    built = {
        "mlp": models.small_mlp(),  # input [-1, 16] FP32 -> output [-1, 4]
        "add_sub": models.add_sub(),
        "identity_bytes": models.identity("BYTES"),
        "identity_fp16": models.identity("FP16"),
        "wide": models.identity("FP32", width=WIDE),
    }
    return models.write_repository(tmp_path_factory.mktemp("bench-repo"), built, {})


@pytest.fixture(scope="session")
def live(bench_repo: Path) -> Iterator[LiveServer]:
    with LiveServer(bench_repo) as server:
        yield server


def quick(url: str, **fields: Any) -> BenchConfig:
    """A short run: 0.2 s warm-up, 1 s measured, one client process."""
    base = BenchConfig(
        url=url, model="mlp", steps=(Step(concurrency=2),), duration_s=1.0, warmup_s=0.2,
        processes=1, timeout_s=10,
    )  # fmt: skip
    return replace(base, **fields)
