"""The engine: the models being served and the one ``infer`` every edge calls.

Transport-free: edges hand in ``InferRequest`` values and get ``InferResponse`` values or a
``SluiceError`` back. Metadata comes back as TypedDicts shaped like the protocol's JSON, so
each edge only encodes.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import TypedDict

from server import __version__
from server.errors import ModelNotFound, ModelNotReady, SluiceError
from server.metrics import Metrics
from server.tensors import Tensor, TensorSpec

from .models import ModelVersion
from .observer import InferenceObserver, Observation, ObservedModel
from .repository import Repository
from .requests import InferRequest, InferResponse, ModelIndexEntry
from .stats import ModelStatistics

log = logging.getLogger(__name__)

EXTENSIONS = (
    "binary_tensor_data",
    "model_repository",
    "model_configuration",
    "statistics",
    "schedule_policy",
)
_TRITON_TYPES = {"BYTES": "TYPE_STRING"}


class TensorMetadata(TypedDict):
    name: str
    datatype: str
    shape: list[int]


class ModelMetadata(TypedDict):
    name: str
    versions: list[str]
    platform: str
    inputs: list[TensorMetadata]
    outputs: list[TensorMetadata]


class ServerMetadata(TypedDict):
    name: str
    version: str
    extensions: list[str]


def _tensor_metadata(spec: TensorSpec) -> TensorMetadata:
    return {"name": spec.name, "datatype": spec.datatype, "shape": list(spec.shape)}


def _observed(version: ModelVersion) -> ObservedModel:
    return ObservedModel(
        version.name,
        version.version,
        version.config,
        version.inputs,
        version.outputs,
        version.batching,
    )


class Engine:
    """Owns every loaded model version; safe to use from one event loop."""

    def __init__(
        self,
        repository: Repository,
        metrics: Metrics,
        drain_timeout_s: float = 30.0,
        observer: InferenceObserver | None = None,
    ) -> None:
        self.repository = repository
        self.metrics = metrics
        self.drain_timeout_s = drain_timeout_s
        self.observer = observer
        self._current: dict[str, ModelVersion] = {}
        self._failed: dict[str, str] = {}
        self._locks: dict[str, asyncio.Lock] = {}
        self._retiring: set[asyncio.Task[bool]] = set()
        self._started = False
        self._stopping = False

    # -- lifecycle ------------------------------------------------------------------------

    async def start(self) -> None:
        """Load every model of the repository; a model that fails is reported, not fatal."""
        for name in self.repository.names():
            try:
                await self.load(name)
            except SluiceError as exc:
                log.error("model '%s' failed to load: %s", name, exc.message)
        self._started = True

    async def stop(self) -> bool:
        """Refuse new requests and drain queued and running ones. False if the drain timed out."""
        self._stopping = True
        versions = list(self._current.values())
        self._current.clear()
        results = await asyncio.gather(*(v.stop(self.drain_timeout_s) for v in versions))
        if self._retiring:
            results += await asyncio.gather(*self._retiring)
        return all(results)

    @property
    def live(self) -> bool:
        return not self._stopping

    @property
    def ready(self) -> bool:
        return self._started and not self._stopping and not self._failed

    async def load(self, name: str) -> ModelVersion:
        """(Re)load the latest version of ``name``; it replaces the current one only once
        warmed up, and the old one drains in the background, so no request is dropped."""
        lock = self._locks.setdefault(name, asyncio.Lock())
        async with lock:
            source = self.repository.source(name)
            loop = asyncio.get_running_loop()
            metrics = self.metrics.model(source.name, source.version)
            try:
                version = await loop.run_in_executor(None, ModelVersion, source, metrics)
                if self.observer is not None:
                    await loop.run_in_executor(None, self.observer.attach, _observed(version))
            except SluiceError as exc:
                self._failed[name] = exc.message
                raise
            version.start()
            old = self._current.get(name)
            self._current[name] = version
            self._failed.pop(name, None)
            log.info(
                "model '%s' version %s ready (%.2fs, providers %s, batching %s)",
                name,
                version.version,
                version.load_seconds,
                ",".join(version.session.providers),
                "on" if version.batching else "off",
            )
            if old is not None:
                self._retire(old)
            return version

    async def unload(self, name: str) -> None:
        version = self._current.pop(name, None)
        self._failed.pop(name, None)
        if version is None:
            if name not in self.repository.names():
                raise ModelNotFound(f"unknown model '{name}'")
            return
        await version.stop(self.drain_timeout_s)
        if self.observer is not None:
            self.observer.detach(version.name, version.version)

    def _retire(self, old: ModelVersion) -> None:
        task = asyncio.get_running_loop().create_task(old.stop(self.drain_timeout_s))
        self._retiring.add(task)
        task.add_done_callback(self._retiring.discard)
        if self.observer is not None:
            observer = self.observer
            task.add_done_callback(lambda _: observer.detach(old.name, old.version))

    # -- lookup ---------------------------------------------------------------------------

    def get(self, name: str, version: str = "") -> ModelVersion:
        current = self._current.get(name)
        if current is None:
            if name in self._failed:
                raise ModelNotReady(f"model '{name}' is unavailable: {self._failed[name]}")
            if self._stopping:
                raise ModelNotReady("the server is shutting down")
            if name in self.repository.names():
                raise ModelNotReady(f"model '{name}' is not loaded")
            raise ModelNotFound(f"unknown model '{name}'")
        if version and version != current.version:
            raise ModelNotFound(
                f"model '{name}' has no loaded version '{version}' (loaded: {current.version})"
            )
        if current.state != "READY":
            raise ModelNotReady(f"model '{name}' is {current.state.lower()}")
        return current

    def model_ready(self, name: str, version: str = "") -> bool:
        try:
            self.get(name, version)
        except SluiceError:
            return False
        return True

    # -- inference ------------------------------------------------------------------------

    async def infer(self, request: InferRequest) -> InferResponse:
        model = self.get(request.model, request.version)
        metrics = model.metrics
        started = time.perf_counter_ns()
        try:
            feed, rows, key = model.validate(request.inputs, request.outputs)
            assert model.batcher is not None
            future = model.batcher.submit(
                feed, rows, key, request.timeout_us, request.priority, request.client_gone
            )
            arrays = await future
        except SluiceError as exc:
            elapsed = time.perf_counter_ns() - started
            model.stats.fail.add(elapsed)
            metrics.failure.labels(model.name, model.version, type(exc).__name__).inc()
            if self.observer is not None:
                self._observe(model, request, None, exc, elapsed)
            raise
        except asyncio.CancelledError:  # the client went away or the edge cancelled the call
            metrics.failure.labels(model.name, model.version, "Cancelled").inc()
            raise
        elapsed = time.perf_counter_ns() - started
        model.stats.success.add(elapsed)
        model.stats.last_inference_ms = time.time_ns() // 1_000_000
        metrics.success.inc()
        metrics.request_us.observe(elapsed / 1000)
        names = request.outputs or tuple(arrays)
        specs = model.outputs
        outputs = [Tensor(name, specs[name].datatype, arrays[name]) for name in names]
        if self.observer is not None:
            self._observe(model, request, outputs, None, elapsed)
        return InferResponse(model.name, model.version, request.id, outputs)

    def _observe(
        self,
        model: ModelVersion,
        request: InferRequest,
        outputs: list[Tensor] | None,
        error: SluiceError | None,
        elapsed_ns: int,
    ) -> None:
        assert self.observer is not None
        observation = Observation(
            model.name, model.version, request, outputs, error, elapsed_ns, time.time_ns()
        )
        self.observer.observe(observation)

    # -- metadata -------------------------------------------------------------------------

    def server_metadata(self) -> ServerMetadata:
        return {"name": "sluice", "version": __version__, "extensions": list(EXTENSIONS)}

    def model_metadata(self, name: str, version: str = "") -> ModelMetadata:
        model = self.get(name, version)
        return {
            "name": model.name,
            "versions": [model.version],
            "platform": "onnxruntime_onnx",
            "inputs": [_tensor_metadata(s) for s in model.inputs.values()],
            "outputs": [_tensor_metadata(s) for s in model.outputs.values()],
        }

    def model_config(self, name: str, version: str = "") -> dict[str, object]:
        """The model's configuration in the shape of Triton's model config JSON."""
        model = self.get(name, version)
        batching, runtime = model.config.batching, model.config.runtime
        skip = 1 if model.batching else 0

        def tensors(specs: dict[str, TensorSpec]) -> list[dict[str, object]]:
            return [
                {
                    "name": s.name,
                    "data_type": _TRITON_TYPES.get(s.datatype, f"TYPE_{s.datatype}"),
                    "dims": list(s.shape[skip:]),
                }
                for s in specs.values()
            ]

        config: dict[str, object] = {
            "name": model.name,
            "platform": "onnxruntime_onnx",
            "backend": "onnxruntime",
            "version_policy": {"latest": {"num_versions": 1}},
            "max_batch_size": batching.max_batch_size if model.batching else 0,
            "input": tensors(model.inputs),
            "output": tensors(model.outputs),
            "instance_group": [
                {"name": model.name, "count": runtime.instances, "kind": "KIND_CPU"}
            ],
        }
        if model.batching:
            config["dynamic_batching"] = {
                "preferred_batch_size": list(batching.preferred_batch_sizes),
                "max_queue_delay_microseconds": batching.max_queue_delay_us,
                "priority_levels": batching.priority_levels,
                "default_priority_level": batching.default_priority,
                "default_queue_policy": {
                    "max_queue_size": batching.max_queue_size,
                    "default_timeout_microseconds": batching.default_timeout_ms * 1000,
                },
            }
        return config

    def statistics(self, name: str = "", version: str = "") -> list[ModelStatistics]:
        if name:
            model = self.get(name, version)
            return [model.stats.view(model.name, model.version)]
        return [m.stats.view(m.name, m.version) for m in self._current.values()]

    def index(self, ready_only: bool = False) -> list[ModelIndexEntry]:
        entries = []
        for name in self.repository.names():
            model = self._current.get(name)
            if model is not None:
                entries.append(ModelIndexEntry(name, model.version, model.state))
            elif not ready_only:
                versions = self.repository.versions(name)
                reason = self._failed.get(name, "unloaded" if self._started else "")
                entries.append(ModelIndexEntry(name, versions[-1], "UNAVAILABLE", reason))
        return [e for e in entries if not ready_only or e.state == "READY"]
