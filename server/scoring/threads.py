"""ONNX Runtime threads and instances for a throughput job (not the serving defaults).

Serving keeps one intra-op thread per instance and no spinning so the event loop keeps a core.
A scoring job wants every core on the model: by default ``instances`` concurrent runs with
``cores // instances`` intra-op threads each, without spinning, because the reader and
writer threads need slices of the same cores and a spinning pool would starve them.
"""

from __future__ import annotations

import dataclasses

from server.scoring.options import ScoreOptions
from server.settings import RuntimeConfig


def scoring_runtime(base: RuntimeConfig, options: ScoreOptions, cores: int) -> RuntimeConfig:
    """The model's runtime settings with threads and instances chosen for throughput;
    ``--instances`` and ``--intra-op-threads`` override the choice."""
    instances = options.instances or DEFAULT_INSTANCES
    intra = options.intra_op_threads or max(1, cores // instances)
    return dataclasses.replace(
        base,
        instances=instances,
        intra_op_threads=intra,
        inter_op_threads=1,
        allow_spinning=False,
    )


DEFAULT_INSTANCES = 1
