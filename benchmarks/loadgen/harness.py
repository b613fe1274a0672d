"""What every serving benchmark shares: timestamped logging, the body files load generators
replay, the record of the machine a result came from, and reading points back from JSON."""

from __future__ import annotations

import datetime as dt
import json
import os
import platform
import subprocess
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort

from benchmarks.loadgen import wrk
from benchmarks.loadgen.payloads import Payload
from benchmarks.loadgen.stats import Point, Run

ROOT = Path(__file__).resolve().parents[2]
BODIES = ROOT / "benchmarks" / ".work" / "bodies"


def ints(text: str) -> list[int]:
    """``"1,16,64"`` -> ``[1, 16, 64]`` (argparse type)."""
    return [int(x) for x in text.split(",") if x]


def log(msg: str) -> None:
    print(f"[{dt.datetime.now(dt.UTC):%H:%M:%S}] {msg}", flush=True)


def write_bodies(items: Sequence[Payload]) -> dict[str, Path]:
    """Each payload's body in a file named after it; the load generators read these."""
    BODIES.mkdir(parents=True, exist_ok=True)
    paths = {}
    for item in items:
        path = BODIES / f"{item.name}.bin"
        path.write_bytes(item.body)
        paths[item.name] = path
    return paths


def environment() -> dict[str, Any]:
    """Cores, load, versions and commit, recorded with every result."""

    def git(*a: str) -> str:
        out = subprocess.run(["git", *a], cwd=ROOT, capture_output=True, text=True)
        return out.stdout.strip()

    return {
        "cpu_count": os.cpu_count(),
        "loadavg_start": os.getloadavg(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "onnxruntime": ort.__version__,
        "numpy": np.__version__,
        "wrk": wrk.version(),
        "commit": git("rev-parse", "--short", "HEAD"),
        "branch": git("rev-parse", "--abbrev-ref", "HEAD"),
    }


def point_from_json(data: dict[str, Any]) -> Point:
    """A ``Point.to_json()`` dict back as a Point (its medians recomputed from the runs)."""
    return Point.of(
        data["server"],
        data["payload"],
        data["rows"],
        data["concurrency"],
        [Run(**r) for r in data["runs"]],
    )


def save_result(
    kind: str, started: Any, tag: str | None, result: dict[str, Any], text: str
) -> Path:
    """Write ``results/<kind>-<date>[-tag].json`` and ``.md``; returns the stem's path."""
    results = Path(__file__).parents[1] / "results"
    results.mkdir(exist_ok=True)
    stem = results / f"{kind}-{started:%Y%m%d-%H%M}{'-' + tag if tag else ''}"
    stem.with_suffix(".json").write_text(json.dumps(result, indent=2, default=str) + "\n")
    stem.with_suffix(".md").write_text(text + "\n")
    log(f"wrote {stem}.json and .md")
    return stem
