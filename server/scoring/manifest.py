"""The output directory's manifest: what the job is, and which inputs are finished.

``DIR/_sluice_manifest.json`` is rewritten atomically after each input's output file has been
renamed into place. On start, the job is compared with the recorded one (model hash, input
set, columns): a different job is refused unless ``--overwrite``, which discards whatever
the directory holds (the same job included) and starts afresh. Anything in DIR that no
finished input accounts for (a temporary file, an output renamed just before a crash) is
removed, so a rerun scores each unfinished input exactly once more.
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
from collections.abc import Iterable
from pathlib import Path
from typing import Any, TypedDict

from server.errors import ConfigError
from server.scoring.writer import replace_durably

MANIFEST = "_sluice_manifest.json"
LOCK = ".sluice.lock"
ERRORS_DIR = "_errors"
STAGING_DIR = ".staging"
FORMAT = 1


class InputEntry(TypedDict):
    path: str
    size: int


class JobIdentity(TypedDict):
    model_sha256: str
    inputs: list[InputEntry]
    features: list[str]
    keep: list[str]


class Finished(TypedDict):
    outputs: list[str]
    errors: str | None
    rows_read: int
    rows_scored: int
    rows_skipped: int


class Manifest:
    """An output directory held by this process (an exclusive lock) and its manifest."""

    def __init__(self, directory: Path, identity: JobIdentity, overwrite: bool) -> None:
        self.directory = directory
        self.identity = identity
        directory.mkdir(parents=True, exist_ok=True)
        self._lock = os.open(directory / LOCK, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(self._lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(self._lock)
            raise ConfigError(f"{directory}: another sluice score job is writing here") from None
        self.finished: dict[str, Finished] = {}
        try:
            self._open(overwrite)
        except BaseException:
            os.close(self._lock)
            raise

    def _open(self, overwrite: bool) -> None:
        recorded = self._load()
        if recorded is not None and recorded["identity"] != self.identity and not overwrite:
            raise ConfigError(
                f"{self.directory} holds the output of a different job "
                f"({_difference(recorded['identity'], self.identity)}); "
                "use --overwrite to replace it, or choose another --output"
            )
        if recorded is not None and not overwrite:
            self.finished = recorded["finished"]
        self._remove_unaccounted()
        self.save()

    def close(self) -> None:
        os.close(self._lock)

    def is_finished(self, path: str) -> bool:
        return path in self.finished

    def record(self, path: str, entry: Finished) -> None:
        self.record_all({path: entry})

    def record_all(self, entries: dict[str, Finished]) -> None:
        """Mark inputs finished in one atomic manifest write."""
        self.finished.update(entries)
        self.save()

    def save(self) -> None:
        body = {"format": FORMAT, "identity": self.identity, "finished": self.finished}
        temp = self.directory / f".{MANIFEST}.tmp"
        temp.write_text(json.dumps(body, indent=1))
        replace_durably(temp, self.directory / MANIFEST)

    def _load(self) -> dict[str, Any] | None:
        path = self.directory / MANIFEST
        if not path.exists():
            # Our lock and a manifest never renamed into place are all a job killed before
            # its first save leaves behind.
            ours = {LOCK, f".{MANIFEST}.tmp"}
            if any(p.name not in ours for p in self.directory.iterdir()):
                raise ConfigError(
                    f"{self.directory} is not empty and has no {MANIFEST}: it is not a "
                    "sluice score output directory; choose a new or empty --output"
                )
            return None
        try:
            body: dict[str, Any] = json.loads(path.read_text())
        except (OSError, ValueError) as exc:
            raise ConfigError(f"{path}: unreadable manifest ({exc})") from exc
        if body.get("format") != FORMAT:
            raise ConfigError(f"{path}: unknown manifest format {body.get('format')!r}")
        return body

    def _remove_unaccounted(self) -> None:
        keep = {MANIFEST, LOCK, *_outputs(self.finished.values())}
        shutil.rmtree(self.directory / STAGING_DIR, ignore_errors=True)
        for path in sorted(self.directory.rglob("*"), reverse=True):
            name = path.relative_to(self.directory).as_posix()
            if path.is_file() and name not in keep:
                path.unlink()
            elif path.is_dir() and not any(path.iterdir()):
                path.rmdir()


def _outputs(entries: Iterable[Finished]) -> list[str]:
    names: list[str] = []
    for entry in entries:
        names.extend(entry["outputs"])
        if entry["errors"]:
            names.append(entry["errors"])
    return names


def _difference(old: JobIdentity, new: JobIdentity) -> str:
    if old["model_sha256"] != new["model_sha256"]:
        return "a different model"
    if old["inputs"] != new["inputs"]:
        before = {i["path"] for i in old["inputs"]}
        after = {i["path"] for i in new["inputs"]}
        added, removed = len(after - before), len(before - after)
        changed = "" if added or removed else ", files changed size"
        return f"a different input set: {added} added, {removed} removed{changed}"
    return "different --features or --keep columns"
