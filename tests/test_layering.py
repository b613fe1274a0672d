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


def test_bench_speaks_only_the_public_protocol() -> None:
    """server.bench loads no part of the server but leaves and the protocol's messages."""
    loaded = _loaded_after("server.bench, server.bench.grpc_control, server.bench.parquet")
    ours = {m for m in loaded if m.startswith("server.") and not m.startswith("server.bench")}
    assert ours <= {"server.errors", "server.tensors", "server.grpc", "server.grpc.generated",
                    "server.grpc.generated.inference_pb2"}  # fmt: skip
    assert not {"starlette", "uvicorn", "onnxruntime"} & {m.split(".")[0] for m in loaded}
