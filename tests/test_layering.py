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


def test_engine_imports_no_store_or_http_client() -> None:
    loaded = _loaded_after("server.engine.engine")
    tops = {m.split(".")[0] for m in loaded}
    assert not {"sqlite3", "psycopg", "httpx"} & tops
    assert not any(m.startswith(("server.registry", "server.events")) for m in loaded)


def test_registry_imports_no_transport() -> None:
    loaded = _loaded_after("server.registry.registry")
    assert not {"starlette", "grpc", "uvicorn", "httpx"} & {m.split(".")[0] for m in loaded}


def test_rollout_imports_no_transport_and_the_engine_no_rollout() -> None:
    loaded = _loaded_after("server.rollout.controller")
    assert not {"starlette", "grpc", "uvicorn", "httpx"} & {m.split(".")[0] for m in loaded}
    assert not any(m.startswith("server.rollout") for m in _loaded_after("server.engine.engine"))
