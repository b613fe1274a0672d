"""The limit: raw in-process ONNX Runtime on the reference model, no server in the way."""

from __future__ import annotations

import os
import statistics
import threading
import time
from pathlib import Path

import numpy as np
import onnxruntime as ort

CORES = os.cpu_count() or 1
# (label, intra-op threads per session or None for ORT's defaults, concurrent sessions)
CONFIGS: tuple[tuple[str, int | None, int], ...] = (
    ("ort_default", None, 1),  # one intra-op thread per core, spinning on
    ("ort_all_cores_no_spin", CORES, 1),
    ("ort_1_thread", 1, 1),
    (f"ort_1_thread_x{CORES}_sessions", 1, CORES),
)


def session(path: Path, intra_threads: int | None) -> ort.InferenceSession:
    """``intra_threads=None``: ORT's defaults (one thread per core, spinning on)."""
    opts = ort.SessionOptions()
    if intra_threads is not None:
        opts.intra_op_num_threads = intra_threads
        opts.inter_op_num_threads = 1
        opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
        opts.add_session_config_entry("session.inter_op.allow_spinning", "0")
    return ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])


def rows_per_s(
    path: Path,
    batch: int,
    intra_threads: int | None = None,
    duration_s: float = 3.0,
    repeats: int = 3,
    sessions: int = 1,
) -> tuple[float, list[float]]:
    """Median rows/s of ``session.run`` in a tight loop at ``batch`` rows, and every run.

    ``sessions > 1`` runs that many sessions at once, one Python thread each (ORT releases the
    GIL in ``run``): the machine's limit when each session has one intra-op thread.
    """
    pool = [session(path, intra_threads) for _ in range(sessions)]
    name = pool[0].get_inputs()[0].name
    x = np.random.default_rng(0).standard_normal((batch, 256)).astype(np.float32)
    for sess in pool:
        for _ in range(20):
            sess.run(None, {name: x})
    runs = []
    for _ in range(repeats):
        counts = [0] * sessions
        start = time.perf_counter()

        def loop(i: int, start: float = start, counts: list[int] = counts) -> None:
            while time.perf_counter() - start < duration_s:
                pool[i].run(None, {name: x})
                counts[i] += 1

        threads = [threading.Thread(target=loop, args=(i,)) for i in range(sessions)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        runs.append(sum(counts) * batch / (time.perf_counter() - start))
    return statistics.median(runs), runs
