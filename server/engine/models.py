"""A loaded model version: its session, batcher, statistics and request validation."""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import time
from collections.abc import Hashable
from concurrent.futures import ThreadPoolExecutor
from typing import Literal

from server.errors import InvalidInput, ModelNotReady
from server.metrics import ModelMetrics
from server.tensors import Tensor, TensorSpec

from .batcher import Arrays, Batcher
from .repository import ModelSource
from .session import OrtSession
from .stats import Stats

State = Literal["LOADING", "READY", "UNLOADING", "UNAVAILABLE"]


class ModelVersion:
    """One servable version. Built off the loop by ``load``; ``start`` binds it to the loop."""

    def __init__(self, source: ModelSource, metrics: ModelMetrics) -> None:
        self.source = source
        self.name = source.name
        self.version = source.version
        self.config = source.config
        self.metrics = metrics
        self.stats = Stats()
        self.state: State = "LOADING"
        started = time.perf_counter()
        model = _checked_bytes(source) if source.sha256 else source.path
        self.session = OrtSession(model, source.config.runtime, source.name)
        if source.config.runtime.warmup:
            self.session.warmup()
        self.load_seconds = time.perf_counter() - started
        self.batching = self.session.batchable and source.config.batching.enabled
        self.inputs: dict[str, TensorSpec] = self.session.input_specs
        self.outputs: dict[str, TensorSpec] = self.session.output_specs
        self._executor = ThreadPoolExecutor(
            source.config.runtime.instances, thread_name_prefix=f"sluice-{source.name}"
        )
        self.batcher: Batcher | None = None

    def start(self) -> None:
        """Create the batcher on the running loop and report ready."""
        batching = self.config.batching
        if not self.batching and batching.enabled:
            batching = dataclasses.replace(batching, enabled=False)
        self.batcher = Batcher(
            f"{self.name}:{self.version}",
            self.session.run,
            batching,
            self.config.runtime.instances,
            self._executor,
            self.metrics,
            self.stats,
        )
        self.state = "READY"
        self.metrics.loaded.set(1)
        self.metrics.load_seconds.set(self.load_seconds)

    async def stop(self, drain_timeout_s: float) -> bool:
        """Refuse new requests, let queued and running ones finish, release the threads."""
        self.state = "UNLOADING"
        drained = True
        if self.batcher is not None:
            self.batcher.close()
            drained = await self.batcher.drain(drain_timeout_s)
        self.metrics.loaded.set(0)
        await asyncio.get_running_loop().run_in_executor(None, self._executor.shutdown)
        self.state = "UNAVAILABLE"
        return drained

    def validate(
        self, inputs: list[Tensor], outputs: tuple[str, ...]
    ) -> tuple[Arrays, int, Hashable]:
        """Check names, datatypes and shapes; return the feed, its rows and its batch key."""
        feed: Arrays = {}
        for tensor in inputs:
            spec = self.inputs.get(tensor.name)
            if spec is None:
                raise InvalidInput(
                    f"model '{self.name}' has no input '{tensor.name}' "
                    f"(inputs: {', '.join(self.inputs)})"
                )
            if tensor.name in feed:
                raise InvalidInput(f"input '{tensor.name}' is given more than once")
            if tensor.datatype != spec.datatype:
                raise InvalidInput(
                    f"input '{tensor.name}' has datatype {tensor.datatype}, "
                    f"model '{self.name}' expects {spec.datatype}"
                )
            shape = tensor.data.shape
            if not spec.accepts(shape):
                raise InvalidInput(
                    f"input '{tensor.name}' has shape {list(shape)}, "
                    f"model '{self.name}' expects {list(spec.shape)} (-1: any size)"
                )
            feed[tensor.name] = tensor.data
        if len(feed) != len(self.inputs):
            missing = [n for n in self.inputs if n not in feed]
            raise InvalidInput(f"model '{self.name}' is missing input(s): {', '.join(missing)}")
        for name in outputs:
            if name not in self.outputs:
                raise InvalidInput(
                    f"model '{self.name}' has no output '{name}' "
                    f"(outputs: {', '.join(self.outputs)})"
                )
        rows = 1
        if self.batching:
            counts = {arr.shape[0] for arr in feed.values()}
            if len(counts) != 1:
                raise InvalidInput(f"inputs disagree on the batch dimension: {sorted(counts)} rows")
            rows = counts.pop()
            if rows == 0:
                raise InvalidInput("the batch dimension is 0: nothing to infer")
        skip = 1 if self.batching else 0
        key = tuple(sorted((name, arr.shape[skip:]) for name, arr in feed.items()))
        return feed, rows, key


def _checked_bytes(source: ModelSource) -> bytes:
    """The model file, checked against the sha256 the registry recorded (read once, so what
    is checked is what loads)."""
    try:
        data = source.path.read_bytes()
    except OSError as exc:
        raise ModelNotReady(
            f"model '{source.name}' version {source.version}: cannot read {source.path} "
            f"({exc.strerror})"
        ) from exc
    digest = hashlib.sha256(data).hexdigest()
    if digest != source.sha256:
        raise ModelNotReady(
            f"model '{source.name}' version {source.version}: {source.path} has sha256 "
            f"{digest}, the registry recorded {source.sha256}; refusing to load it"
        )
    return data
