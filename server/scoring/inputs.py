"""The input set: Parquet and Arrow IPC files named on the command line or found in directories."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import pyarrow as pa
import pyarrow.dataset as ds

from server.errors import ConfigError, InvalidInput

FileFormat = Literal["parquet", "ipc"]

_SUFFIXES: dict[str, FileFormat] = {
    ".parquet": "parquet",
    ".pq": "parquet",
    ".parq": "parquet",
    ".arrow": "ipc",
    ".ipc": "ipc",
    ".feather": "ipc",
}
_MAGIC: dict[bytes, FileFormat] = {b"PAR1": "parquet", b"ARRO": "ipc"}


@dataclass(frozen=True, slots=True)
class InputFile:
    """One input file; its output is one Parquet file of the same stem."""

    path: Path
    format: FileFormat
    size: int

    def dataset(self) -> ds.Dataset:
        return ds.dataset(str(self.path), format=self.format)

    def schema(self) -> pa.Schema:
        try:
            return self.dataset().schema
        except (pa.ArrowInvalid, OSError) as exc:
            raise InvalidInput(f"{self.path}: cannot read ({exc})") from exc

    def count_rows(self) -> int:
        return int(self.dataset().count_rows())


def discover(paths: tuple[Path, ...]) -> list[InputFile]:
    """Every input file, sorted within each argument, in argument order, without duplicates.

    Directories are searched recursively for known suffixes; names starting with ``.`` or
    ``_`` are skipped, as ``pyarrow.dataset`` does. A file named explicitly may have any
    suffix: its format comes from its magic bytes.
    """
    found: dict[Path, InputFile] = {}
    for path in paths:
        if path.is_dir():
            files = sorted(
                p
                for p in path.rglob("*")
                if p.is_file() and p.suffix.lower() in _SUFFIXES and not _hidden(p, path)
            )
            if not files:
                raise ConfigError(f"--input {path}: no Parquet or Arrow files in this directory")
            for file in files:
                found.setdefault(file.resolve(), _input_file(file))
        elif path.is_file():
            found.setdefault(path.resolve(), _input_file(path))
        else:
            raise ConfigError(f"--input {path}: no such file or directory")
    return list(found.values())


def _hidden(path: Path, root: Path) -> bool:
    return any(part.startswith((".", "_")) for part in path.relative_to(root).parts)


def _input_file(path: Path) -> InputFile:
    with path.open("rb") as fh:
        magic = fh.read(4)
    file_format = _MAGIC.get(magic) or _SUFFIXES.get(path.suffix.lower())
    if file_format is None:
        raise ConfigError(f"--input {path}: neither a Parquet nor an Arrow IPC file")
    return InputFile(path.resolve(), file_format, path.stat().st_size)
