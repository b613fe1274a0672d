"""Writers queue, never collide: many processes register one name at once; a process killed at
any point of ``register`` leaves a complete version or nothing."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from server.registry import open_registry
from tests import models

WRITERS = 60

_REGISTER = """
import os, sys, time
from pathlib import Path
from server.registry import open_registry
repo, database, model, start = sys.argv[1], sys.argv[2] or None, Path(sys.argv[3]), sys.argv[4]
with open_registry(repo, database) as reg:
    while not os.path.exists(start):
        time.sleep(0.005)
    info = reg.register("m", model, actor=f"writer-{os.getpid()}")
print(info.version)
"""


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return models.save(models.identity("FP32"), tmp_path_factory.mktemp("tiny") / "id.onnx")


@pytest.mark.slow
def test_sixty_processes_get_versions_one_to_sixty(
    repo: Path, database: str | None, tiny_model: Path, tmp_path: Path
) -> None:
    open_registry(repo, database).close()  # create the schema once, as a first user would
    start = tmp_path / "go"
    procs = [
        subprocess.Popen(
            [
                sys.executable,
                "-c",
                _REGISTER,
                str(repo),
                database or "",
                str(tiny_model),
                str(start),
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(WRITERS)
    ]
    time.sleep(1.0)
    start.touch()
    results = [p.communicate(timeout=300) for p in procs]
    errors = [err for p, (_, err) in zip(procs, results, strict=True) if p.returncode != 0]
    assert errors == []
    versions = sorted(int(out) for out, _ in results)
    assert versions == list(range(1, WRITERS + 1))
    with open_registry(repo, database) as reg:
        assert [i.version for i in reg.search()] == versions
        assert reg.verify().ok and reg.verify().rows == WRITERS


_KILL = """
import os, signal, sys
from pathlib import Path
from server.registry import open_registry
from server.registry.artifacts import ArtifactStore
from server.registry.registry import Registry
repo, database, model, point = sys.argv[1], sys.argv[2] or None, Path(sys.argv[3]), sys.argv[4]

def die():
    os.kill(os.getpid(), signal.SIGKILL)

def after(cls, name):
    original = getattr(cls, name)
    def wrapped(self, *args, **kwargs):
        result = original(self, *args, **kwargs)
        die()
        return result
    setattr(cls, name, wrapped)

if point == "mid-copy":
    original = ArtifactStore._copy
    def copy(self, source, target, name):
        if name != "model.onnx":
            die()
        return original(self, source, target, name)
    ArtifactStore._copy = copy
elif point == "staged":
    after(ArtifactStore, "stage")
elif point == "audit-written":
    after(Registry, "_change")
elif point == "published":
    after(ArtifactStore, "publish")
with open_registry(repo, database) as reg:
    reg.register("m", model, config=Path(sys.argv[5]))
"""


@pytest.mark.parametrize("point", ["mid-copy", "staged", "audit-written", "published"])
def test_kill_during_register_leaves_nothing(
    repo: Path, database: str | None, tiny_model: Path, tmp_path: Path, point: str
) -> None:
    config = tmp_path / "config.toml"
    config.write_text("[batching]\nmax_batch_size = 4\n")
    with open_registry(repo, database) as reg:
        reg.register("m", tiny_model)
    args = [str(repo), database or "", str(tiny_model), point, str(config)]
    proc = subprocess.run([sys.executable, "-c", textwrap.dedent(_KILL), *args], check=False)
    assert proc.returncode == -9
    with open_registry(repo, database) as reg:
        assert [i.version for i in reg.search()] == [1]
        assert reg.verify().ok and reg.verify().rows == 1
        again = reg.register("m", tiny_model, config=config)
        assert again.version == 2
        reg.artifacts.verify("m", 2, again.files)
    numbered = sorted(p.name for p in (repo / "m").iterdir() if p.name.isdigit())
    assert numbered == ["1", "2"]
    assert set(os.listdir(repo / "m" / "2")) == {"model.onnx", "config.toml"}
