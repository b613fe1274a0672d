"""Builds the engine and its edges and runs them on one event loop; drains on SIGTERM.

``--workers N`` starts N processes, each with its own engine, each binding the same ports
with SO_REUSEPORT so the kernel spreads connections between them (the HTTP front end is
GIL-bound; one process per core is what lets it use the machine).
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import dataclasses
import gc
import logging
import multiprocessing
import os
import signal
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import uvicorn
from prometheus_client import CollectorRegistry, ProcessCollector

from server.engine.catalog import Catalog
from server.engine.engine import Engine
from server.engine.placement import Placement
from server.engine.repository import Repository
from server.errors import SluiceError
from server.grpc.server import GrpcEdge, build_grpc_server
from server.http.app import build_app
from server.http.protocol import guarded_protocol
from server.metrics import Metrics
from server.monitoring.alerts import AlertSink, LoggingAlertSink
from server.monitoring.monitor import Monitor
from server.registry import exists as registry_exists
from server.registry.catalog import RegistryCatalog
from server.resources import usable_cores
from server.security.access import build_guard, check_exposure
from server.security.tls import server_context
from server.settings import AUTO, ServerSettings
from server.sockets import bind

if TYPE_CHECKING:
    from server.events.delivery import Deliverer

log = logging.getLogger("sluice")
_PR_SET_PDEATHSIG = 1


class _Server(uvicorn.Server):
    """uvicorn without its own signal handling: ``serve`` below owns SIGTERM/SIGINT."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


def build_catalog(settings: ServerSettings) -> Repository | RegistryCatalog:
    """The registry when the repository has one (or ``--registry`` names one), else the
    repository layout on disk."""
    path = Path(settings.model_path)
    if path.is_dir() and registry_exists(path, settings.registry or None):
        keys = {"SLUICE_AUDIT_KEY": settings.audit_key} if settings.audit_key else {}
        return RegistryCatalog(path, settings.registry or None, keys, settings.default_model_config)
    return Repository(path, settings.default_model_config)


def build_engine(settings: ServerSettings, catalog: Catalog | None = None) -> Engine:
    registry = CollectorRegistry()
    ProcessCollector(registry=registry)
    catalog = catalog if catalog is not None else build_catalog(settings)
    placement = Placement(settings.cores_per_worker, settings.workers) if settings.cores else None
    return Engine(catalog, Metrics(registry), settings.drain_timeout_s, placement=placement)


def start_deliverer(settings: ServerSettings) -> Deliverer:
    """Deliver the registry's events to ``settings.webhooks`` in a background thread."""
    from server.events.delivery import Deliverer  # httpx: only when webhooks are configured

    if not settings.webhook_secret:
        log.warning("webhooks without --webhook-secret: events are sent unsigned")
    deliverer = Deliverer(
        settings.model_path, settings.registry or None, settings.webhooks, settings.webhook_secret
    )
    deliverer.start()
    return deliverer


async def watch_registry(engine: Engine, catalog: RegistryCatalog, interval_s: float) -> None:
    """Poll the registry's change counter; on a change, bring the engine in line (deploys,
    undeploys and alias moves are served within ``interval_s`` plus the load time)."""
    loop = asyncio.get_running_loop()
    last = await loop.run_in_executor(None, catalog.changes)
    while True:
        await asyncio.sleep(interval_s)
        try:
            current = await loop.run_in_executor(None, catalog.changes)
            if current != last:
                await engine.sync()
                last = current
        except SluiceError as exc:  # the registry is unreachable: keep serving, retry
            log.warning("registry poll failed: %s", exc.message)


class Service:
    """One worker's engine and edges on the running loop. ``stop`` may be called from any
    thread; ``run`` then drains and returns the exit code."""

    def __init__(self, settings: ServerSettings, alert_sink: AlertSink | None = None) -> None:
        self.settings = settings = resolve(settings)
        self.guard = build_guard(settings)
        self.catalog = build_catalog(settings)
        self.engine = build_engine(settings, self.catalog)
        self._watcher: asyncio.Task[None] | None = None
        self._deliverer: Deliverer | None = None
        self._rollouts: asyncio.Task[None] | None = None
        # Capture and online drift; drift alerts go to ``alert_sink``: by default the
        # registry's outbox (so webhooks get them) when there is a registry, else the log.
        sink = alert_sink or (
            self.catalog if isinstance(self.catalog, RegistryCatalog) else LoggingAlertSink()
        )
        self.monitor = Monitor(self.engine.metrics.monitoring, sink, settings.capture_hash_key)
        self.engine.observer = self.monitor
        self.http_port = 0
        self.grpc_port = 0
        self._http: _Server | None = None
        self._grpc: GrpcEdge | None = None
        self._grpc_stopping: asyncio.Task[None] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop_requested = False

    async def run(self, on_ready: Callable[[Service], None] | None = None) -> int:
        settings = self.settings
        self._loop = asyncio.get_running_loop()
        if isinstance(self.catalog, RegistryCatalog):
            # Started before the first sync, so a deploy during start-up is not missed.
            self._watcher = asyncio.ensure_future(
                watch_registry(self.engine, self.catalog, settings.registry_poll_s)
            )
            from server.rollout.controller import Controller

            controller = Controller(self.engine, self.catalog, drift=self.monitor.report)
            self._rollouts = asyncio.ensure_future(controller.run())
        if settings.webhooks:
            self._deliverer = start_deliverer(settings)
        await self.engine.start()
        config = uvicorn.Config(
            build_app(
                self.engine,
                settings.max_request_bytes,
                self.guard,
                drift_report=self.monitor.report,
            ),
            lifespan="off",
            access_log=False,
            log_level=settings.log_level,
            http=guarded_protocol(settings.http_header_timeout_s, settings.http_body_timeout_s),
            timeout_graceful_shutdown=max(int(settings.drain_timeout_s), 1),
            server_header=False,
            date_header=False,
            timeout_keep_alive=settings.http_keepalive_timeout_s,  # type: ignore[arg-type]
            limit_concurrency=settings.http_max_concurrency or None,
        )
        if settings.tls_cert:
            config.load()
            config.ssl = server_context(settings.tls_cert, settings.tls_key, settings.tls_client_ca)
        self._http = _Server(config)
        self._http.should_exit = self._stop_requested
        sock = bind(settings.host, settings.http_port, reuse_port=settings.workers > 1)
        self.http_port = sock.getsockname()[1]
        self._grpc = build_grpc_server(self.engine, settings, self.guard)
        self.grpc_port = self._grpc.port
        await self._grpc.start()
        log.info(
            "HTTP on http://%s:%d, gRPC on %s (models: %s)",
            settings.host,
            self.http_port,
            self._grpc.address,
            ", ".join(self.engine.names()),
        )
        if self._stop_requested:
            self._stop_grpc()
        if on_ready is not None:
            on_ready(self)
        try:
            await self._http.serve(sockets=[sock])
        finally:
            # Both edges drain at once (stop() started gRPC's); then the engine's queues.
            self._stop_grpc()
            if self._grpc_stopping is not None:
                await self._grpc_stopping
            for task in (self._watcher, self._rollouts):
                if task is not None:
                    task.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await task
            drained = await self.engine.stop()
            # After the drain, so every answered request is in the queue: commit it all.
            await asyncio.get_running_loop().run_in_executor(None, self.monitor.close)
            if isinstance(self.catalog, RegistryCatalog):
                self.catalog.close()
            if self._deliverer is not None:
                self._deliverer.stop(settings.drain_timeout_s)
        log.info("stopped%s", "" if drained else " (drain timed out)")
        return 0 if drained else 1

    def stop(self) -> None:
        """Stop accepting; requests already accepted finish (bounded by the drain timeout)."""
        self._stop_requested = True
        if self._http is not None:
            self._http.should_exit = True
        if self._loop is not None and not self._loop.is_closed():
            self._loop.call_soon_threadsafe(self._stop_grpc)

    def _stop_grpc(self) -> None:
        """On the loop: gRPC refuses new calls and gives running ones the drain timeout."""
        if self._grpc is not None and self._grpc_stopping is None:
            stopping = self._grpc.stop(self.settings.drain_timeout_s)
            self._grpc_stopping = asyncio.ensure_future(stopping)


# Collect when tracked objects grew by 50,000 since the last collection, not 700: a server's
# per-request objects die by reference counting, so the default mostly walked live requests.
GC_THRESHOLDS = (50_000, 20, 20)


def settle_heap(_service: Service | None = None) -> None:
    """Once the server is up, move what start-up built (modules, sessions, and numba and
    pyarrow when monitoring is on) out of the garbage collector's reach, and collect less often.

    With capture and drift on, requests queued for the monitor lived through collections and
    were promoted, so a full collection ran about once a second, walked ~180k objects and took
    ~90 ms: that pause was the p99 (benchmarks/results/capture-20261129-0856.md). After this,
    collections are rare and walk only what requests left alive.
    """
    gc.collect()
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLDS)


async def serve(settings: ServerSettings) -> int:
    """Serve until SIGTERM/SIGINT, then drain; the process's exit code."""
    service = Service(settings)
    loop = asyncio.get_running_loop()

    def on_signal(sig: signal.Signals) -> None:
        log.info("received %s: draining", sig.name)
        service.stop()

    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, on_signal, sig)
    loop.add_signal_handler(signal.SIGHUP, service.guard.reload)  # the tokens file
    try:
        return await service.run(on_ready=settle_heap)
    except OSError as exc:
        log.error("cannot start: %s", exc)
        return 2


def _worker(settings: ServerSettings, parent: int) -> None:
    _terminate_with_parent(parent)
    configure_logging(settings)
    sys.exit(run_worker(settings))


def _terminate_with_parent(parent: int) -> None:
    """Ask Linux for SIGTERM when the parent dies, so a killed parent leaves no workers
    holding the ports (seen in tests: SIGKILL of the parent orphaned both workers)."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
    except (OSError, AttributeError):
        return  # not Linux: workers outlive a killed parent
    if os.getppid() != parent:  # the parent died before prctl took effect
        os.kill(os.getpid(), signal.SIGTERM)


def run_worker(settings: ServerSettings) -> int:
    try:
        import uvloop

        return uvloop.run(serve(settings))
    except ImportError:
        return asyncio.run(serve(settings))


def resolve(settings: ServerSettings) -> ServerSettings:
    """``"auto"`` cores and workers made concrete from what this process may use, logged."""
    if settings.cores != AUTO and settings.workers != AUTO:
        return settings
    cores = usable_cores()
    resolved = settings.resolved(cores.count)
    log.info(
        "cores: %s; %d worker(s)%s, %d core(s) each",
        cores.describe() if settings.cores == AUTO else f"{resolved.cores} (set)",
        resolved.workers,
        " (auto)" if settings.workers == AUTO else "",
        resolved.cores_per_worker,
    )
    if resolved.workers > resolved.cores:
        log.warning("%d workers on %d core(s): oversubscribed", resolved.workers, resolved.cores)
    return resolved


def run(settings: ServerSettings) -> int:
    """Run one worker in this process, or ``workers`` child processes and wait for them."""
    configure_logging(settings)
    settings = resolve(settings)
    check_exposure(settings)
    if settings.workers == 1:
        return run_worker(settings)
    if settings.http_port == 0 or settings.grpc_port == 0:
        log.error("--workers > 1 needs fixed ports (they are shared with SO_REUSEPORT)")
        return 2
    context = multiprocessing.get_context("spawn")
    # One deliverer for the whole server, in this process, rather than one per worker.
    deliverer = start_deliverer(settings) if settings.webhooks else None
    worker_settings = dataclasses.replace(settings, webhooks=())
    children = [
        context.Process(
            target=_worker, args=(worker_settings, os.getpid()), name=f"sluice-worker-{i}"
        )
        for i in range(settings.workers)
    ]
    for child in children:
        child.start()

    def forward(_sig: int, _frame: object) -> None:
        for child in children:
            if child.is_alive():
                child.terminate()  # SIGTERM: each worker drains on its own

    signal.signal(signal.SIGTERM, forward)
    signal.signal(signal.SIGINT, forward)

    def reload(_sig: int, _frame: object) -> None:
        for child in children:
            if child.pid is not None and child.is_alive():
                os.kill(child.pid, signal.SIGHUP)  # each worker reads the tokens file again

    signal.signal(signal.SIGHUP, reload)
    for child in children:
        child.join()
    if deliverer is not None:
        deliverer.stop(settings.drain_timeout_s)
    return max((child.exitcode or 0) for child in children)


def configure_logging(settings: ServerSettings) -> None:
    logging.basicConfig(
        level=settings.log_level.upper(),
        format="%(asctime)s %(levelname)s %(name)s [%(process)d] %(message)s",
    )
