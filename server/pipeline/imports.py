"""The first-party source a ``python`` step's function depends on, found without importing it.

Starting from the step's module, every ``import`` and ``from ... import`` statement (at any
depth: inside functions and ``try`` blocks too) is resolved against the pipeline's Python roots;
a module found there is first-party and is followed in turn. Modules found nowhere under the
roots (the standard library, installed packages) end the walk: their versions are not part of
a step's code. A package's ``__init__.py`` counts for every module imported through it.
"""

from __future__ import annotations

import ast
import threading
from collections.abc import Sequence
from pathlib import Path

from server.pipeline.spec import PipelineError

# CPython 3.11's AST constructor keeps its recursion depth in shared state: two threads parsing
# at once fail with "SystemError: AST constructor recursion depth mismatch" (seen in this
# suite with --jobs 2), so parses take turns.
_PARSING = threading.Lock()


def find_module(name: str, roots: Sequence[Path]) -> Path | None:
    """The source file of module ``name`` under the first root that has it."""
    parts = name.split(".")
    for root in roots:
        base = root.joinpath(*parts)
        for candidate in (base.with_suffix(".py"), base / "__init__.py"):
            if candidate.is_file():
                return candidate
    return None


def first_party_sources(module: str, roots: Sequence[Path], where: str) -> dict[str, Path]:
    """Module name → source file for ``module`` and everything first-party it imports."""
    found: dict[str, Path] = {}
    start = find_module(module, roots)
    if start is None:
        raise PipelineError(f"{where}: module '{module}' is not under {_roots(roots)}")
    todo = [module]
    while todo:
        name = todo.pop()
        if name in found:
            continue
        path = find_module(name, roots)
        if path is None:
            continue
        found[name] = path
        for parent in _parents(name):
            if parent not in found and find_module(parent, roots) is not None:
                todo.append(parent)
        todo.extend(_imported(name, path))
    return dict(sorted(found.items()))


def _parents(name: str) -> list[str]:
    parts = name.split(".")
    return [".".join(parts[:i]) for i in range(1, len(parts))]


def _imported(name: str, path: Path) -> list[str]:
    """Every module name ``path`` might import: ``from a import b`` gives ``a`` and ``a.b``."""
    source = path.read_bytes()
    try:
        with _PARSING:
            tree = ast.parse(source, str(path))
    except SyntaxError as exc:
        raise PipelineError(f"{path}: cannot parse ({exc.msg}, line {exc.lineno})") from exc
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    names: list[str] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.extend(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = _absolute(node.module, node.level, package)
            if base is None:
                continue
            if base:
                names.append(base)
            names.extend(f"{base}.{a.name}" if base else a.name for a in node.names)
    return names


def _absolute(module: str | None, level: int, package: str) -> str | None:
    if level == 0:
        return module
    parts = package.split(".") if package else []
    if level - 1 > len(parts):
        return None
    base = parts[: len(parts) - (level - 1)]
    if module:
        base.append(module)
    return ".".join(base)


def _roots(roots: Sequence[Path]) -> str:
    return ", ".join(str(r) for r in roots)
