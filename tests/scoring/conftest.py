"""Tiny models and Parquet inputs for the scoring tests."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import onnxruntime as ort
import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.parquet as pq
import pytest
from onnx import TensorProto, helper

from benchmarks.models import mlp
from server.scoring import ScoreOptions, score
from server.scoring.progress import Summary

FEATURES = 8


@pytest.fixture
def model_path(tmp_path: Path) -> Path:
    """MLP 8 -> 16 -> 3: input ``input`` [-1, 8], output ``output`` [-1, 3]."""
    path = tmp_path / "mlp.onnx"
    onnx.save(mlp((FEATURES, 16, 3), seed=1), str(path))
    return path


@pytest.fixture
def two_input_model(tmp_path: Path) -> Path:
    """``out = a @ W + b * 2`` with ``a`` [-1, 2, 3] FP32 and ``b`` [-1] FP64 → ``out`` [-1]."""
    w = helper.make_tensor("w", TensorProto.FLOAT, [6, 1], [1.0, 2.0, 3.0, 4.0, 5.0, 6.0])
    shape = helper.make_tensor("shape", TensorProto.INT64, [2], [-1, 6])
    flat = helper.make_tensor("flat", TensorProto.INT64, [1], [-1])
    nodes = [
        helper.make_node("Reshape", ["a", "shape"], ["a2"]),
        helper.make_node("MatMul", ["a2", "w"], ["m"]),
        helper.make_node("Reshape", ["m", "flat"], ["m1"]),
        helper.make_node("Cast", ["b"], ["bf"], to=TensorProto.FLOAT),
        helper.make_node("Add", ["m1", "bf"], ["s"]),
        helper.make_node("Add", ["s", "bf"], ["out"]),
    ]
    graph = helper.make_graph(
        nodes,
        "two",
        [
            helper.make_tensor_value_info("a", TensorProto.FLOAT, ["n", 2, 3]),
            helper.make_tensor_value_info("b", TensorProto.DOUBLE, ["n"]),
        ],
        [helper.make_tensor_value_info("out", TensorProto.FLOAT, ["n"])],
        [w, shape, flat],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    path = tmp_path / "two.onnx"
    onnx.save(model, str(path))
    return path


def feature_table(rows: int, start: int = 0, seed: int = 0) -> pa.Table:
    rng = np.random.default_rng(seed)
    columns: dict[str, Any] = {"id": np.arange(start, start + rows, dtype=np.int64)}
    for j in range(FEATURES):
        columns[f"f{j}"] = rng.standard_normal(rows).astype(np.float32)
    return pa.table(columns)


@pytest.fixture
def inputs(tmp_path: Path) -> Path:
    """Three Parquet files of 700 rows (ids 0..2099) in small row groups."""
    folder = tmp_path / "in"
    folder.mkdir()
    for i in range(3):
        table = feature_table(700, start=700 * i, seed=i)
        pq.write_table(table, folder / f"part-{i}.parquet", row_group_size=256)
    return folder


def write(path: Path, table: pa.Table) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(table, path)
    return path


def reference(model: Path, feeds: dict[str, np.ndarray]) -> np.ndarray:
    """ONNX Runtime's own answer for the first output."""
    session = ort.InferenceSession(str(model), providers=["CPUExecutionProvider"])
    return np.asarray(session.run(None, feeds)[0])


def matrix(table: pa.Table) -> np.ndarray:
    return np.column_stack([table[f"f{j}"].to_numpy() for j in range(FEATURES)])


def read_output(directory: Path) -> pa.Table:
    return ds.dataset(directory).to_table().sort_by("id")


@pytest.fixture
def run(tmp_path: Path) -> Callable[..., Summary]:
    def run(model: Path, source: Path | list[Path], **kwargs: Any) -> Summary:
        sources = tuple(source) if isinstance(source, list) else (source,)
        kwargs.setdefault("output", tmp_path / "out")
        kwargs.setdefault("progress", False)
        return score(ScoreOptions(model=str(model), inputs=sources, **kwargs))

    return run
