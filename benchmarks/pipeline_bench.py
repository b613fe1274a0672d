"""Pipeline caching figures: content hashing of a 2 GB Parquet dataset, and the runner's cost.

    python -m benchmarks.pipeline_bench                 # 2 GB in 8 files, 5 rounds
    python -m benchmarks.pipeline_bench --gb 0.5 --rounds 3

Hashing, interleaved round by round on the same files (the page cache holds them for every
contender, so this compares hashing, not the disk):

- ``md5sum`` and ``sha256sum`` (coreutils) over all files, the usual peers;
- Sluice cold: ``Hasher.digest`` with an empty stat memo (BLAKE3, memory-mapped, all cores);
- Sluice warm: the same call with the memo filled, as on every run after the first: one
  ``stat`` and one SQLite lookup per file;
- the limit: reading the bytes once (``cat > /dev/null``), which no content hash can beat.

Runner: a 10-step pipeline (python steps in two branches over the dataset and small files),
run once to fill the cache, then timed fully cached, in-process (``run_pipeline``) and as the
command (``python -m server pipeline run``, interpreter start-up included). Goal: < 200 ms.
Results go to ``benchmarks/results/pipeline-<date>.json`` and ``.md``.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from server.pipeline import RunOptions, run_pipeline
from server.pipeline.hashing import Hasher
from server.pipeline.records import connect

ROOT = Path(__file__).resolve().parent.parent
WORK = ROOT / "benchmarks" / ".work" / "pipeline"
FILES = 8

STEPS = """
from pathlib import Path


def summarise(inputs, outputs, params):
    size = sum(f.stat().st_size for f in Path(inputs["data"]).iterdir())
    outputs["out"].write_text(f"{params['tag']} {size}\\n")


def join(inputs, outputs, params):
    outputs["out"].write_text("".join(Path(p).read_text() for _, p in sorted(inputs.items())))
"""


def make_dataset(folder: Path, gb: float) -> int:
    """``FILES`` Parquet files of random float64 columns (incompressible), ``gb`` in all."""
    folder.mkdir(parents=True, exist_ok=True)
    rows = int(gb * 1e9 / FILES / 8 / 8)  # 8 float64 columns
    rng = np.random.default_rng(0)
    for i in range(FILES):
        path = folder / f"part-{i}.parquet"
        if path.exists():
            continue
        columns = {f"f{j}": rng.random(rows) for j in range(8)}
        pq.write_table(pa.table(columns), path, compression="none")
    return sum(p.stat().st_size for p in folder.iterdir())


def write_pipeline(folder: Path, data: Path) -> Path:
    (folder / "steps.py").write_text(STEPS)
    (folder / "seed.txt").write_text("seed\n")
    lines = ['[params]\ntag = "bench"\n']
    for i in range(4):  # branch 1: four steps each reading the whole dataset
        lines.append(
            f'[steps.scan{i}]\nkind = "python"\nfunction = "steps:summarise"\n'
            f'tag = "${{params.tag}}-{i}"\ninputs = {{ data = "{data}" }}\n'
            f'outputs = {{ out = "work/scan{i}.txt" }}\n'
        )
    previous = "seed.txt"
    for i in range(5):  # branch 2: a chain of five small steps
        lines.append(
            f'[steps.chain{i}]\nkind = "python"\nfunction = "steps:join"\n'
            f'inputs = {{ x = "{previous}" }}\noutputs = {{ out = "work/chain{i}.txt" }}\n'
        )
        previous = f"chain{i}.out"
    scans = ", ".join(f's{i} = "scan{i}.out"' for i in range(4))
    lines.append(
        '[steps.report]\nkind = "python"\nfunction = "steps:join"\n'
        f'inputs = {{ {scans}, c = "chain4.out" }}\noutputs = {{ out = "work/report.txt" }}\n'
    )
    path = folder / "pipeline.toml"
    path.write_text("\n".join(lines))
    return path


def timed(action: Callable[[], Any]) -> float:
    start = time.perf_counter()
    action()
    return time.perf_counter() - start


def shell(*command: str) -> Callable[[], Any]:
    return lambda: subprocess.run(command, check=True, stdout=subprocess.DEVNULL)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--gb", type=float, default=2.0)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args(argv)
    data = WORK / f"data-{args.gb:g}gb"
    size = make_dataset(data, args.gb)
    files = sorted(str(p) for p in data.iterdir())
    scratch = Path(tempfile.mkdtemp(prefix="pipeline-bench-"))
    times: dict[str, list[float]] = {k: [] for k in ("cat", "md5sum", "sha256sum", "cold", "warm")}
    try:
        for round_ in range(args.rounds):
            memo_dir = scratch / f"memo{round_}"
            memo_dir.mkdir()
            hasher = Hasher(connect(memo_dir))
            times["cat"].append(timed(lambda: subprocess.run(
                ["cat", *files], check=True, stdout=subprocess.DEVNULL)))  # fmt: skip
            times["md5sum"].append(timed(shell("md5sum", *files)))
            times["cold"].append(timed(lambda h=hasher: h.digest(data)))  # type: ignore[misc]
            times["sha256sum"].append(timed(shell("sha256sum", *files)))
            times["warm"].append(timed(lambda h=hasher: h.digest(data)))  # type: ignore[misc]
            assert hasher.bytes_hashed == size, "the warm call must not reread"
        pipeline = write_pipeline(scratch, data)
        first = run_pipeline(pipeline, RunOptions(jobs=2))
        assert first["status"] == "succeeded", first
        in_process: list[float] = []
        command: list[float] = []
        for _ in range(max(5, args.rounds * 2)):
            summary: dict[str, Any] = {}
            in_process.append(
                timed(lambda s=summary: s.update(run_pipeline(pipeline, RunOptions(jobs=2))))  # type: ignore[misc]
            )
            assert {s["cache"] for s in summary["steps"].values()} == {"hit"}
            command.append(timed(shell(
                sys.executable, "-m", "server", "pipeline", "run", str(pipeline), "--quiet"
            )))  # fmt: skip
        interpreter = [timed(shell(sys.executable, "-c", "pass")) for _ in range(5)]
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    report = _report(args, size, times, in_process, command, interpreter)
    _write(report)
    return 0


def _report(
    args: argparse.Namespace,
    size: int,
    times: dict[str, list[float]],
    in_process: list[float],
    command: list[float],
    interpreter: list[float],
) -> dict[str, Any]:
    med = {k: statistics.median(v) for k, v in times.items()}
    gbps = {k: size / v / 1e9 for k, v in med.items()}
    return {
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "machine": {
            "cores": os.cpu_count(),
            "load_average_before_after": list(os.getloadavg()),
            "python": platform.python_version(),
        },
        "dataset_bytes": size,
        "files": FILES,
        "rounds": args.rounds,
        "hash_seconds_median": med,
        "hash_gb_per_second": gbps,
        "ratios": {
            "cold_vs_md5sum": med["md5sum"] / med["cold"],
            "cold_vs_sha256sum": med["sha256sum"] / med["cold"],
            "warm_vs_md5sum": med["md5sum"] / med["warm"],
            "warm_vs_cold": med["cold"] / med["warm"],
            "cold_vs_read_limit": med["cat"] / med["cold"],
        },
        "runner_cached_10_steps_ms": {
            "in_process_median": statistics.median(in_process) * 1000,
            "command_median": statistics.median(command) * 1000,
            "python_startup_median": statistics.median(interpreter) * 1000,
        },
        "raw": {**times, "in_process": in_process, "command": command},
    }


def _write(report: dict[str, Any]) -> None:
    results = ROOT / "benchmarks" / "results"
    stem = results / f"pipeline-{datetime.date.today().isoformat()}"
    stem.with_suffix(".json").write_text(json.dumps(report, indent=2) + "\n")
    med, gbps, r = report["hash_seconds_median"], report["hash_gb_per_second"], report["ratios"]
    run = report["runner_cached_10_steps_ms"]
    lines = [
        f"# Pipeline caching benchmark ({report['date']})",
        "",
        f"{report['machine']['cores']} cores, load average "
        f"{', '.join(f'{x:.1f}' for x in report['machine']['load_average_before_after'])} "
        f"(1/5/15 min, at the end); {report['dataset_bytes'] / 1e9:.2f} GB of Parquet in "
        f"{report['files']} files, page-cached; medians of {report['rounds']} interleaved rounds.",
        "",
        "| hashing | seconds | GB/s |",
        "| --- | ---: | ---: |",
        *(
            f"| {label} | {med[k]:.3f} | {gbps[k]:.2f} |"
            for k, label in (
                ("cat", "read only (`cat > /dev/null`, the limit)"),
                ("md5sum", "`md5sum`"),
                ("sha256sum", "`sha256sum`"),
                ("cold", "Sluice, cold (BLAKE3, empty memo)"),
                ("warm", "Sluice, warm (stat memo)"),
            )
        ),
        "",
        f"Cold: {r['cold_vs_md5sum']:.1f}x md5sum, {r['cold_vs_sha256sum']:.1f}x sha256sum, "
        f"{r['cold_vs_read_limit']:.2f}x the read-only limit. Warm: {r['warm_vs_cold']:.0f}x "
        "faster than cold.",
        "",
        "| fully cached 10-step pipeline | ms |",
        "| --- | ---: |",
        f"| `run_pipeline` in process | {run['in_process_median']:.1f} |",
        f"| `python -m server pipeline run` (whole command) | {run['command_median']:.1f} |",
        f"| `python -c pass` (interpreter start-up alone) | {run['python_startup_median']:.1f} |",
        "",
    ]
    stem.with_suffix(".md").write_text("\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    sys.exit(main())
