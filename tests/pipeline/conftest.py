"""Pipelines in temporary directories: a TOML file, helper modules, and a way to run them."""

from __future__ import annotations

import textwrap
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from server.pipeline import RunOptions, run_pipeline

# Step functions the tests use: each writes its outputs from its inputs and parameters.
STEPS = """
from pathlib import Path


def read(path):
    if path.is_dir():
        return "".join(f.read_text() for f in sorted(path.rglob("*")) if f.is_file())
    return path.read_text()


def copy(inputs, outputs, params):
    text = "".join(read(p) for _, p in sorted(inputs.items()))
    for path in outputs.values():
        Path(path).write_text(text + str(params.get("suffix", "")))


def count(inputs, outputs, params):
    log = Path(params["log"])
    with log.open("a") as fh:
        fh.write(params.get("tag", "ran") + "\\n")
    copy(inputs, outputs, params)
"""

Run = Callable[..., dict[str, Any]]


def write(folder: Path, files: dict[str, str]) -> None:
    for name, text in files.items():
        path = folder / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text))


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """A folder holding ``steps.py`` and ``data.txt``; tests add ``pipeline.toml``."""
    write(tmp_path, {"steps.py": STEPS, "data.txt": "hello\n"})
    return tmp_path


@pytest.fixture
def run(project: Path) -> Run:
    def run(toml: str | None = None, **options: Any) -> dict[str, Any]:
        if toml is not None:
            write(project, {"pipeline.toml": toml})
        return run_pipeline(project / "pipeline.toml", RunOptions(**options))

    return run


def cache(summary: dict[str, Any]) -> dict[str, str | None]:
    """Step → "hit", "miss" or None (not run)."""
    return {name: step["cache"] for name, step in summary["steps"].items()}


CHAIN = """
[params]
suffix = "!"

[steps.a]
kind = "python"
function = "steps:copy"
inputs = { data = "data.txt" }
outputs = { out = "work/a.txt" }

[steps.b]
kind = "python"
function = "steps:copy"
suffix = "${params.suffix}"
inputs = { data = "a.out" }
outputs = { out = "work/b.txt" }
"""
