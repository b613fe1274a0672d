"""Start, wait for and stop the servers a benchmark compares, one at a time.

Each peer runs from its own virtual environment under ``benchmarks/.venvs/<peer>``, created
on first use and reused after (a marker file records what was installed). Every server runs
in its own session, so stopping it stops its worker processes too.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
BENCH = ROOT / "benchmarks"
VENVS = BENCH / ".venvs"
WORK = BENCH / ".work"
HOST = "127.0.0.1"
MODEL = "mlp"

# What each peer's environment holds. uvloop < 0.22: MLServer 1.7.1's parallel workers call
# asyncio.get_event_loop() in a fresh process, which uvloop 0.22+ turns into an error.
REQUIREMENTS = {
    "mlserver": ["mlserver==1.7.*", "onnxruntime", "numpy", "uvloop<0.22"],
    "plain": ["starlette", "uvicorn[standard]", "onnxruntime", "orjson", "numpy"],
}


def venv(peer: str) -> Path:
    """The peer's interpreter, creating its environment the first time."""
    path = VENVS / peer
    python = path / "bin" / "python"
    marker = path / ".installed"
    wanted = "\n".join(REQUIREMENTS[peer])
    if python.exists() and marker.exists() and marker.read_text() == wanted:
        return python
    print(f"[venv] installing {peer}: {' '.join(REQUIREMENTS[peer])}", flush=True)
    if not python.exists():
        subprocess.run([sys.executable, "-m", "venv", str(path)], check=True)
    subprocess.run(
        [str(python), "-m", "pip", "install", "-q", *REQUIREMENTS[peer]],
        check=True,
    )
    marker.write_text(wanted)
    return python


def pip_version(python: Path, package: str) -> str:
    code = f"import importlib.metadata as m; print(m.version({package!r}))"
    out = subprocess.run([str(python), "-c", code], capture_output=True, text=True, check=False)
    return out.stdout.strip() or "?"


_HANDED_OUT: set[int] = set()


def free_port() -> int:
    """A port free now and not handed out before by this process: servers started with
    ``--workers`` > 1 bind with SO_REUSEPORT, so two of them given the same port would both
    start and share its connections (seen once: a request for one server's HTTP port answered
    by another's gRPC edge)."""
    while True:
        with socket.socket() as s:
            s.bind((HOST, 0))
            port = int(s.getsockname()[1])
        if port not in _HANDED_OUT:
            _HANDED_OUT.add(port)
            return port


@dataclass(frozen=True, slots=True)
class Server:
    """How to start one server and where it answers."""

    name: str
    cmd: Sequence[str]
    http_port: int
    grpc_port: int | None = None
    cwd: Path = ROOT
    env: dict[str, str] | None = None
    model: str = MODEL
    # None: ready once the port accepts connections (servers that speak only HTTP/2).
    ready_path: str | None = f"/v2/models/{MODEL}/ready"


def _ready(port: int, path: str | None) -> bool:
    if path is None:
        with socket.create_connection((HOST, port), timeout=2):
            return True
    return _get(port, path) == 200


def _get(port: int, path: str) -> int:
    conn = http.client.HTTPConnection(HOST, port, timeout=2)
    try:
        conn.request("GET", path)
        resp = conn.getresponse()
        resp.read()
        return resp.status
    finally:
        conn.close()


@contextlib.contextmanager
def running(server: Server, timeout_s: float = 180) -> Iterator[subprocess.Popen[bytes]]:
    """Run ``server`` until the block ends; yield once it answers ``ready_path`` with 200."""
    log_path = WORK / "logs" / f"{server.name}.log"
    log_path.parent.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, **(server.env or {})}
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            list(server.cmd),
            cwd=server.cwd,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        try:
            deadline = time.monotonic() + timeout_s
            while True:
                if proc.poll() is not None:
                    tail = log_path.read_text(errors="replace")[-3000:]
                    raise RuntimeError(f"{server.name} exited ({proc.returncode}):\n{tail}")
                with contextlib.suppress(OSError, http.client.HTTPException):
                    if _ready(server.http_port, server.ready_path):
                        break
                if time.monotonic() > deadline:
                    raise RuntimeError(f"{server.name} not ready after {timeout_s:.0f}s")
                time.sleep(0.5)
            yield proc
        finally:
            _stop(proc)


def _stop(proc: subprocess.Popen[bytes]) -> None:
    """SIGTERM the server's process group, SIGKILL it if it lingers."""
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    # Workers forked by the server share its process group; make sure none survive it.
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)


def model_file() -> Path:
    """The reference MLP, built once into the work directory."""
    path = WORK / "mlp.onnx"
    if not path.exists():
        from benchmarks.models import mlp, save

        save(mlp(), path)
    return path


def plain(workers: int) -> Server:
    port = free_port()
    python = venv("plain")
    return Server(
        name=f"plain-w{workers}",
        cmd=[
            str(python),
            "-m",
            "uvicorn",
            "benchmarks.peers.plain_server:app",
            "--host",
            HOST,
            "--port",
            str(port),
            "--workers",
            str(workers),
            "--no-access-log",
            "--log-level",
            "warning",
        ],
        http_port=port,
        env={"SLUICE_PLAIN_MODEL": str(model_file()), "PYTHONPATH": str(ROOT)},
    )


def mlserver(
    parallel_workers: int, max_batch_size: int = 64, max_batch_time_s: float = 0.002
) -> Server:
    """MLServer with the custom runtime in ``mlserver_runtime/`` and adaptive batching."""
    python = venv("mlserver")
    http_port, grpc_port, metrics_port = free_port(), free_port(), free_port()
    repo = WORK / f"mlserver-pw{parallel_workers}"
    shutil.rmtree(repo, ignore_errors=True)
    model_dir = repo / MODEL
    model_dir.mkdir(parents=True)
    source = Path(__file__).with_name("mlserver_runtime")
    shutil.copy(source / "runtime.py", model_dir / "runtime.py")
    settings = json.loads((source / "model-settings.json").read_text())
    settings.update(max_batch_size=max_batch_size, max_batch_time=max_batch_time_s)
    (model_dir / "model-settings.json").write_text(json.dumps(settings, indent=2))
    shutil.copy(model_file(), model_dir / "model.onnx")
    server_settings = {
        "host": HOST,
        "http_port": http_port,
        "grpc_port": grpc_port,
        "metrics_port": metrics_port,
        "metrics_endpoint": None,
        "debug": False,
        "parallel_workers": parallel_workers,
    }
    (repo / "settings.json").write_text(json.dumps(server_settings, indent=2))
    return Server(
        name=f"mlserver-pw{parallel_workers}",
        cmd=[str(python.parent / "mlserver"), "start", "."],
        http_port=http_port,
        grpc_port=grpc_port,
        cwd=repo,
    )


def sluice(
    workers: int, python: str = sys.executable, extra: Sequence[str] = (), name: str = ""
) -> Server:
    """Sluice from this checkout serving a repository holding the reference model."""
    repo = WORK / "sluice-repo"
    target = repo / MODEL / "1" / "model.onnx"
    if not target.exists():
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(model_file(), target)
    http_port, grpc_port = free_port(), free_port()
    return Server(
        name=name or f"sluice-w{workers}",
        cmd=[
            python,
            "-m",
            "server.cli",
            "serve",
            str(repo),
            "--host",
            HOST,
            "--http-port",
            str(http_port),
            "--grpc-port",
            str(grpc_port),
            "--workers",
            str(workers),
            *extra,
        ],
        http_port=http_port,
        grpc_port=grpc_port,
    )


def sink() -> Server:
    """The trivial endpoint that measures the load generator's own ceiling."""
    port = free_port()
    return Server(
        name="sink",
        cmd=[str(venv("plain")), "-m", "benchmarks.loadgen.sink", str(port)],
        http_port=port,
        env={"PYTHONPATH": str(ROOT)},
        ready_path="/",
    )


def grpc_sink(response_frame: bytes) -> Server:
    """nghttpd answering every ModelInfer POST with a canned gRPC frame and grpc-status 0:
    the most h2load can drive on this machine."""
    root = WORK / "grpc-sink"
    target = root / "inference.GRPCInferenceService" / "ModelInfer"
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_bytes(response_frame)
    port = free_port()
    return Server(
        name="grpc-sink",
        cmd=["nghttpd", "--no-tls", "--trailer", "grpc-status: 0", "-d", str(root), str(port)],
        http_port=port,
        ready_path=None,
    )
