"""``kind = "python"``: call ``function = "module:function"`` as
``function(inputs, outputs, params)`` with dicts of input paths, output paths to create, and
every other field of the step. The module is looked up under the pipeline's ``python_path``
(default: the pipeline's directory) and freshly imported on each run, so an edited helper is
what runs; its source and its first-party imports are part of the step's key.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
import threading
import traceback
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from server.pipeline.imports import first_party_sources
from server.pipeline.kinds.base import StepContext, StepFailed, StepKind
from server.pipeline.spec import Pipeline, PipelineError, Step

_IMPORTING = threading.Lock()


def _target(step: Step) -> tuple[str, str]:
    spec = step.params.get("function")
    module, _, function = spec.partition(":") if isinstance(spec, str) else ("", "", "")
    if not module or not function.isidentifier():
        raise PipelineError(f'{step.where("function")}: must be "module:function", got {spec!r}')
    return module, function


def _check(step: Step) -> None:
    _target(step)


def _code(step: Step, pipeline: Pipeline) -> dict[str, Path]:
    module, _ = _target(step)
    return first_party_sources(module, pipeline.python_path, step.where("function"))


def _load(step: Step, pipeline: Pipeline) -> Callable[..., Any]:
    module_name, function = _target(step)
    fresh = _code(step, pipeline)
    with _IMPORTING:
        for root in reversed(pipeline.python_path):
            if str(root) not in sys.path:
                sys.path.insert(0, str(root))
        for name, path in fresh.items():  # drop stale copies: an edited helper is what runs
            sys.modules.pop(name, None)
            # A .pyc is trusted on (mtime in seconds, size): an edit within the same second
            # that keeps the size would run the old code, so first-party bytecode is dropped.
            Path(importlib.util.cache_from_source(str(path))).unlink(missing_ok=True)
        importlib.invalidate_caches()
        try:
            module = importlib.import_module(module_name)
        except Exception as exc:
            raise StepFailed(
                f"step '{step.name}': importing {module_name} raised {type(exc).__name__}: {exc}"
            ) from exc
    target = getattr(module, function, None)
    if not callable(target):
        raise PipelineError(f"{step.where('function')}: {module_name} has no function {function}")
    return target  # type: ignore[no-any-return]


def run(ctx: StepContext) -> Mapping[str, Any]:
    target = _load(ctx.step, ctx.pipeline)
    params = {k: v for k, v in ctx.step.params.items() if k != "function"}
    try:
        result = target(dict(ctx.inputs), dict(ctx.outputs), params)
    except Exception as exc:
        log = ctx.scratch / "traceback.txt"
        log.write_text(traceback.format_exc())
        raise StepFailed(
            f"step '{ctx.step.name}': {ctx.step.params['function']} raised "
            f"{type(exc).__name__}: {exc} (traceback in {log})"
        ) from exc
    return result if isinstance(result, dict) else {}


KIND = StepKind(
    name="python",
    run=run,
    params=None,
    required_params=frozenset({"function"}),
    inputs=None,
    code=_code,
    check=_check,
)
