"""``sluice serve`` in a child process: SIGTERM commits every queued row (on every worker,
sampled the same way), and SIGKILL loses at most the open file."""

import hashlib
import json
import signal
import time
import urllib.request
from pathlib import Path

import pyarrow.dataset as ds
import pytest

from tests import models
from tests.http.test_shutdown import sluice_serve


def _send(base: str, ids: list[str]) -> None:
    for rid in ids:
        body = {
            "id": rid,
            "inputs": [{"name": "INPUT0", "datatype": "FP32", "shape": [1, 3], "data": [1, 2, 3]}],
        }
        request = urllib.request.Request(f"{base}/v2/models/ident/infer", json.dumps(body).encode())
        urllib.request.urlopen(request).close()


def _captured(cap: Path) -> list[str]:
    if not any(cap.rglob("*.parquet")):
        return []
    table = ds.dataset(cap, format="parquet", partitioning="hive").to_table(columns=["request_id"])
    return table.column("request_id").to_pylist()


def _repo(tmp_path: Path, capture: str) -> Path:
    config = f'[capture]\nenabled = true\npath = "{tmp_path / "cap"}"\n{capture}'
    return models.write_repository(
        tmp_path / "repo", {"ident": models.identity("FP32")}, {"ident": config}
    )


def _point(rid: str) -> float:
    return int.from_bytes(hashlib.blake2b(rid.encode(), digest_size=8).digest()) / 2**64


def _wait_for_workers(base: str, count: int) -> None:
    """Until ``count`` distinct workers have answered (each connection picks one)."""
    seen: set[str] = set()
    deadline = time.monotonic() + 60
    while len(seen) < count:
        assert time.monotonic() < deadline
        with urllib.request.urlopen(f"{base}/metrics") as answer:
            text = answer.read().decode()
        seen.update(
            line.split()[1] for line in text.splitlines() if line.startswith("sluice_worker_pid ")
        )


@pytest.mark.slow
def test_sigterm_commits_every_sampled_row_on_every_worker(tmp_path: Path) -> None:
    repo = _repo(tmp_path, "sample_rate = 0.5\nmax_file_seconds = 3600\n")
    ids = [f"r{i}" for i in range(300)]
    with sluice_serve(repo, "--workers", "2") as (proc, base):
        _wait_for_workers(base, 2)
        _send(base, ids)
        assert _captured(tmp_path / "cap") == []  # still in open files
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(60) == 0
    captured = _captured(tmp_path / "cap")
    assert sorted(captured) == sorted(r for r in ids if _point(r) < 0.5)
    pids = {p.name.split("-")[2] for p in (tmp_path / "cap").rglob("*.parquet")}
    assert len(pids) == 2  # both workers captured, and agreed on which ids to keep


@pytest.mark.slow
def test_sigkill_loses_at_most_the_open_file(tmp_path: Path) -> None:
    repo = _repo(tmp_path, "max_file_seconds = 0.2\n")
    first = [f"a{i}" for i in range(50)]
    second = [f"b{i}" for i in range(50)]
    with sluice_serve(repo) as (proc, base):
        _send(base, first)
        deadline = time.monotonic() + 30
        while len(_captured(tmp_path / "cap")) < len(first):
            assert time.monotonic() < deadline
            time.sleep(0.1)
        _send(base, second)
        proc.send_signal(signal.SIGKILL)
        proc.wait(30)
    captured = _captured(tmp_path / "cap")  # readable: no partial file is visible
    assert len(captured) == len(set(captured))
    assert set(first) <= set(captured) <= set(first) | set(second)
