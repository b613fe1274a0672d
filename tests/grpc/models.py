"""Tiny ONNX models for the gRPC tests, built with onnx.helper: one identity model per
datatype, and an FP32 add/sub model with two outputs."""

from __future__ import annotations

from pathlib import Path

import onnx
from onnx import TensorProto, helper

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
MAX_MESSAGE_BYTES = 1 << 20
# A queue delay long enough that a request waits in the queue while a test cancels it.
SLOW_DELAY_US = 600_000


def _model(
    nodes: list[onnx.NodeProto], inputs: list[str], outputs: list[str], elem: int
) -> onnx.ModelProto:
    graph = helper.make_graph(
        nodes,
        "g",
        [helper.make_tensor_value_info(n, elem, ["batch", 3]) for n in inputs],
        [helper.make_tensor_value_info(n, elem, ["batch", 3]) for n in outputs],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model


def identity(elem: int) -> onnx.ModelProto:
    """INPUT0 [batch, 3] → OUTPUT0, unchanged."""
    node = helper.make_node("Identity", ["INPUT0"], ["OUTPUT0"])
    return _model([node], ["INPUT0"], ["OUTPUT0"], elem)


def add_sub() -> onnx.ModelProto:
    """FP32 INPUT0, INPUT1 [batch, 3] → OUTPUT0 = sum, OUTPUT1 = difference."""
    nodes = [
        helper.make_node("Add", ["INPUT0", "INPUT1"], ["OUTPUT0"]),
        helper.make_node("Sub", ["INPUT0", "INPUT1"], ["OUTPUT1"]),
    ]
    return _model(nodes, ["INPUT0", "INPUT1"], ["OUTPUT0", "OUTPUT1"], TensorProto.FLOAT)


def write(repo: Path, name: str, model: onnx.ModelProto, config: str = "") -> None:
    path = repo / name / "1" / "model.onnx"
    path.parent.mkdir(parents=True)
    path.write_bytes(model.SerializeToString())
    if config:
        (repo / name / "config.toml").write_text(config)
