"""The control plane: model metadata, one checked request, and the server's statistics.

Off the clock, so plain blocking clients serve: ``http.client`` for HTTP, ``grpcio`` for gRPC.
Their exceptions are translated in one place (``_translated``) into the errors the CLI prints.
"""

from __future__ import annotations

import http.client
import socket
import ssl
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Protocol

import orjson

from server.bench.config import BenchConfig
from server.bench.tls import client_context
from server.errors import ModelNotFound, SluiceError

CONTROL_TIMEOUT_S = 10.0


class ServerUnreachable(SluiceError):
    """No server answers at the URL, or not in the protocol asked for."""


@dataclass(frozen=True, slots=True)
class Counters:
    """A model's cumulative statistics (Triton's ``model_stats`` shape), in ns and counts."""

    requests: int
    request_ns: int
    queue_ns: int
    compute_ns: int
    rows: int
    executions: int

    def minus(self, before: Counters) -> dict[str, float | int | None]:
        """Per-request averages over the step between ``before`` and this snapshot."""
        requests = self.requests - before.requests
        executions = self.executions - before.executions
        per = 1e3 * max(requests, 1)  # ns total -> µs per request
        return {
            "requests": requests,
            "request_us": (self.request_ns - before.request_ns) / per if requests else None,
            "queue_us": (self.queue_ns - before.queue_ns) / per if requests else None,
            "compute_us": (self.compute_ns - before.compute_ns) / per if requests else None,
            "batches": executions,
            "rows_per_batch": (self.rows - before.rows) / executions if executions else None,
        }


class Control(Protocol):
    def metadata(self, version: str) -> dict[str, Any]: ...

    def infer(self, body: bytes, headers: dict[str, str]) -> tuple[str, bytes]:
        """One request: ``("", answer as a load connection keeps it)`` or ``(error, text)``."""
        ...

    def counters(self) -> Counters | None: ...
    def close(self) -> None: ...


def open_control(config: BenchConfig) -> Control:
    if config.protocol == "grpc":
        from server.bench.grpc_control import GrpcControl  # grpcio only when asked for

        return GrpcControl(config)
    return HttpControl(config)


def counters_from(stats: dict[str, Any]) -> Counters:
    """Sum a ``model_stats`` list entry; missing sections count as zero."""
    infer = stats.get("inference_stats", {})

    def part(name: str, key: str) -> int:
        return int(infer.get(name, {}).get(key, 0))

    return Counters(
        requests=part("success", "count"),
        request_ns=part("success", "ns"),
        queue_ns=part("queue", "ns"),
        compute_ns=sum(part(p, "ns") for p in ("compute_input", "compute_infer", "compute_output")),
        rows=int(stats.get("inference_count", 0)),
        executions=int(stats.get("execution_count", 0)),
    )


class HttpControl:
    """V2 REST calls on one keep-alive connection."""

    def __init__(self, config: BenchConfig) -> None:
        self.config = config
        self._base = f"/v2/models/{config.model}"
        self._headers = {"Authorization": f"Bearer {config.token}"} if config.token else {}
        self._conn: http.client.HTTPConnection | None = None
        self.last_headers: dict[str, str] = {}

    def _connection(self) -> http.client.HTTPConnection:
        if self._conn is None:
            c = self.config
            if c.tls:
                context = client_context(c.ca, ["http/1.1"])
                self._conn = http.client.HTTPSConnection(
                    c.host, c.port, timeout=CONTROL_TIMEOUT_S, context=context
                )
            else:
                self._conn = http.client.HTTPConnection(c.host, c.port, timeout=CONTROL_TIMEOUT_S)
        return self._conn

    def _call(
        self,
        method: str,
        path: str,
        body: bytes | None = None,
        headers: dict[str, str] | None = None,
    ) -> tuple[int, bytes]:
        with _translated(self.config):
            conn = self._connection()
            try:
                conn.request(method, path, body, {**self._headers, **(headers or {})})
                answer = conn.getresponse()
                self.last_headers = {k.lower(): v for k, v in answer.getheaders()}
                return answer.status, answer.read()
            except (http.client.HTTPException, OSError):
                self.close()
                raise

    def metadata(self, version: str) -> dict[str, Any]:
        path = self._base + (f"/versions/{version}" if version else "")
        status, body = self._call("GET", path)
        if status == 404:
            raise ModelNotFound(_message(body, f"model '{self.config.model}' not found"))
        if status != 200:
            raise ServerUnreachable(f"GET {path} answered {status}: {_message(body, '')}")
        try:
            doc: dict[str, Any] = orjson.loads(body)
        except orjson.JSONDecodeError as exc:
            raise ServerUnreachable(f"GET {path} did not answer JSON: not a V2 server?") from exc
        return doc

    def infer(self, body: bytes, headers: dict[str, str]) -> tuple[str, bytes]:
        path = self._base + (f"/versions/{self.config.version}" if self.config.version else "")
        status, answer = self._call("POST", path + "/infer", body, headers)
        if status != 200:
            return f"HTTP {status}: {_message(answer, '')}", answer
        # as a load connection keeps an answer: the head (what the check reads of it) and body
        size = self.last_headers.get("inference-header-content-length")
        head = (
            f"HTTP/1.1 200 OK\r\ninference-header-content-length: {size}\r\n"
            if size
            else ("HTTP/1.1 200 OK\r\n")
        )
        return "", head.encode("latin-1") + b"\r\n" + answer

    def counters(self) -> Counters | None:
        path = self._base + (f"/versions/{self.config.version}" if self.config.version else "")
        try:
            status, body = self._call("GET", path + "/stats")
            stats = orjson.loads(body)["model_stats"] if status == 200 else []
        except (ServerUnreachable, orjson.JSONDecodeError, KeyError, TypeError):
            return None
        return counters_from(stats[0]) if stats else None

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None


def _message(body: bytes, default: str) -> str:
    try:
        return str(orjson.loads(body)["error"])
    except (orjson.JSONDecodeError, KeyError, TypeError):
        return body[:200].decode("utf-8", "replace") or default


@contextmanager
def _translated(config: BenchConfig) -> Iterator[None]:
    """Connection-level failures of the control client, as one clear error."""
    where = f"{'https' if config.tls else 'http'}://{config.host}:{config.port}"
    try:
        yield
    except ssl.SSLError as exc:
        raise ServerUnreachable(f"TLS with {where} failed: {exc.reason or exc}") from exc
    except (TimeoutError, ConnectionError, socket.gaierror, OSError) as exc:
        raise ServerUnreachable(f"cannot reach the server at {where}: {exc}") from exc
    except http.client.HTTPException as exc:
        raise ServerUnreachable(f"{where} did not answer HTTP/1.1: {exc!r}") from exc


def check_metadata(control: Control, config: BenchConfig) -> tuple[dict[str, Any], str]:
    """The model's metadata, and a warning when the asked-for version is unknown.

    An unknown version is not fatal: the run measures how the server rejects it.
    """
    if not config.version:
        return control.metadata(""), ""
    try:
        return control.metadata(config.version), ""
    except ModelNotFound as exc:
        doc = control.metadata("")
        return doc, f"version '{config.version}': {exc.message}; every request will fail"
