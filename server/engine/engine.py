"""The engine: the models being served and the one ``infer`` every edge calls.

Transport-free: edges hand in ``InferRequest`` values and get ``InferResponse`` values or a
``SluiceError`` back. Metadata comes back as TypedDicts shaped like the protocol's JSON, so
each edge only encodes.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Iterable
from typing import Any, TypedDict

from server import __version__
from server.errors import ModelNotFound, ModelNotReady, SluiceError
from server.metrics import Metrics
from server.tensors import Tensor, TensorSpec

from .catalog import Catalog
from .mirror import Mirror
from .models import ModelVersion
from .observer import InferenceObserver, Observation, ObservedModel
from .placement import Placement
from .repository import ModelPlan, ModelSource
from .requests import InferRequest, InferResponse, ModelIndexEntry
from .routing import Router
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


class Served:
    """One model's live versions and its default; replaced whole on a swap, so a request
    sees either the old set or the new one."""

    __slots__ = ("default", "router", "versions")

    def __init__(
        self, versions: dict[str, ModelVersion], default: str, router: Router | None = None
    ) -> None:
        self.versions = versions
        self.default = default
        self.router = router  # a rollout's split and mirror; None: every request to default


def _observed(version: ModelVersion) -> ObservedModel:
    return ObservedModel(
        version.name,
        version.version,
        version.config,
        version.inputs,
        version.outputs,
        version.batching,
    )


def _ordered(versions: Iterable[str]) -> list[str]:
    return sorted(versions, key=lambda v: (not v.isdigit(), int(v) if v.isdigit() else 0, v))


class Engine:
    """Owns every loaded model version; safe to use from one event loop.

    What to serve comes from a ``Catalog`` (the repository layout, or the registry's
    deployments); ``sync`` loads and warms what is new, switches atomically, then drains and
    unloads what left, so no request fails during a swap.
    """

    def __init__(
        self,
        catalog: Catalog,
        metrics: Metrics,
        drain_timeout_s: float = 30.0,
        observer: InferenceObserver | None = None,
        placement: Placement | None = None,
    ) -> None:
        self.catalog = catalog
        self.placement = placement or Placement.whole_process()
        self.metrics = metrics
        self.drain_timeout_s = drain_timeout_s
        self.observer = observer  # capture and online drift (monitoring), when on
        self._served: dict[str, Served] = {}
        self._known: dict[str, list[str]] = {}
        self._failed: dict[str, str] = {}
        # (name, version, sha256) that failed to load: not retried until the plan changes.
        self._broken: dict[tuple[str, str, str], str] = {}
        self._held: set[str] = set()  # unloaded through model control; sync leaves them
        self._locks: dict[str, asyncio.Lock] = {}
        self._retiring: set[asyncio.Task[bool]] = set()
        self._started = False
        self._stopping = False
        self.mirror = Mirror(metrics)

    # -- lifecycle ------------------------------------------------------------------------

    async def start(self) -> None:
        """Load what the catalog says to serve; a model that fails is reported, not fatal."""
        await self.sync()
        self._started = True

    async def stop(self) -> bool:
        """Refuse new requests and drain queued and running ones. False if the drain timed out."""
        self._stopping = True
        versions = [v for served in self._served.values() for v in served.versions.values()]
        self._served.clear()
        await self.mirror.stop()
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

    def names(self) -> list[str]:
        return sorted(set(self._known) | set(self._served))

    async def sync(self) -> None:
        """Bring every model in line with the catalog's plans (the registry changed)."""
        if self._stopping:
            return
        plans = await self._refresh()
        for name in sorted(set(plans) | set(self._served)):
            if name not in self._held and not self._stopping:
                await self._apply(name, plans.get(name))

    async def load(self, name: str, actor: str = "") -> None:
        """Model control: (re)load ``name`` as the catalog plans it, even if unchanged."""
        plans = await self._refresh()
        plan = plans.get(name)
        if plan is None:
            if name in self._known:
                raise ModelNotReady(f"model '{name}' has no deployed version to load")
            raise ModelNotFound(f"unknown model '{name}'")
        self._held.discard(name)
        self._broken = {k: v for k, v in self._broken.items() if k[0] != name}
        await self._apply(name, plan, force=True)
        if name in self._failed:
            raise ModelNotReady(f"model '{name}' failed to load: {self._failed[name]}")
        log.info("model '%s' loaded%s", name, f" by '{actor}'" if actor else "")
        await self._report("load", name, None, "", actor)

    async def unload(self, name: str, actor: str = "") -> None:
        """Model control: stop serving ``name`` until it is loaded again."""
        async with self._lock(name):
            served = self._served.pop(name, None)
            self._failed.pop(name, None)
            if served is None and name not in self._known:
                raise ModelNotFound(f"unknown model '{name}'")
            self._held.add(name)
            if served is not None:
                await asyncio.gather(
                    *(v.stop(self.drain_timeout_s) for v in served.versions.values())
                )
                if self.observer is not None:
                    for version in served.versions.values():
                        self.observer.detach(version.name, version.version)
        log.info("model '%s' unloaded%s", name, f" by '{actor}'" if actor else "")
        await self._report("unload", name, None, "", actor)

    async def _refresh(self) -> dict[str, ModelPlan]:
        loop = asyncio.get_running_loop()
        plans, known = await loop.run_in_executor(None, self._read_catalog)
        self._known = known
        return plans

    def _read_catalog(self) -> tuple[dict[str, ModelPlan], dict[str, list[str]]]:
        plans = {name: self.placement.plan(p) for name, p in self.catalog.plans().items()}
        return plans, {name: self.catalog.versions(name) for name in self.catalog.names()}

    def _lock(self, name: str) -> asyncio.Lock:
        return self._locks.setdefault(name, asyncio.Lock())

    async def _apply(self, name: str, plan: ModelPlan | None, force: bool = False) -> None:
        async with self._lock(name):
            current = self._served.get(name)
            have = current.versions if current is not None else {}
            if plan is None:
                self._failed.pop(name, None)
                if current is not None:
                    del self._served[name]
                    for retired in have.values():
                        self._retire(retired)
                    log.info("model '%s' is no longer deployed: unloading", name)
                return
            keep: dict[str, ModelVersion] = {}
            failures: list[str] = []
            for version, source in plan.versions.items():
                old = have.get(version)
                if old is not None and old.source == source and not force:
                    keep[version] = old
                    continue
                loaded = await self._load_version(source, failures)
                if loaded is not None:
                    keep[version] = loaded
            if not keep:
                if current is not None:
                    log.error("model '%s': no planned version loaded; the current ones stay", name)
                else:
                    self._failed[name] = "; ".join(failures) or "no version loaded"
                return
            default = plan.default if plan.default in keep else _ordered(keep)[-1]
            self._served[name] = Served(keep, default, self._router(plan, keep))
            self._failed.pop(name, None)
            for version, previous in have.items():
                if keep.get(version) is not previous:
                    self._retire(previous)

    async def _load_version(self, source: ModelSource, failures: list[str]) -> ModelVersion | None:
        key = (source.name, source.version, source.sha256)
        if key in self._broken:
            failures.append(self._broken[key])
            return None
        loop = asyncio.get_running_loop()
        metrics = self.metrics.model(source.name, source.version)
        try:
            version = await loop.run_in_executor(None, ModelVersion, source, metrics)
            if self.observer is not None:
                await loop.run_in_executor(None, self.observer.attach, _observed(version))
        except SluiceError as exc:
            self._broken[key] = exc.message
            failures.append(exc.message)
            log.error(
                "model '%s' version %s failed to load: %s", source.name, source.version, exc.message
            )
            await self._report("load_failed", source.name, source.version, exc.message, "")
            return None
        version.start()
        log.info(
            "model '%s' version %s ready (%.2fs, providers %s, batching %s; "
            "%d instance(s) x %d intra-op thread(s), %d inter-op, for %d core(s))",
            source.name,
            version.version,
            version.load_seconds,
            ",".join(version.session.providers),
            "on" if version.batching else "off",
            source.config.runtime.instances,
            source.config.runtime.intra_op_threads,
            source.config.runtime.inter_op_threads,
            self.placement.cores,
        )
        return version

    async def _report(
        self, action: str, name: str, version: str | None, reason: str, actor: str
    ) -> None:
        loop = asyncio.get_running_loop()
        try:
            await loop.run_in_executor(
                None, self.catalog.report, action, name, version, reason, actor
            )
        except SluiceError as exc:
            log.error("could not record %s of model '%s': %s", action, name, exc.message)

    def _router(self, plan: ModelPlan, keep: dict[str, ModelVersion]) -> Router | None:
        """The rollout's split over the versions that loaded (and the weight gauges)."""
        weights = {v: w for v, w in plan.weights.items() if v in keep}
        for version in keep:
            self.metrics.rollout_weight.labels(plan.name, version).set(weights.get(version, 0))
        mirror = plan.mirror if plan.mirror in keep else ""
        router = Router(weights, plan.sticky, mirror, plan.mirror_percent)
        return router if sum(weights.values()) > 0 else None

    def sticky_header(self, name: str) -> str:
        """The header (lower case) whose value keeps a caller on one version of ``name``
        during a rollout; empty when none. Edges pass its value as ``routing_key``."""
        served = self._served.get(name)
        return served.router.sticky if served is not None and served.router else ""

    def _retire(self, old: ModelVersion) -> None:
        task = asyncio.get_running_loop().create_task(old.stop(self.drain_timeout_s))
        self._retiring.add(task)
        task.add_done_callback(self._retiring.discard)
        if self.observer is not None:
            observer = self.observer
            task.add_done_callback(lambda _: observer.detach(old.name, old.version))

    # -- lookup ---------------------------------------------------------------------------

    def get(self, name: str, version: str = "", key: str | None = None) -> ModelVersion:
        """The version named, else the default; for an inference request (``key`` given,
        possibly empty) during a rollout, the rollout's pick (sticky by ``key``)."""
        served = self._served.get(name)
        if served is None:
            if name in self._failed:
                raise ModelNotReady(f"model '{name}' is unavailable: {self._failed[name]}")
            if self._stopping:
                raise ModelNotReady("the server is shutting down")
            if name in self._known:
                raise ModelNotReady(f"model '{name}' is not loaded")
            raise ModelNotFound(f"unknown model '{name}'")
        if version:
            model = served.versions.get(version)
            if model is None:
                raise ModelNotFound(
                    f"model '{name}' has no loaded version '{version}' "
                    f"(loaded: {', '.join(_ordered(served.versions))})"
                )
        else:
            model = served.versions[served.default]
            if served.router is not None and key is not None:
                picked = served.versions.get(served.router.pick(key))
                if picked is not None and picked.state == "READY":
                    model = picked
        if model.state != "READY":
            raise ModelNotReady(f"model '{name}' is {model.state.lower()}")
        return model

    def model_ready(self, name: str, version: str = "") -> bool:
        try:
            self.get(name, version)
        except SluiceError:
            return False
        return True

    # -- inference ------------------------------------------------------------------------

    async def infer(self, request: InferRequest) -> InferResponse:
        model = self.get(request.model, request.version, request.routing_key or request.id)
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
        if not request.version:
            self._shadow(model, request, arrays)
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

    def _shadow(self, model: ModelVersion, request: InferRequest, arrays: dict[str, Any]) -> None:
        """A rollout's mirror: queue a copy of this request for the mirror version."""
        served = self._served.get(model.name)
        router = served.router if served is not None else None
        if router is not None and router.mirrored(model.version):
            assert served is not None
            target = served.versions.get(router.mirror)
            if target is not None and target.state == "READY":
                waiting = model.batcher.queued if model.batcher is not None else 0
                self.mirror.offer(target, request.inputs, arrays, waiting)

    # -- metadata -------------------------------------------------------------------------

    def server_metadata(self) -> ServerMetadata:
        return {"name": "sluice", "version": __version__, "extensions": list(EXTENSIONS)}

    def model_metadata(self, name: str, version: str = "") -> ModelMetadata:
        model = self.get(name, version)
        return {
            "name": model.name,
            "versions": _ordered(self._served[model.name].versions),
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
            # Triton's ONNX Runtime backend names for the thread counts; then this worker's
            # share of the machine ("auto" settings are shown resolved).
            "parameters": {
                key: {"string_value": str(value)}
                for key, value in (
                    ("intra_op_thread_count", runtime.intra_op_threads),
                    ("inter_op_thread_count", runtime.inter_op_threads),
                    ("workers", self.placement.workers),
                    ("cores_per_worker", self.placement.cores),
                )
            },
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
        return [
            m.stats.view(m.name, m.version)
            for served in self._served.values()
            for m in served.versions.values()
        ]

    def index(self, ready_only: bool = False) -> list[ModelIndexEntry]:
        entries = []
        for name in self.names():
            served = self._served.get(name)
            if served is not None:
                for version in _ordered(served.versions):
                    model = served.versions[version]
                    entries.append(ModelIndexEntry(name, version, model.state))
            elif not ready_only:
                versions = self._known.get(name) or [""]
                reason = self._failed.get(name, "unloaded" if self._started else "")
                entries.append(ModelIndexEntry(name, versions[-1], "UNAVAILABLE", reason))
        return [e for e in entries if not ready_only or e.state == "READY"]
