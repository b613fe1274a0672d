"""Version artifacts under ``ROOT/<name>/<version>/``, written so a crash leaves all or nothing.

Files are streamed into ``ROOT/<name>/.staging-<id>/`` while their sha256 is computed, fsynced,
and the staging directory is renamed onto the version's directory inside the registry's write
transaction, just before the commit. A process killed before the rename leaves only a staging
directory (never a version, and swept by the next register); killed between the rename and the
commit, it leaves a directory with no row, which the next register of that name (holding the
write lock, so no one else can be mid-publish) recognises as an orphan and replaces.
Paths go through ``pyarrow.fs``, so the root may be an object store URI.
"""

from __future__ import annotations

import hashlib
import os
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

from server.errors import ConfigError, ModelNotReady

MODEL_FILE = "model.onnx"
CONFIG_FILE = "config.toml"
BASELINE_FILE = "baseline.npz"
_CHUNK = 1 << 20
_STAGING = ".staging-"


@dataclass(frozen=True, slots=True)
class FileRecord:
    name: str
    sha256: str
    size: int


@dataclass(frozen=True, slots=True)
class Staged:
    name: str
    directory: str
    files: tuple[FileRecord, ...]

    @property
    def sha256(self) -> str:
        return next(f.sha256 for f in self.files if f.name == MODEL_FILE)


class ArtifactStore:
    def __init__(self, root: str) -> None:
        import pyarrow.fs as pafs  # lazily: a server without a registry never loads pyarrow

        if "://" in root:
            self.fs, self.root = pafs.FileSystem.from_uri(root)
        else:
            self.fs, self.root = pafs.LocalFileSystem(), os.path.abspath(root)
        self.local = isinstance(self.fs, pafs.LocalFileSystem)

    def version_dir(self, name: str, version: int) -> str:
        return f"{self.root}/{name}/{version}"

    def local_path(self, name: str, version: int, file: str = MODEL_FILE) -> Path | None:
        """The file's local path, or None when the store is remote (read it with ``read``)."""
        return Path(self.version_dir(name, version)) / file if self.local else None

    def read(self, name: str, version: int, file: str = MODEL_FILE) -> bytes:
        with self.fs.open_input_stream(f"{self.version_dir(name, version)}/{file}") as fh:
            return bytes(fh.read())

    def stage(self, name: str, files: dict[str, Path]) -> Staged:
        """Copy ``files`` (artifact name -> source) into a fresh staging directory."""
        directory = f"{self.root}/{name}/{_STAGING}{uuid.uuid4().hex}"
        self.fs.create_dir(directory, recursive=True)
        records = []
        try:
            for target, source in files.items():
                records.append(self._copy(source, f"{directory}/{target}", target))
        except BaseException:
            self.fs.delete_dir(directory)
            raise
        return Staged(name, directory, tuple(records))

    def publish(self, staged: Staged, version: int) -> None:
        """Rename the staging directory onto the version (call with the write lock held)."""
        import pyarrow.fs as pafs

        target = self.version_dir(staged.name, version)
        if self.fs.get_file_info(target).type != pafs.FileType.NotFound:
            self.fs.delete_dir(target)  # an orphan of a register killed before its commit
        self.fs.move(staged.directory, target)
        if self.local:
            _fsync_dir(Path(target).parent)

    def discard(self, staged: Staged) -> None:
        import pyarrow.fs as pafs

        if self.fs.get_file_info(staged.directory).type != pafs.FileType.NotFound:
            self.fs.delete_dir(staged.directory)

    def remove(self, name: str, version: int) -> None:
        import pyarrow.fs as pafs

        target = self.version_dir(name, version)
        if self.fs.get_file_info(target).type != pafs.FileType.NotFound:
            self.fs.delete_dir(target)

    def sweep(self, name: str, older_than_s: float = 3600.0) -> None:
        """Remove staging directories left by registers killed an hour or more ago."""
        import pyarrow.fs as pafs

        selector = pafs.FileSelector(f"{self.root}/{name}", allow_not_found=True)
        cutoff = time.time() - older_than_s
        for info in self.fs.get_file_info(selector):
            stale = info.mtime is not None and info.mtime.timestamp() < cutoff
            if info.base_name.startswith(_STAGING) and stale:
                self.fs.delete_dir(info.path)

    def verify(self, name: str, version: int, files: tuple[FileRecord, ...]) -> None:
        """Re-hash every artifact; a missing or changed file raises ``ModelNotReady``."""
        for record in files:
            path = f"{self.version_dir(name, version)}/{record.name}"
            try:
                digest = self._hash(path)
            except (OSError, FileNotFoundError) as exc:
                raise ModelNotReady(
                    f"model '{name}' version {version}: artifact {record.name} is missing ({exc})"
                ) from exc
            if digest != record.sha256:
                raise ModelNotReady(
                    f"model '{name}' version {version}: artifact {record.name} has sha256 "
                    f"{digest}, the registry recorded {record.sha256}: refusing to load it"
                )

    def _hash(self, path: str) -> str:
        digest = hashlib.sha256()
        with self.fs.open_input_stream(path) as fh:
            while chunk := fh.read(_CHUNK):
                digest.update(chunk)
        return digest.hexdigest()

    def _copy(self, source: Path, target: str, name: str) -> FileRecord:
        digest, size = hashlib.sha256(), 0
        try:
            src = source.open("rb")
        except OSError as exc:
            raise ConfigError(f"cannot read '{source}' ({exc.strerror})") from exc
        with src:
            if self.local:
                with open(target, "wb") as out:
                    while chunk := src.read(_CHUNK):
                        digest.update(chunk)
                        size += len(chunk)
                        out.write(chunk)
                    out.flush()
                    os.fsync(out.fileno())
            else:
                with self.fs.open_output_stream(target) as stream:
                    while chunk := src.read(_CHUNK):
                        digest.update(chunk)
                        size += len(chunk)
                        stream.write(chunk)
        return FileRecord(name, digest.hexdigest(), size)


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
