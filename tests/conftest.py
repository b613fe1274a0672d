from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests import models
from tests.live import LiveServer

DATATYPES = list(models.ONNX_TYPES)

# One instance, so a request waits while another runs (the queue and timeout tests need it).
SLOW_CONFIG = """
[batching]
max_batch_size = 64
max_queue_size = 2
[runtime]
# One instance on one thread, as before "auto": the queue tests need a batch that runs for
# tens of milliseconds, and "auto" would give this lone instance every core.
instances = 1
intra_op_threads = 1
"""


@pytest.fixture(scope="session")
def repository(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("repo")
    built = {f"identity_{dt.lower()}": models.identity(dt) for dt in DATATYPES}
    built.update(
        add_sub=models.add_sub(),
        fixed=models.fixed_batch(),
        failing=models.failing(),
        mlp=models.small_mlp(),
        slow=models.slow(),
    )
    # The failing model would fail its warm-up (1 row); it must load to fail at run time.
    configs = {"slow": SLOW_CONFIG, "failing": "[runtime]\nwarmup = false\n"}
    return models.write_repository(root, built, configs)


@pytest.fixture(scope="session")
def server(repository: Path) -> Iterator[LiveServer]:
    with LiveServer(repository, max_request_bytes=1024 * 1024, model_control=True) as live:
        yield live
