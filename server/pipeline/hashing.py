"""Content digests of files and directories: BLAKE3 behind a stat memo.

A file's digest is remembered with its (size, mtime_ns, ctime_ns, inode); the next lookup with
the same stat returns it without reading a byte. ``ctime`` cannot be set from user space, so a
rewrite whose mtime was set back (``touch -d``, ``os.utime``, an archive extract) still changes
the key. ``verify=True`` ignores the memo and rehashes everything.

BLAKE3 hashes a memory-mapped file with all cores (``max_threads=AUTO``); directories hash
their files on a thread pool (BLAKE3 releases the GIL). A directory's digest covers each
file's relative path and digest, so a rename changes it. Files named ``.*`` are skipped.
"""

from __future__ import annotations

import os
import sqlite3
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import blake3

from server.resources import usable_cores

_SMALL = 1 << 20  # below this, one read beats mmap and thread start-up


def hash_file(path: Path) -> str:
    """The BLAKE3 digest (hex) of a file's bytes, read with every core."""
    hasher = blake3.blake3(max_threads=blake3.blake3.AUTO)
    if os.path.getsize(path) < _SMALL:
        with open(path, "rb") as fh:
            hasher.update(fh.read())
    else:
        hasher.update_mmap(path)
    return hasher.hexdigest()


def hash_text(text: str) -> str:
    return blake3.blake3(text.encode()).hexdigest()


def digest_uncached(path: Path) -> str:
    """What ``Hasher.digest`` gives, read afresh and not remembered (for throwaway paths)."""
    if path.is_dir():
        return Hasher.combine(
            {f.relative_to(path).as_posix(): hash_file(f) for f in sorted(_files(path))}
        )
    return hash_file(path)


class Hasher:
    """Digests of paths, memoised by stat in the ``memo`` table of ``db``."""

    def __init__(self, db: sqlite3.Connection, verify: bool = False) -> None:
        self._db = db
        self._verify = verify
        self._lock = threading.Lock()
        self.bytes_hashed = 0
        self.files_seen = 0

    def digest(self, path: Path) -> str:
        """The digest of a file or of a directory tree; ``FileNotFoundError`` if absent."""
        if path.is_dir():
            return self.combine(self.tree(path))
        return self._file(path)

    def tree(self, root: Path) -> dict[str, str]:
        """Relative path → digest of every file under ``root``, hashed on a thread pool."""
        files = sorted(_files(root))
        if len(files) == 1:
            digests = [self._file(files[0])]
        else:
            with ThreadPoolExecutor(min(8, usable_cores().count)) as pool:
                digests = list(pool.map(self._file, files))
        return {f.relative_to(root).as_posix(): d for f, d in zip(files, digests, strict=True)}

    @staticmethod
    def combine(files: dict[str, str]) -> str:
        """A directory's digest from its ``tree``: names and contents, in name order."""
        return "dir:" + hash_text("".join(f"{n}\0{d}\n" for n, d in sorted(files.items())))

    def _file(self, path: Path) -> str:
        st = path.stat()
        stamp = (st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino)
        key = str(path)
        with self._lock:
            self.files_seen += 1
            if not self._verify:
                row = self._db.execute(
                    "SELECT digest FROM memo WHERE path = ? AND size = ? AND mtime_ns = ? "
                    "AND ctime_ns = ? AND inode = ?",
                    (key, *stamp),
                ).fetchone()
                if row is not None:
                    return str(row[0])
        digest = hash_file(path)
        with self._lock:
            self.bytes_hashed += st.st_size
            with self._db:
                self._db.execute(
                    "INSERT OR REPLACE INTO memo (path, size, mtime_ns, ctime_ns, inode, digest) "
                    "VALUES (?, ?, ?, ?, ?, ?)",
                    (key, *stamp, digest),
                )
        return digest


def _files(root: Path) -> Iterator[Path]:
    for folder, dirs, names in os.walk(root):
        dirs[:] = [d for d in dirs if not d.startswith(".")]
        for name in names:
            if not name.startswith("."):
                yield Path(folder) / name
