"""Pipelines: steps from a TOML file, run in graph order, reused when their key is unchanged."""

from server.pipeline.runner import RunOptions, prepare, run_pipeline
from server.pipeline.spec import Pipeline, PipelineError, Step, load_pipeline

__all__ = [
    "Pipeline",
    "PipelineError",
    "RunOptions",
    "Step",
    "load_pipeline",
    "prepare",
    "run_pipeline",
]
