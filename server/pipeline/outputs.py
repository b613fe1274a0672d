"""Where a step writes, and how its outputs appear: staged beside the final path, renamed.

A step writes each output to ``.NAME.partial-KEY`` in the output's own directory (same file
system, so the rename is atomic). Only when the step returns are the outputs published: the old
output, if any, is renamed aside, the new one renamed into place, the old one removed. A crash
at any point leaves either no output or a complete one, never a half-written one, and the cache
index is written only after publication, so a crashed step has no cached result.
"""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import Mapping
from pathlib import Path


def staging(final: Path, key: str) -> Path:
    return final.parent / f".{final.name}.partial-{key[:16]}"


def prepare(outputs: Mapping[str, Path], key: str, keep: bool) -> dict[str, Path]:
    """Staging paths for ``outputs``; ``keep`` leaves a killed attempt's partial output."""
    staged: dict[str, Path] = {}
    for name, final in outputs.items():
        final.parent.mkdir(parents=True, exist_ok=True)
        path = staging(final, key)
        if not keep:
            remove(path)
        staged[name] = path
    return staged


def missing(staged: Mapping[str, Path]) -> list[str]:
    return [name for name, path in staged.items() if not path.exists()]


def publish(staged: Mapping[str, Path], outputs: Mapping[str, Path]) -> None:
    for name, temp in staged.items():
        final = outputs[name]
        aside = final.parent / f".{final.name}.old-{uuid.uuid4().hex[:8]}"
        if final.exists() or final.is_symlink():
            os.replace(final, aside)
        os.replace(temp, final)
        remove(aside)
        _sync_directory(final.parent)


def remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    elif path.exists() or path.is_symlink():
        path.unlink()


def _sync_directory(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
