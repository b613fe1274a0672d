"""Reference models built with onnx's helper (never downloaded, never committed).

python -m benchmarks.models mlp --output demo/models/mlp/1/model.onnx
python -m benchmarks.models mlp --sizes 64,512,512,4 --output /tmp/score.onnx
"""

from __future__ import annotations

import argparse
import itertools
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

# The serving benchmarks' reference model: MLP 256 -> 1024 -> 1024 -> 512 -> 8, FP32.
REFERENCE_SIZES = (256, 1024, 1024, 512, 8)


def mlp(sizes: Sequence[int] = REFERENCE_SIZES, seed: int = 0) -> onnx.ModelProto:
    """A ReLU MLP with a dynamic batch dimension: input ``input`` [-1, sizes[0]] FP32,
    output ``output`` [-1, sizes[-1]] FP32."""
    rng = np.random.default_rng(seed)
    nodes, inits = [], []
    current = "input"
    for i, (fan_in, fan_out) in enumerate(itertools.pairwise(sizes)):
        w = (rng.standard_normal((fan_in, fan_out)) / np.sqrt(fan_in)).astype(np.float32)
        b = (rng.standard_normal(fan_out) * 0.01).astype(np.float32)
        inits += [numpy_helper.from_array(w, f"w{i}"), numpy_helper.from_array(b, f"b{i}")]
        last = i == len(sizes) - 2
        gemm_out = "output" if last else f"h{i}"
        nodes.append(helper.make_node("Gemm", [current, f"w{i}", f"b{i}"], [gemm_out]))
        if not last:
            nodes.append(helper.make_node("Relu", [gemm_out], [f"r{i}"]))
            current = f"r{i}"
    graph = helper.make_graph(
        nodes,
        "mlp",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["batch", sizes[0]])],
        [helper.make_tensor_value_info("output", TensorProto.FLOAT, ["batch", sizes[-1]])],
        inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model


def lookup_mlp(sizes: Sequence[int] = REFERENCE_SIZES, seed: int = 0) -> onnx.ModelProto:
    """``mlp(sizes, seed)`` plus a lookup indexed by the first feature (truncated to an
    integer), adding zeros: the same answers, except that a row whose first feature is
    outside -8..7 fails in ONNX Runtime (index out of bounds). A version that fails some
    requests, for rollout tests and benchmarks."""
    model = mlp(sizes, seed)
    graph = model.graph
    for node in graph.node:
        node.output[:] = ["mlp" if o == "output" else o for o in node.output]
    consts = {
        "starts": np.array([0], np.int64),
        "ends": np.array([1], np.int64),
        "axes": np.array([1], np.int64),
        "table": np.zeros((8, sizes[-1]), np.float32),
        "shape": np.array([-1, sizes[-1]], np.int64),
    }
    graph.initializer.extend(numpy_helper.from_array(v, k) for k, v in consts.items())
    graph.node.extend(
        [
            helper.make_node("Slice", ["input", "starts", "ends", "axes"], ["first"]),
            helper.make_node("Cast", ["first"], ["index"], to=TensorProto.INT64),
            helper.make_node("Gather", ["table", "index"], ["looked"], axis=0),
            helper.make_node("Reshape", ["looked", "shape"], ["extra"]),
            helper.make_node("Add", ["mlp", "extra"], ["output"]),
        ]
    )
    onnx.checker.check_model(model)
    return model


def save(model: onnx.ModelProto, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_bytes(model.SerializeToString())
    tmp.replace(path)
    return path


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("kind", choices=["mlp"])
    parser.add_argument("--sizes", default=",".join(map(str, REFERENCE_SIZES)))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--output", type=Path, required=True)
    args = parser.parse_args(argv)
    sizes = tuple(int(s) for s in args.sizes.split(","))
    print(save(mlp(sizes, args.seed), args.output))


if __name__ == "__main__":
    main()
