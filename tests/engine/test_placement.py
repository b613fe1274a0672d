"""The engine resolves "auto" runtime settings of whatever its catalog plans."""

from __future__ import annotations

from pathlib import Path

from server.engine.placement import Placement
from server.engine.repository import ModelPlan, ModelSource
from server.settings import ModelConfig, RuntimeConfig


def plan(runtime: RuntimeConfig) -> ModelPlan:
    source = ModelSource("m", "1", Path("m.onnx"), ModelConfig(runtime=runtime))
    return ModelPlan("m", {"1": source}, "1")


def test_auto_settings_are_resolved_for_the_workers_cores() -> None:
    placed = Placement(cores=4, workers=2).plan(plan(RuntimeConfig()))
    runtime = placed.versions["1"].config.runtime
    assert (runtime.instances, runtime.intra_op_threads, runtime.inter_op_threads) == (4, 1, 1)
    explicit = Placement(cores=4).plan(plan(RuntimeConfig(intra_op_threads=2)))
    assert explicit.versions["1"].config.runtime.instances == 2


def test_a_plan_read_again_compares_equal_so_nothing_reloads() -> None:
    placement = Placement(cores=2)
    first, again = placement.plan(plan(RuntimeConfig())), placement.plan(plan(RuntimeConfig()))
    assert first.versions["1"] == again.versions["1"]
    assert placement.plan(first) == first  # resolving twice changes nothing
