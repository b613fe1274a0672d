"""A job killed with SIGKILL at several points, then rerun, yields every input row once."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pyarrow.dataset as ds
import pyarrow.parquet as pq

from .conftest import feature_table, matrix, read_output, reference

ROOT = Path(__file__).resolve().parents[2]
FILES, ROWS = 6, 20_000


def finished(out: Path) -> int:
    try:
        return len(json.loads((out / "_sluice_manifest.json").read_text())["finished"])
    except (OSError, ValueError):
        return 0


def kill_when(command: list[str], ready: Callable[[], bool]) -> bool:
    """Start the job, SIGKILL it once ``ready()``; True if it was still running then."""
    process = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.DEVNULL)
    deadline = time.monotonic() + 30
    while process.poll() is None and not ready() and time.monotonic() < deadline:
        time.sleep(0.002)
    running = process.poll() is None
    process.send_signal(signal.SIGKILL)
    process.wait()
    return running


def test_sigkill_then_rerun_scores_each_row_exactly_once(model_path: Path, tmp_path: Path) -> None:
    source = tmp_path / "in"
    source.mkdir()
    for i in range(FILES):
        table = feature_table(ROWS, start=ROWS * i, seed=i)
        pq.write_table(table, source / f"part-{i}.parquet", row_group_size=2000)
    out = tmp_path / "out"
    command = [sys.executable, "-m", "server.score_cli", "--model", str(model_path)]
    command += ["--input", str(source), "--output", str(out), "--keep", "id"]
    command += ["--batch-size", "64", "--no-progress"]

    assert kill_when(command, lambda: any(out.glob(".*.tmp")))  # writing the first file
    for count in (2, 4):  # after some inputs are recorded, usually mid-file
        assert kill_when(command, lambda count=count: finished(out) >= count)
        ds.dataset(out).to_table()  # readable at every point: only complete files are visible
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr

    summary = json.loads(done.stdout)
    assert summary["files_resumed"] >= 2
    table = read_output(out)
    assert table["id"].to_pylist() == list(range(FILES * ROWS))
    expected = reference(model_path, {"input": matrix(ds.dataset(source).to_table().sort_by("id"))})
    np.testing.assert_allclose(
        np.stack(table["output"].to_numpy(zero_copy_only=False)), expected, rtol=1e-5, atol=1e-6
    )
