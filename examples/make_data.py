"""The example pipeline's first step: a small classifier and the data it is checked on.

``main(inputs, outputs, params)`` is what a ``python`` step calls: it writes the ONNX model
(logistic regression over x0..x3, softmax over two classes), the training data (the drift
reference) and the "live" data to score, with its labels. ``shift`` moves the live features,
which the drift gate catches.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import onnx
import pyarrow as pa
import pyarrow.parquet as pq
from onnx import TensorProto, helper, numpy_helper

WEIGHTS = np.array([1.5, -2.0, 0.8, 0.0], dtype=np.float32)


def model() -> onnx.ModelProto:
    w = np.stack([-WEIGHTS / 2, WEIGHTS / 2], axis=1).astype(np.float32)  # logits for 0 and 1
    graph = helper.make_graph(
        [
            helper.make_node("MatMul", ["input", "w"], ["logits"]),
            helper.make_node("Softmax", ["logits"], ["output"], axis=1),
        ],
        "example_classifier",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["batch", 4])],
        [helper.make_tensor_value_info("output", TensorProto.FLOAT, ["batch", 2])],
        [numpy_helper.from_array(w, "w")],
    )
    built = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    built.ir_version = 8
    return built


def dataset(rows: int, shift: float, rng: np.random.Generator) -> pa.Table:
    x = rng.normal(size=(rows, 4)).astype(np.float32) + np.float32(shift)
    p = 1.0 / (1.0 + np.exp(-(x @ WEIGHTS)))
    label = (rng.random(rows) < p).astype(np.int64)
    columns = {f"x{i}": x[:, i] for i in range(4)}
    return pa.table({"id": np.arange(rows, dtype=np.int64), **columns, "label": label})


def main(inputs: dict[str, Path], outputs: dict[str, Path], params: dict[str, Any]) -> None:
    rng = np.random.default_rng(int(params.get("seed", 0)))
    rows = int(params["rows"])
    onnx.save(model(), str(outputs["model"]))
    pq.write_table(dataset(rows, 0.0, rng), outputs["train"])
    pq.write_table(dataset(rows, float(params.get("shift", 0.0)), rng), outputs["live"])
