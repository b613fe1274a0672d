"""One ONNX Runtime session: providers with fallback, session options, metadata, warm-up.

``run`` is thread-safe (ONNX Runtime allows concurrent ``run`` on one session and releases
the GIL), so ``instances = N`` share one session and its weights and run N batches at once.
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
from onnxruntime.capi import onnxruntime_pybind11_state as ort_state

from server.errors import ConfigError, InvalidInput, ModelFailed
from server.settings import RuntimeConfig
from server.tensors import ONNX_TYPES, TensorSpec, dtype_of

log = logging.getLogger(__name__)

_GRAPH_LEVELS = {
    "disable": ort.GraphOptimizationLevel.ORT_DISABLE_ALL,
    "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
    "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
    "all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
}
_BFLOAT16 = 16  # onnx.TensorProto.BFLOAT16, without importing onnx at run time


@contextlib.contextmanager
def map_ort_errors(model: str) -> Iterator[None]:
    """Translate ONNX Runtime's exceptions into Sluice errors, keeping the cause."""
    try:
        yield
    except (ort_state.InvalidArgument, ort_state.InvalidGraph) as exc:
        raise InvalidInput(f"model '{model}': {_first_line(exc)}") from exc
    except (ort_state.Fail, ort_state.RuntimeException, ort_state.EPFail) as exc:
        raise ModelFailed(f"model '{model}' failed: {_first_line(exc)}") from exc
    except (ort_state.NoSuchFile, ort_state.InvalidProtobuf, ort_state.NoModel) as exc:
        raise ConfigError(f"model '{model}' cannot be loaded: {_first_line(exc)}") from exc


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def select_providers(
    wanted: Sequence[str], available: Sequence[str]
) -> tuple[list[str], list[str]]:
    """Split the wanted providers (priority order) into usable and missing ones.

    CPU is always usable and is appended when every wanted provider is missing.
    """
    usable = [p for p in wanted if p in available]
    missing = [p for p in wanted if p not in available]
    if not usable:
        usable = ["CPUExecutionProvider"]
    return usable, missing


def session_options(runtime: RuntimeConfig) -> ort.SessionOptions:
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = runtime.intra_op_threads
    opts.inter_op_num_threads = runtime.inter_op_threads
    opts.execution_mode = (
        ort.ExecutionMode.ORT_PARALLEL
        if runtime.execution_mode == "parallel"
        else ort.ExecutionMode.ORT_SEQUENTIAL
    )
    opts.graph_optimization_level = _GRAPH_LEVELS[runtime.graph_optimization]
    opts.enable_cpu_mem_arena = runtime.memory_arena
    opts.enable_mem_pattern = runtime.memory_pattern
    # Run-time failures reach the client as errors and the batcher logs them once; ORT's own
    # logging would print each one again.
    opts.log_severity_level = 4
    spinning = "1" if runtime.allow_spinning else "0"
    opts.add_session_config_entry("session.intra_op.allow_spinning", spinning)
    opts.add_session_config_entry("session.inter_op.allow_spinning", spinning)
    return opts


def _spec(arg: Any) -> TensorSpec:
    datatype = ONNX_TYPES.get(arg.type)
    if datatype is None:
        raise ConfigError(f"tensor '{arg.name}' has unsupported type {arg.type}")
    shape = tuple(d if isinstance(d, int) and d >= 0 else -1 for d in arg.shape)
    return TensorSpec(arg.name, datatype, shape)


class OrtSession:
    """A loaded model: its metadata and a thread-safe ``run``."""

    def __init__(self, source: Path | bytes, runtime: RuntimeConfig, name: str = "model") -> None:
        self.name = name
        usable, missing = select_providers(runtime.providers, ort.get_available_providers())
        for provider in missing:
            log.warning(
                "model '%s': execution provider %s is not available here; falling back to %s",
                name,
                provider,
                usable[0],
            )
        options = [dict(runtime.provider_options.get(p, {})) for p in usable]
        model = str(source) if isinstance(source, Path) else source
        with map_ort_errors(name):
            self._session = ort.InferenceSession(
                model, session_options(runtime), providers=usable, provider_options=options
            )
        self.providers: tuple[str, ...] = tuple(self._session.get_providers())
        self.inputs = tuple(_spec(a) for a in self._session.get_inputs())
        self.outputs = tuple(_spec(a) for a in self._session.get_outputs())
        self.input_specs = {s.name: s for s in self.inputs}
        self.output_specs = {s.name: s for s in self.outputs}
        self._output_names = [s.name for s in self.outputs]
        self._bf16_inputs = frozenset(s.name for s in self.inputs if s.datatype == "BF16")
        self._bf16_outputs = any(s.datatype == "BF16" for s in self.outputs)
        self._string_inputs = frozenset(s.name for s in self.inputs if s.datatype == "BYTES")
        meta = self._session.get_modelmeta()
        self.metadata: dict[str, str] = dict(meta.custom_metadata_map)

    @property
    def batchable(self) -> bool:
        """True when every input and output has a dynamic first dimension."""
        specs = self.inputs + self.outputs
        return all(len(s.shape) >= 1 and s.shape[0] == -1 for s in specs)

    def run(
        self, inputs: Mapping[str, np.ndarray], outputs: Sequence[str] | None = None
    ) -> dict[str, np.ndarray]:
        """Run the graph. Arrays must already have the graph's dtypes (BF16 as uint16)."""
        names = list(outputs) if outputs else self._output_names
        feed = {
            name: self._string_feed(arr) if name in self._string_inputs else arr
            for name, arr in inputs.items()
        }
        with map_ort_errors(self.name):
            if self._bf16_inputs or self._bf16_outputs:
                return self._run_ort_values(feed, names)
            results = self._session.run(names, feed)
        return dict(zip(names, results, strict=True))

    def _string_feed(self, arr: np.ndarray) -> np.ndarray:
        if arr.dtype.kind == "U":
            return arr
        try:
            return (
                np.vectorize(
                    lambda v: v.decode("utf-8") if isinstance(v, bytes) else str(v), otypes=[object]
                )(arr)
                if arr.size
                else arr.astype(object)
            )
        except UnicodeDecodeError as exc:
            raise InvalidInput(f"model '{self.name}': string input is not UTF-8 ({exc})") from exc

    def _run_ort_values(
        self, feed: Mapping[str, np.ndarray], names: list[str]
    ) -> dict[str, np.ndarray]:
        values = {
            name: ort.OrtValue.ortvalue_from_numpy_with_onnx_type(
                np.ascontiguousarray(arr), _BFLOAT16
            )
            if name in self._bf16_inputs
            else ort.OrtValue.ortvalue_from_numpy(arr)
            for name, arr in feed.items()
        }
        results = self._session.run_with_ort_values(names, values)
        return {name: _ortvalue_to_numpy(value) for name, value in zip(names, results, strict=True)}

    def warmup(self, rows: int = 1) -> None:
        """Run once on zeros so the first real request pays no allocation or JIT cost."""
        feed = {}
        for spec in self.inputs:
            shape = tuple(rows if d < 0 else d for d in spec.shape)
            dtype = dtype_of(spec.datatype)
            feed[spec.name] = (
                np.full(shape, "", dtype=object)
                if spec.datatype == "BYTES"
                else np.zeros(shape, dtype)
            )
        self.run(feed)


def _ortvalue_to_numpy(value: ort.OrtValue) -> np.ndarray:
    if value.data_type() != "tensor(bfloat16)":
        return np.asarray(value.numpy())
    # numpy has no bfloat16: copy the raw 16-bit patterns out as uint16 (CPU memory).
    shape = tuple(value.shape())
    count = int(np.prod(shape)) if shape else 1
    buffer = (ctypes.c_uint16 * count).from_address(value.data_ptr())
    return np.ctypeslib.as_array(buffer).reshape(shape).copy()
