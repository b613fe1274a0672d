"""Where a server's time goes: py-spy samples under load, folded and grouped by role.

``record`` samples a process and its subprocesses (py-spy ``--subprocesses``) without pausing
them; ``summarize`` classifies every sample by the frames on its stack: ONNX Runtime's
``run`` anywhere on the stack counts as model compute, otherwise the innermost frame decides.
"""

from __future__ import annotations

import collections
import re
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

# (role, pattern on "function (file:line)"), first match wins, tested innermost frame first.
ROLES: list[tuple[str, re.Pattern[str]]] = [
    # A pool thread parked in work_queue.get / submit: waking up and taking the GIL back.
    (
        "thread-pool handoff (queue wait, GIL re-acquire)",
        re.compile(r"concurrent/futures/thread\.py"),
    ),
    # A plain thread running native code with no Python frame of its own: grpc's poller.
    ("native thread (grpc poller)", re.compile(r"^Thread\.run \(threading")),
    # uvloop's run loop in C: epoll, socket reads/writes, callback dispatch.
    ("event loop (uvloop C: I/O, scheduling)", re.compile(r"^Runner\.run \(asyncio/runners")),
    ("json codec", re.compile(r"json|codecs/", re.I)),
    (
        "http protocol (uvicorn httptools: parse, write)",
        re.compile(r"uvicorn/protocols|httptools|h11"),
    ),
    ("asgi/starlette routing", re.compile(r"starlette/|uvicorn/middleware")),
    ("grpc", re.compile(r"grpc")),
    ("batcher/engine", re.compile(r"server/engine|batcher")),
    ("metrics (prometheus_client)", re.compile(r"prometheus_client/")),
    ("numpy", re.compile(r"numpy/")),
    ("event loop (asyncio Python)", re.compile(r"asyncio/|uvloop|selectors")),
    ("sluice edge", re.compile(r"server/")),
]
ORT = re.compile(r"onnxruntime")


def py_spy() -> str:
    found = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
    return found


def record(
    pid: int, duration_s: float, output: Path, rate: int = 250, native: bool = False
) -> Path:
    """Sample ``pid`` and its children for ``duration_s``; write py-spy's folded stacks.

    ``native`` adds C/C++ frames (ORT, uvloop, grpc core) below the Python ones.
    """
    subprocess.run(
        [
            py_spy(),
            "record",
            "--pid",
            str(pid),
            "--subprocesses",
            # Native unwinding needs the process paused while sampled.
            *(["--native"] if native else ["--nonblocking"]),
            "--rate",
            str(rate),
            "--duration",
            str(int(duration_s)),
            "--format",
            "raw",
            "--output",
            str(output),
        ],
        check=True,
        capture_output=True,
        timeout=duration_s + 60,
    )
    return output


def under_load(
    pid: int, duration_s: float, output: Path, load: Callable[[float], object]
) -> dict[str, Any]:
    """Summarize ``duration_s`` of samples of ``pid`` taken while ``load(seconds)`` runs in a
    thread; the load starts 2 s before sampling and ends after it."""
    thread = threading.Thread(target=load, args=(duration_s + 4,))
    thread.start()
    time.sleep(2)
    record(pid, duration_s, output)
    thread.join()
    return summarize(output)


def _frames(stack: str) -> list[str]:
    """Code frames only: py-spy's ``process N:"cmdline"`` and thread labels are dropped."""
    frames = [f for f in stack.split(";") if f and not f.startswith(("process ", "thread "))]
    # A process label's command line may itself hold ';' (python -c "...; ..."): drop its tail.
    return [f for f in frames if not f.endswith('"')]


def role(frames: list[str]) -> str:
    if any(ORT.search(f) for f in frames):
        return "onnxruntime run"
    for frame in reversed(frames):
        for name, pattern in ROLES:
            if pattern.search(frame):
                return name
    return "other"


def summarize(folded: Path, top: int = 15) -> dict[str, Any]:
    """Sample shares by role, and the heaviest innermost frames (self time)."""
    roles: collections.Counter[str] = collections.Counter()
    leaves: collections.Counter[str] = collections.Counter()
    total = 0
    for line in folded.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        n = int(count)
        frames = _frames(stack)
        total += n
        roles[role(frames)] += n
        leaves[frames[-1] if frames else "?"] += n
    return {
        "samples": total,
        "roles": {k: round(100 * v / total, 1) for k, v in roles.most_common()} if total else {},
        "top_self": [
            {"frame": k, "pct": round(100 * v / total, 1)} for k, v in leaves.most_common(top)
        ]
        if total
        else [],
    }


def markdown(summary: dict[str, Any]) -> str:
    lines = [f"py-spy samples (active threads, all processes): {summary['samples']}", ""]
    lines += ["| role | % of samples |", "| --- | ---: |"]
    lines += [f"| {k} | {v} |" for k, v in summary["roles"].items()]
    lines += ["", "| innermost frame (self) | % |", "| --- | ---: |"]
    lines += [f"| `{t['frame']}` | {t['pct']} |" for t in summary["top_self"]]
    return "\n".join(lines)
