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


def test_pipeline_runner_loads_no_data_stack_until_a_step_runs() -> None:
    # A fully cached run pays only for hashing and SQLite: kinds import their libraries in run().
    loaded = _loaded_after("server.pipeline.runner")
    heavy = {"numpy", "pyarrow", "onnxruntime", "starlette", "grpc", "uvicorn", "numba"}
    assert not heavy & {m.split(".")[0] for m in loaded}


def test_webhook_signing_is_stdlib_only() -> None:
    """Receivers may copy or import ``server.events.signing`` without the server's stack."""
    loaded = _loaded_after("server.events.signing")
    assert not {"httpx", "psycopg", "numpy", "onnxruntime"} & {m.split(".")[0] for m in loaded}


def test_bench_speaks_only_the_public_protocol() -> None:
    """server.bench loads no part of the server but leaves and the protocol's messages."""
    loaded = _loaded_after("server.bench, server.bench.grpc_control, server.bench.parquet")
    ours = {m for m in loaded if m.startswith("server.") and not m.startswith("server.bench")}
    assert ours <= {"server.errors", "server.tensors", "server.grpc", "server.grpc.generated",
                    "server.grpc.generated.inference_pb2"}  # fmt: skip
    assert not {"starlette", "uvicorn", "onnxruntime"} & {m.split(".")[0] for m in loaded}


def test_security_imports_no_transport() -> None:
    """Tokens, scopes and TLS contexts are shared by both edges: stdlib and ssl only."""
    for module in ("server.security.access", "server.security.tls"):
        loaded = _loaded_after(module)
        assert not {"starlette", "grpc", "uvicorn"} & {m.split(".")[0] for m in loaded}


def test_rollout_imports_no_transport_and_the_engine_no_rollout() -> None:
    loaded = _loaded_after("server.rollout.controller")
    assert not {"starlette", "grpc", "uvicorn", "httpx"} & {m.split(".")[0] for m in loaded}
    assert not any(m.startswith("server.rollout") for m in _loaded_after("server.engine.engine"))


def test_engine_knows_monitoring_only_through_its_observer_protocol() -> None:
    loaded = _loaded_after("server.engine.engine")
    assert not any(m.startswith("server.monitoring") for m in loaded)


def test_monitoring_imports_no_transport() -> None:
    loaded = _loaded_after("server.monitoring.monitor")
    assert not {"starlette", "grpc", "uvicorn"} & {m.split(".")[0] for m in loaded}


def test_serving_loads_no_numba_or_pyarrow_until_a_model_monitors() -> None:
    loaded = _loaded_after("server.launch")
    assert not {"numba", "pyarrow"} & {m.split(".")[0] for m in loaded}


def test_profiler_runs_the_server_out_of_process() -> None:
    """server.profiler starts ``sluice serve`` in fresh processes: no engine, no ONNX Runtime,
    no transport in the profiling process itself."""
    loaded = _loaded_after("server.profiler, server.profile_cli")
    assert not {
        m for m in loaded if m.startswith(("server.engine", "server.http", "server.launch"))
    }
    assert not {"starlette", "uvicorn", "onnxruntime"} & {m.split(".")[0] for m in loaded}
