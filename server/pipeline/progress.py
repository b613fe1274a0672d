"""One line per step event on stderr: ``[2/5] score      miss   3.41s``."""

from __future__ import annotations

import threading
from typing import TextIO

_MARKS = {"hit": "=", "miss": "+", "failed": "x", "skipped": "-", "running": ">", "waiting": "~"}


class Progress:
    def __init__(self, stream: TextIO | None, total: int) -> None:
        self._stream = stream
        self._total = total
        self._done = 0
        self._lock = threading.Lock()
        self._width = 12

    def line(self, step: str, event: str, detail: str = "") -> None:
        if self._stream is None:
            return
        with self._lock:
            if event not in ("running", "waiting"):
                self._done += 1
            count = f"[{self._done}/{self._total}]"
            text = f"{_MARKS.get(event, ' ')} {count:>7} {step:<{self._width}} {event:<8} {detail}"
            print(text.rstrip(), file=self._stream, flush=True)
