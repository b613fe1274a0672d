"""One trial's server: ``sluice serve`` in a fresh process, and the peak memory of its tree.

A fresh process per trial keeps trials independent: thread pools, the memory arena and the
allocator's high-water mark start from nothing each time.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx

from server.errors import SluiceError

HOST = "127.0.0.1"
READY_TIMEOUT_S = 120.0
SAMPLE_S = 0.05
PAGE_KB = os.sysconf("SC_PAGESIZE") // 1024
TICKS = os.sysconf("SC_CLK_TCK")


class TrialError(SluiceError):
    """A trial's server did not start or did not answer."""


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


def tree(pid: int) -> list[int]:
    """``pid`` and its descendants, from ``/proc/PID/task/TID/children``."""
    found, todo = [], [pid]
    while todo:
        current = todo.pop()
        found.append(current)
        with contextlib.suppress(OSError):
            for task in os.listdir(f"/proc/{current}/task"):
                text = Path(f"/proc/{current}/task/{task}/children").read_text()
                todo.extend(int(child) for child in text.split())
    return found


def cpu_s(pid: int) -> float:
    """User plus system CPU seconds of one process (all its threads), 0 once gone."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
        return (int(fields[11]) + int(fields[12])) / TICKS
    except (OSError, IndexError, ValueError):
        return 0.0


def tree_cpu_s(pid: int) -> float:
    return sum(cpu_s(p) for p in tree(pid))


def rss_kb(pid: int) -> int:
    """Resident memory of one process (``/proc/PID/statm``'s second field), 0 once gone."""
    try:
        return int(Path(f"/proc/{pid}/statm").read_text().split()[1]) * PAGE_KB
    except (OSError, IndexError, ValueError):
        return 0


class PeakRss:
    """Samples the resident memory of a process tree in a thread; ``peak_mb`` is the largest
    sum seen. Workers forked after the start are found on the next sample."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.peak_kb = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(SAMPLE_S):
            self.sample()

    def sample(self) -> None:
        self.peak_kb = max(self.peak_kb, sum(rss_kb(p) for p in tree(self.pid)))

    def stop(self) -> float:
        self._stop.set()
        self._thread.join()
        self.sample()
        return self.peak_kb / 1024


class ServerProcess:
    """``sluice serve MODEL --config CONFIG`` (no ``--config``: the server's defaults) on free
    loopback ports; a context manager that waits until the model is ready and stops the whole
    process group at the end."""

    def __init__(
        self, model: Path, config: Path | None, name: str, cpus: frozenset[int] | None = None
    ) -> None:
        self.model = model
        self.cpus = cpus
        self.config = config
        self.name = name
        self.http_port = free_port()
        self.grpc_port = free_port()
        self.memory: PeakRss | None = None
        self._log = tempfile.TemporaryFile()  # noqa: SIM115 (closed in __exit__)
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"{HOST}:{self.http_port}"

    def command(self) -> list[str]:
        cmd = [sys.executable, "-m", "server", "serve", str(self.model), "--host", HOST]
        cmd += ["--http-port", str(self.http_port), "--grpc-port", str(self.grpc_port)]
        cmd += ["--log-level", "warning"]
        return cmd + (["--config", str(self.config)] if self.config is not None else [])

    def __enter__(self) -> ServerProcess:
        self._proc = subprocess.Popen(
            self.command(),
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        if self.cpus is not None:
            # Set before the interpreter has started any thread: every thread inherits it.
            os.sched_setaffinity(self._proc.pid, self.cpus)
        self.memory = PeakRss(self._proc.pid)
        try:
            self._wait_ready()
        except BaseException:
            self.__exit__()
            raise
        return self

    def _wait_ready(self) -> None:
        assert self._proc is not None
        path = f"http://{self.url}/v2/models/{self.name}/ready"
        deadline = time.monotonic() + READY_TIMEOUT_S
        with httpx.Client(timeout=2.0) as client:
            while True:
                if self._proc.poll() is not None:
                    raise TrialError(
                        f"the server exited ({self._proc.returncode}) before it was ready:\n"
                        f"{self.log_tail()}"
                    )
                with contextlib.suppress(httpx.HTTPError):
                    if client.get(path).status_code == 200:
                        return
                    self._check_not_failed(client)
                if time.monotonic() > deadline:
                    raise TrialError(f"the server was not ready after {READY_TIMEOUT_S:.0f} s")
                time.sleep(0.1)

    def _check_not_failed(self, client: httpx.Client) -> None:
        """A model that failed to load leaves the server up and the model UNAVAILABLE."""
        index = client.post(f"http://{self.url}/v2/repository/index", json={})
        for entry in index.json() if index.status_code == 200 else []:
            if entry.get("name") == self.name and entry.get("state") == "UNAVAILABLE":
                raise TrialError(f"the model failed to load: {entry.get('reason') or '?'}")

    def log_tail(self, chars: int = 2000) -> str:
        self._log.seek(0)
        return self._log.read().decode(errors="replace")[-chars:].strip()

    def cpu_s(self) -> float:
        """CPU seconds the server's process tree has used so far."""
        return tree_cpu_s(self._proc.pid) if self._proc is not None else 0.0

    def peak_rss_mb(self) -> float:
        """The largest resident memory of the server's process tree so far."""
        if self.memory is None:
            return 0.0
        self.memory.sample()
        return self.memory.peak_kb / 1024

    def __exit__(self, *exc: object) -> None:
        proc = self._proc
        if proc is None:
            return
        if self.memory is not None:
            self.memory.stop()
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        # Forked workers share the group: none may outlive the trial.
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)
        self._log.close()
