"""Tiny ONNX models for tests, built with onnx's helper."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from benchmarks.models import mlp, save

ONNX_TYPES = {
    "BOOL": TensorProto.BOOL,
    "UINT8": TensorProto.UINT8,
    "UINT16": TensorProto.UINT16,
    "UINT32": TensorProto.UINT32,
    "UINT64": TensorProto.UINT64,
    "INT8": TensorProto.INT8,
    "INT16": TensorProto.INT16,
    "INT32": TensorProto.INT32,
    "INT64": TensorProto.INT64,
    "FP16": TensorProto.FLOAT16,
    "BF16": TensorProto.BFLOAT16,
    "FP32": TensorProto.FLOAT,
    "FP64": TensorProto.DOUBLE,
    "BYTES": TensorProto.STRING,
}


def _model(graph: onnx.GraphProto) -> onnx.ModelProto:
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    return model


def identity(datatype: str, width: int = 3) -> onnx.ModelProto:
    """INPUT0 [-1, width] → OUTPUT0 (a copy), of one datatype."""
    t = ONNX_TYPES[datatype]
    graph = helper.make_graph(
        [helper.make_node("Identity", ["INPUT0"], ["OUTPUT0"])],
        f"identity_{datatype.lower()}",
        [helper.make_tensor_value_info("INPUT0", t, ["batch", width])],
        [helper.make_tensor_value_info("OUTPUT0", t, ["batch", width])],
    )
    return _model(graph)


def add_sub() -> onnx.ModelProto:
    """Triton's classic: INPUT0, INPUT1 [-1, 4] FP32 → OUTPUT0 = sum, OUTPUT1 = difference."""
    inputs = [
        helper.make_tensor_value_info(n, TensorProto.FLOAT, ["batch", 4])
        for n in ("INPUT0", "INPUT1")
    ]
    outputs = [
        helper.make_tensor_value_info(n, TensorProto.FLOAT, ["batch", 4])
        for n in ("OUTPUT0", "OUTPUT1")
    ]
    nodes = [
        helper.make_node("Add", ["INPUT0", "INPUT1"], ["OUTPUT0"]),
        helper.make_node("Sub", ["INPUT0", "INPUT1"], ["OUTPUT1"]),
    ]
    return _model(helper.make_graph(nodes, "add_sub", inputs, outputs))


def fixed_batch() -> onnx.ModelProto:
    """A first dimension fixed at 2: served without batching."""
    graph = helper.make_graph(
        [helper.make_node("Neg", ["x"], ["y"])],
        "fixed",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 3])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 3])],
    )
    return _model(graph)


def failing() -> onnx.ModelProto:
    """Reshapes [-1, 4] to [-1, 3]: fails at run time unless the rows are a multiple of 3."""
    shape = numpy_helper.from_array(np.array([-1, 3], dtype=np.int64), "shape")
    graph = helper.make_graph(
        [helper.make_node("Reshape", ["x", "shape"], ["y"])],
        "failing",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 3])],
        [shape],
    )
    return _model(graph)


def slow(layers: int = 24, width: int = 512) -> onnx.ModelProto:
    """A deep MatMul chain, ~1 ms per row on one thread: a 64-row request keeps it busy."""
    rng = np.random.default_rng(1)
    nodes, inits = [], []
    current = "x"
    for i in range(layers):
        w = (rng.standard_normal((width, width)) / np.sqrt(width)).astype(np.float32)
        inits.append(numpy_helper.from_array(w, f"w{i}"))
        out = "y" if i == layers - 1 else f"h{i}"
        nodes.append(helper.make_node("MatMul", [current, f"w{i}"], [out]))
        current = out
    graph = helper.make_graph(
        nodes,
        "slow",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", width])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", width])],
        inits,
    )
    return _model(graph)


def small_mlp() -> onnx.ModelProto:
    return mlp((16, 32, 4), seed=3)


def write_repository(
    root: Path, models: dict[str, onnx.ModelProto], configs: dict[str, str]
) -> Path:
    for name, model in models.items():
        save(model, root / name / "1" / "model.onnx")
    for name, text in configs.items():
        (root / name / "config.toml").write_text(text)
    return root
