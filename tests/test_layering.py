"""The engine never imports a transport; kernels never import the server."""

from __future__ import annotations

import subprocess
import sys


def _loaded_after(module: str) -> set[str]:
    code = f"import sys, {module}; print(' '.join(sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return set(out.stdout.split())


def test_engine_imports_no_transport() -> None:
    loaded = _loaded_after("server.engine.engine")
    assert not {"starlette", "grpc", "uvicorn"} & {m.split(".")[0] for m in loaded}


def test_codecs_import_no_transport() -> None:
    loaded = _loaded_after("server.codecs.json")
    assert not {"starlette", "grpc", "uvicorn"} & {m.split(".")[0] for m in loaded}


def test_engine_knows_monitoring_only_through_its_observer_protocol() -> None:
    loaded = _loaded_after("server.engine.engine")
    assert not any(m.startswith("server.monitoring") for m in loaded)


def test_monitoring_imports_no_transport() -> None:
    loaded = _loaded_after("server.monitoring.monitor")
    assert not {"starlette", "grpc", "uvicorn"} & {m.split(".")[0] for m in loaded}


def test_serving_loads_no_numba_or_pyarrow_until_a_model_monitors() -> None:
    loaded = _loaded_after("server.launch")
    assert not {"numba", "pyarrow"} & {m.split(".")[0] for m in loaded}
