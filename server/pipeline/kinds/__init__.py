"""The step kinds, by name. A new kind is one module with ``KIND = StepKind(...)`` added here."""

from server.pipeline.kinds import deploy, drift, evaluate, python, register, score, validate
from server.pipeline.kinds.base import StepContext, StepFailed, StepKind, check_step

KINDS: dict[str, StepKind] = {
    k.KIND.name: k.KIND for k in (validate, drift, score, evaluate, python, register, deploy)
}

__all__ = ["KINDS", "StepContext", "StepFailed", "StepKind", "check_step"]
