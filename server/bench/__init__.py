"""``sluice bench``: a load generator for any Open Inference Protocol server (HTTP, gRPC).

Speaks only the public protocol: nothing of the server is imported beyond the leaf modules
``server.errors`` and ``server.tensors`` and the protocol's generated messages.
"""

from server.bench.bench import Bench, run_step
from server.bench.config import BenchConfig, Step
from server.bench.results import StepResult

__all__ = ["Bench", "BenchConfig", "Step", "StepResult", "run_step"]
