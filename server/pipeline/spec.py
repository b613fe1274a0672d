"""``pipeline.toml`` → a checked ``Pipeline``: steps, their inputs, outputs and parameters.

    [pipeline]
    python_path = [".", "src"]        # where python steps' modules are (default: this folder)

    [params]
    rows = 1000                       # run parameters; ``--param rows=5000`` overrides

    [steps.make]
    kind = "python"
    function = "make_data:main"
    rows = "${params.rows}"           # a whole-string reference keeps the parameter's type
    outputs = { data = "work/data.parquet" }

    [steps.score]
    kind = "score"
    inputs = { model = "models/m.onnx", data = "make.data" }   # a path, or STEP.OUTPUT
    outputs = { scored = "work/scored" }
    after = ["check"]                 # run only once step "check" (a gate) succeeded

Every problem is a ``PipelineError`` naming the step and the field; nothing runs until the
whole file is valid (see ``server.pipeline.graph`` for cycles and ``kinds`` for parameters).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from server.errors import ConfigError
from server.settings import read_toml

_REFERENCE = re.compile(r"\$\{([^}]*)\}")
_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_-]*$")
RESERVED = frozenset({"kind", "inputs", "outputs", "deterministic", "after"})


class PipelineError(ConfigError):
    """The pipeline file or a ``--param`` is invalid; the message names step and field."""


@dataclass(frozen=True, slots=True)
class InputRef:
    """One declared input: a file or directory, or another step's output (``step.output``)."""

    text: str
    path: Path
    step: str | None = None
    output: str | None = None


@dataclass(frozen=True, slots=True)
class Step:
    name: str
    kind: str
    params: Mapping[str, Any]
    inputs: Mapping[str, InputRef]
    outputs: Mapping[str, Path]
    deterministic: bool = True
    after: tuple[str, ...] = ()  # steps that must succeed first (gates), outputs not read

    def where(self, field_name: str) -> str:
        return f"step '{self.name}', field '{field_name}'"


@dataclass(frozen=True, slots=True)
class Pipeline:
    path: Path
    root: Path
    steps: Mapping[str, Step]
    params: Mapping[str, Any]
    python_path: tuple[Path, ...] = field(default=())


def load_pipeline(path: Path, overrides: Mapping[str, str] | None = None) -> Pipeline:
    """Read, substitute ``${params.x}`` and check the file (not yet the graph or the kinds)."""
    doc = read_toml(path)
    unknown = sorted(set(doc) - {"pipeline", "params", "steps"})
    if unknown:
        raise PipelineError(f"{path}: unknown table(s) {', '.join(unknown)}")
    params = dict(_table(doc, "params", str(path)))
    for name, text in (overrides or {}).items():
        if name not in params:
            raise PipelineError(f"--param {name}: the pipeline declares no parameter '{name}'")
        params[name] = parse_value(text)
    root = path.resolve().parent
    settings = _table(doc, "pipeline", str(path))
    for name in sorted(set(settings) - {"python_path"}):
        raise PipelineError(f"{path}: [pipeline] has no field '{name}' (it takes: python_path)")
    folders = settings.get("python_path", ["."])
    if not isinstance(folders, list) or not all(isinstance(p, str) for p in folders):
        raise PipelineError(f"{path}: [pipeline] python_path must be a list of folders")
    python_path = tuple((root / p).resolve() for p in folders)
    raw_steps = _table(doc, "steps", str(path))
    if not raw_steps:
        raise PipelineError(f"{path}: no [steps.NAME] tables")
    used: set[str] = set()
    substituted = {
        name: _substitute(_table(raw_steps, name, f"step '{name}'"), params, used, name)
        for name in raw_steps
    }
    unused = sorted(set(params) - used)
    if unused:
        raise PipelineError(f"parameter(s) not used by any step: {', '.join(unused)}")
    outputs = {name: _outputs(name, body, root) for name, body in substituted.items()}
    _check_unique_outputs(outputs)
    steps = {
        name: _step(name, body, root, outputs[name], outputs) for name, body in substituted.items()
    }
    return Pipeline(path.resolve(), root, steps, params, python_path)


def parse_value(text: str) -> Any:
    """A ``--param`` value: an integer, a float, true/false, else the string itself."""
    lowered = text.strip().lower()
    if lowered in ("true", "false"):
        return lowered == "true"
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return text


def _table(doc: Mapping[str, Any], key: str, where: str) -> dict[str, Any]:
    value = doc.get(key, {})
    if not isinstance(value, dict):
        raise PipelineError(f"{where}: '{key}' must be a table")
    return value


def _substitute(value: Any, params: Mapping[str, Any], used: set[str], step: str) -> Any:
    if isinstance(value, dict):
        return {k: _substitute(v, params, used, step) for k, v in value.items()}
    if isinstance(value, list):
        return [_substitute(v, params, used, step) for v in value]
    if not isinstance(value, str) or "${" not in value:
        return value

    def lookup(match: re.Match[str]) -> Any:
        ref = match.group(1).strip()
        prefix, _, name = ref.partition(".")
        if prefix != "params" or not name:
            raise PipelineError(f"step '{step}': '${{{ref}}}' is not a ${{params.NAME}} reference")
        if name not in params:
            raise PipelineError(f"step '{step}': '${{params.{name}}}' names no parameter")
        used.add(name)
        return params[name]

    whole = _REFERENCE.fullmatch(value)
    if whole is not None:
        return lookup(whole)
    return _REFERENCE.sub(lambda m: str(lookup(m)), value)


def _outputs(name: str, body: Mapping[str, Any], root: Path) -> dict[str, Path]:
    if not _NAME.match(name):
        raise PipelineError(f"step '{name}': a step name is letters, digits, '_' and '-'")
    outputs = body.get("outputs", {})
    if not isinstance(outputs, dict):
        raise PipelineError(f"step '{name}', field 'outputs': must be a table NAME = \"path\"")
    paths: dict[str, Path] = {}
    for key, value in outputs.items():
        if not isinstance(value, str) or not value:
            raise PipelineError(f"step '{name}', field 'outputs.{key}': must be a path string")
        path = (root / value).resolve()
        if path == root or root.is_relative_to(path):
            raise PipelineError(f"step '{name}', field 'outputs.{key}': {value} holds the pipeline")
        paths[key] = path
    return paths


def _check_unique_outputs(outputs: Mapping[str, Mapping[str, Path]]) -> None:
    owner: dict[Path, str] = {}
    for step, declared in outputs.items():
        for key, path in declared.items():
            for other_path, other in owner.items():
                if (
                    path == other_path
                    or path.is_relative_to(other_path)
                    or (other_path.is_relative_to(path))
                ):
                    raise PipelineError(
                        f"step '{step}', field 'outputs.{key}': {path} is also declared "
                        f"by {other} (an output belongs to one step)"
                    )
            owner[path] = f"step '{step}'"


def _step(
    name: str,
    body: Mapping[str, Any],
    root: Path,
    outputs: dict[str, Path],
    all_outputs: Mapping[str, Mapping[str, Path]],
) -> Step:
    kind = body.get("kind")
    if not isinstance(kind, str):
        raise PipelineError(f"step '{name}', field 'kind': required, a string")
    deterministic = body.get("deterministic", True)
    if not isinstance(deterministic, bool):
        raise PipelineError(f"step '{name}', field 'deterministic': must be true or false")
    raw_inputs = body.get("inputs", {})
    if not isinstance(raw_inputs, dict):
        raise PipelineError(f"step '{name}', field 'inputs': must be a table NAME = \"path\"")
    inputs = {key: _input(name, key, value, root, all_outputs) for key, value in raw_inputs.items()}
    after = body.get("after", [])
    if not isinstance(after, list) or not all(isinstance(a, str) for a in after):
        raise PipelineError(f"step '{name}', field 'after': must be a list of step names")
    for other in after:
        if other not in all_outputs or other == name:
            raise PipelineError(f"step '{name}', field 'after': no step '{other}' to wait for")
    params = {k: v for k, v in body.items() if k not in RESERVED}
    return Step(name, kind, params, inputs, outputs, deterministic, tuple(after))


def _input(
    step: str, key: str, value: Any, root: Path, outputs: Mapping[str, Mapping[str, Path]]
) -> InputRef:
    where = f"step '{step}', field 'inputs.{key}'"
    if not isinstance(value, str) or not value:
        raise PipelineError(f"{where}: must be a path or STEP.OUTPUT string")
    head, dot, tail = value.partition(".")
    if dot and head in outputs and "/" not in value:
        if head == step:
            raise PipelineError(f"{where}: a step cannot read its own output")
        if tail not in outputs[head]:
            known = ", ".join(sorted(outputs[head])) or "none"
            raise PipelineError(
                f"{where}: step '{head}' has no output '{tail}' (its outputs: {known})"
            )
        return InputRef(value, outputs[head][tail], head, tail)
    path = (root / value).resolve()
    for producer, declared in outputs.items():
        for output, produced in declared.items():
            if path == produced:
                return InputRef(value, path, producer, output)
    if not path.exists():
        hint = ""
        if dot and "/" not in value and _NAME.match(head):
            hint = f" and there is no step '{head}'"
        raise PipelineError(f"{where}: {value} does not exist{hint}")
    return InputRef(value, path)
