"""Per-key leases, so two runs of one pipeline share a step's result instead of colliding.

A lease is an exclusive ``flock`` (through ``filelock``) on ``.sluice/locks/KEY.lock``: the
second run blocks until the first finishes the step, then finds the result in the cache. The
kernel drops a lock when its holder dies, so a killed run never strands one. A step also leases
each of its output paths (in sorted order, after its key), so two different keys never write
the same output at once.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import ExitStack, contextmanager
from pathlib import Path

from server.pipeline.hashing import hash_text


@contextmanager
def leases(
    folder: Path, key: str, outputs: Sequence[Path], on_wait: Callable[[], None]
) -> Iterator[bool]:
    """Hold the key's and the outputs' leases; yields whether another run made us wait."""
    from filelock import FileLock, Timeout  # only a step that runs needs it

    folder.mkdir(parents=True, exist_ok=True)
    names = [key, *sorted(hash_text(str(p))[:32] for p in outputs)]
    waited = False
    with ExitStack() as stack:
        for name in names:
            lock = FileLock(folder / f"{name}.lock", thread_local=False)
            try:
                lock.acquire(timeout=0)
            except Timeout:
                if not waited:
                    on_wait()
                waited = True
                lock.acquire()
            stack.callback(lock.release)
        yield waited
