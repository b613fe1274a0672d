"""A step's cache key: the digest of its parts, which are kept so ``explain`` can diff them.

Parts: ``kind``; ``params`` (after ``${params.x}`` substitution); ``outputs`` (where they go);
``inputs`` (each input's path and content digest, with per-file digests for a directory);
``code`` (for a ``python`` step, the digest of its module and of every first-party module it
imports); ``versions`` (Sluice, ONNX Runtime, pyarrow, Python); ``deterministic``. Canonical
JSON (sorted keys, no spaces) of the parts is hashed, so equal parts give equal keys anywhere.
"""

from __future__ import annotations

import json
import platform
from functools import cache
from importlib import metadata
from pathlib import Path
from typing import Any

from server import __version__
from server.pipeline.hashing import Hasher, hash_text
from server.pipeline.kinds import StepKind
from server.pipeline.spec import Pipeline, Step


def canonical(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


@cache
def tool_versions() -> dict[str, str]:
    versions = {"sluice": __version__, "python": platform.python_version()}
    for dist in ("onnxruntime", "pyarrow"):
        try:
            versions[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            versions[dist] = "absent"
    return versions


def key_parts(step: Step, kind: StepKind, pipeline: Pipeline, hasher: Hasher) -> dict[str, Any]:
    """Everything the step's result depends on; inputs must exist (upstream steps ran)."""
    inputs: dict[str, Any] = {}
    for name, ref in sorted(step.inputs.items()):
        entry: dict[str, Any] = {"path": _relative(ref.path, pipeline.root)}
        if ref.path.is_dir():
            files = hasher.tree(ref.path)
            entry["files"] = files
            entry["digest"] = hasher.combine(files)
        else:
            entry["digest"] = hasher.digest(ref.path)
        inputs[name] = entry
    code: dict[str, str] = {}
    if kind.code is not None:
        for module, path in kind.code(step, pipeline).items():
            code[module] = hasher.digest(path)
    return {
        "kind": step.kind,
        "params": dict(step.params),
        "outputs": {n: _relative(p, pipeline.root) for n, p in sorted(step.outputs.items())},
        "inputs": inputs,
        "code": code,
        "versions": tool_versions(),
        "deterministic": step.deterministic,
    }


def key_of(parts: dict[str, Any]) -> str:
    return hash_text(canonical(parts))


def _relative(path: Path, root: Path) -> str:
    return path.relative_to(root).as_posix() if path.is_relative_to(root) else str(path)
