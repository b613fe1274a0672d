"""Batch scoring benchmark: `sluice score` against the raw ONNX Runtime limit and two peers.

python -m benchmarks.score_bench                  # 3M rows x 64 float32, 12 files, 3 repeats
python -m benchmarks.score_bench --rows 300000 --repeats 1 --skip ray   # a quick look

Model: MLP 64 -> 512 -> 512 -> 4 (``benchmarks.models.mlp``). Every contestant runs in its
own process, one after another, interleaved across repeats so a noisy neighbour hurts all:

- **limit**: raw in-process ONNX Runtime on the same rows already in memory as one float32
  matrix, batch 4096, ORT default session options; only the run loop is timed.
- **sluice**: ``python -m server.score_cli`` (what ``sluice score`` runs), timed from process
  start to exit; peak RSS from ``wait4``, on the full input and on a quarter of it.
- **sluice-ray**: the same with ``--engine ray`` (process start to exit, Ray start included).
- **ray**: a plain Ray Data job a user would write: ``read_parquet`` → ``map_batches`` with an
  actor pool of ORT sessions (one intra-op thread, half a CPU each, one actor per core) →
  ``write_parquet``; process start to exit.
- **pandas**: a plain loop: ``pd.read_parquet`` per file, ``to_numpy``, ORT (defaults) in
  4096-row batches, ``to_parquet``; process start to exit.

Data and outputs live in ``benchmarks/.work/score`` (gitignored); results go to
``benchmarks/results/score-<date>.json`` and ``.md``.
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
import time
from pathlib import Path
from typing import Any

WORK = Path(__file__).parent / ".work" / "score"
RESULTS = Path(__file__).parent / "results"
FEATURES = 64
SIZES = (FEATURES, 512, 512, 4)
BATCH = 4096
CONTESTANTS = ("limit", "sluice", "sluice-quarter", "sluice-ray", "ray", "pandas")


def feature_names() -> list[str]:
    return [f"f{j:02d}" for j in range(FEATURES)]


def prepare(rows: int, files: int) -> tuple[Path, list[Path]]:
    """The model and ``files`` Parquet files of ``rows`` rows in all (made once, reused)."""
    import numpy as np
    import onnx
    import pyarrow as pa
    import pyarrow.parquet as pq

    from benchmarks.models import mlp

    data = WORK / f"data-{rows}x{files}"
    model = WORK / "mlp.onnx"
    if not model.exists():
        WORK.mkdir(parents=True, exist_ok=True)
        onnx.save(mlp(SIZES, seed=0), str(model))
    paths = [data / f"part-{i:02d}.parquet" for i in range(files)]
    if all(p.exists() for p in paths):
        return model, paths
    data.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    per_file = rows // files
    for i, path in enumerate(paths):
        x = rng.standard_normal((per_file, FEATURES), dtype=np.float32)
        columns: dict[str, Any] = {"id": np.arange(i * per_file, (i + 1) * per_file)}
        columns.update({name: x[:, j] for j, name in enumerate(feature_names())})
        # 128 Ki-row row groups (~34 MB of features), a common writer setting.
        pq.write_table(pa.table(columns), path, row_group_size=131072)
    return model, paths


def measure(command: list[str]) -> dict[str, Any]:
    """Run ``command``; wall seconds from start to exit, peak RSS, and its JSON stdout."""
    start = time.perf_counter()
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert process.stdout is not None and process.stderr is not None
    out, err = process.stdout.read(), process.stderr.read()
    _, status, usage = os.wait4(process.pid, 0)
    seconds = time.perf_counter() - start
    process.returncode = os.waitstatus_to_exitcode(status)
    if process.returncode != 0:
        raise RuntimeError(f"{command[:4]} failed ({process.returncode}): {err.decode()[-2000:]}")
    last = out.decode().strip().splitlines()[-1]
    return {
        "seconds": seconds,
        "peak_rss_mb": usage.ru_maxrss / 1024,
        "cpu_seconds": usage.ru_utime + usage.ru_stime,
        "report": json.loads(last),
    }


def run_contestant(
    name: str, model: Path, paths: list[Path], rows: int, files: int
) -> dict[str, Any]:
    output = WORK / "out" / name
    shutil.rmtree(output, ignore_errors=True)
    output.parent.mkdir(parents=True, exist_ok=True)
    me = [
        sys.executable,
        "-m",
        "benchmarks.score_bench",
        "--rows",
        str(rows),
        "--files",
        str(files),
    ]
    files = [str(p) for p in paths]
    if name.startswith("sluice"):
        chosen = files[: len(files) // 4] if name == "sluice-quarter" else files
        engine = ["--engine", "ray"] if name == "sluice-ray" else []
        command = [sys.executable, "-m", "server.score_cli", "--model", str(model)]
        command += ["--input", *chosen, "--output", str(output), "--keep", "id", *engine]
        result = measure(command)
        scored = result["report"]["rows_scored"]
    else:
        result = measure([*me, "--role", name, "--model", str(model), "--output", str(output)])
        result["seconds"] = result["report"].get("seconds", result["seconds"])
        result["cpu_seconds"] = result["report"].get("cpu_seconds", result["cpu_seconds"])
        scored = result["report"]["rows"]
        if name != "limit" and scored != rows:
            raise RuntimeError(f"{name} scored {scored} rows of {rows}")
    shutil.rmtree(output, ignore_errors=True)
    result["rows"] = scored
    result["rows_per_second"] = scored / result["seconds"]
    return result


# --- peers, each run in its own process through --role -------------------------------------


def role_limit(model: Path, paths: list[Path]) -> dict[str, Any]:
    import numpy as np
    import onnxruntime as ort
    import pyarrow.dataset as ds

    table = ds.dataset([str(p) for p in paths]).to_table(columns=feature_names())
    x = np.column_stack([table[c].to_numpy() for c in feature_names()])
    del table
    session = ort.InferenceSession(str(model), providers=["CPUExecutionProvider"])
    session.run(None, {"input": x[:BATCH]})
    start, cpu = time.perf_counter(), time.process_time()
    for i in range(0, len(x), BATCH):
        session.run(None, {"input": x[i : i + BATCH]})
    seconds, cpu = time.perf_counter() - start, time.process_time() - cpu
    return {"rows": len(x), "seconds": seconds, "cpu_seconds": cpu}


def role_pandas(model: Path, paths: list[Path], output: Path) -> dict[str, Any]:
    import numpy as np
    import onnxruntime as ort
    import pandas as pd

    session = ort.InferenceSession(str(model), providers=["CPUExecutionProvider"])
    output.mkdir(parents=True, exist_ok=True)
    rows = 0
    for path in paths:
        frame = pd.read_parquet(path)
        x = frame[feature_names()].to_numpy(np.float32)
        scores = np.concatenate(
            [session.run(None, {"input": x[i : i + BATCH]})[0] for i in range(0, len(x), BATCH)]
        )
        result = pd.DataFrame({"id": frame["id"]})
        for k in range(scores.shape[1]):
            result[f"output_{k}"] = scores[:, k]
        result.to_parquet(output / path.name)
        rows += len(frame)
    return {"rows": rows}


class _RayPredictor:
    def __init__(self, model: str) -> None:
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = 1
        self.session = ort.InferenceSession(model, options, providers=["CPUExecutionProvider"])

    def __call__(self, batch: dict[str, Any]) -> dict[str, Any]:
        import numpy as np

        x = np.stack([batch[c] for c in feature_names()], axis=1).astype(np.float32)
        return {"id": batch["id"], "output": self.session.run(None, {"input": x})[0]}


def role_ray(model: Path, paths: list[Path], output: Path) -> dict[str, Any]:
    import warnings

    warnings.simplefilter("ignore", DeprecationWarning)
    import ray
    import ray.data

    cores = os.cpu_count() or 1
    ray.init(num_cpus=cores, include_dashboard=False, log_to_driver=False)
    ray.data.DataContext.get_current().enable_progress_bars = False
    dataset = ray.data.read_parquet([str(p) for p in paths]).select_columns(
        ["id", *feature_names()]
    )
    scored = dataset.map_batches(
        _RayPredictor,
        fn_constructor_args=(str(model),),
        batch_size=BATCH,
        batch_format="numpy",
        compute=ray.data.ActorPoolStrategy(min_size=1, max_size=cores),
        num_cpus=0.5,  # whole CPUs leave no slot for the read tasks on a small machine
    )
    scored.write_parquet(str(output))
    ray.shutdown()
    import pyarrow.dataset as ds

    return {"rows": ds.dataset(output).count_rows()}


# --- report ----------------------------------------------------------------------------------


def summarise(runs: dict[str, list[dict[str, Any]]], args: argparse.Namespace) -> dict[str, Any]:
    med = {
        name: {
            "rows_per_second": statistics.median(r["rows_per_second"] for r in rs),
            "seconds": statistics.median(r["seconds"] for r in rs),
            "peak_rss_mb": statistics.median(r["peak_rss_mb"] for r in rs),
            "cpu_seconds_per_million_rows": statistics.median(
                r["cpu_seconds"] / r["rows"] * 1e6 for r in rs
            ),
            "runs": [round(r["rows_per_second"]) for r in rs],
        }
        for name, rs in runs.items()
    }
    ratios: dict[str, float] = {}
    if "sluice" in med:
        sluice = med["sluice"]["rows_per_second"]
        for peer in ("limit", "ray", "pandas", "sluice-ray"):
            if peer in med:
                ratios[f"sluice / {peer}"] = sluice / med[peer]["rows_per_second"]
        if "limit" in med:
            ratios.update(paired(med))
        if "sluice-quarter" in med:
            ratios["peak RSS full / quarter"] = (
                med["sluice"]["peak_rss_mb"] / med["sluice-quarter"]["peak_rss_mb"]
            )
    import numpy
    import onnxruntime
    import pyarrow

    return {
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "cpu_count": os.cpu_count(),
        "machine": platform.processor() or platform.machine(),
        "load_average_at_start": args.load_at_start,
        "python": platform.python_version(),
        "versions": {
            "onnxruntime": onnxruntime.__version__,
            "pyarrow": pyarrow.__version__,
            "numpy": numpy.__version__,
        },
        "rows": args.rows,
        "files": args.files,
        "repeats": args.repeats,
        "model": "MLP " + " -> ".join(map(str, SIZES)),
        "medians": med,
        "ratios": ratios,
    }


def paired(med: dict[str, Any]) -> dict[str, float]:
    """sluice / limit within each repeat (run back to back, so under similar load)."""
    pairs = zip(med["sluice"]["runs"], med["limit"]["runs"], strict=True)
    return {f"sluice / limit, repeat {i + 1}": s / lim for i, (s, lim) in enumerate(pairs)}


def markdown(result: dict[str, Any]) -> str:
    lines = [
        f"# sluice score benchmark ({result['date']})",
        "",
        f"{result['rows']:,} rows x {FEATURES} float32 features in {result['files']} Parquet "
        f"files, {result['model']}; {result['cpu_count']} CPUs (`os.cpu_count()`), load "
        f"average {result['load_average_at_start']} at start; median of {result['repeats']} "
        "interleaved runs. Rows/s are end to end (process start to exit) except the limit's, "
        "which times only its run loop. CPU seconds (user + system, whole process; not "
        "measurable for Ray, whose workers are not the driver's children) are less disturbed "
        "by other load than wall time. Peak RSS is the driver's for Ray.",
        "",
        "| contestant | rows/s (median) | runs | seconds | peak RSS MB | CPU s / 1M rows |",
        "| --- | ---: | --- | ---: | ---: | ---: |",
    ]
    for name, m in result["medians"].items():
        # Ray's workers are not children of the driver: their CPU time is not counted.
        cpu = "n/a" if "ray" in name else f"{m['cpu_seconds_per_million_rows']:.1f}"
        lines.append(
            f"| {name} | {m['rows_per_second']:,.0f} | {', '.join(f'{r:,}' for r in m['runs'])} "
            f"| {m['seconds']:.1f} | {m['peak_rss_mb']:.0f} | {cpu} |"
        )
    lines += ["", "| ratio | value |", "| --- | ---: |"]
    lines += [f"| {k} | {v:.2f} |" for k, v in result["ratios"].items()]
    return "\n".join(lines) + "\n"


def rerender(path: Path) -> None:
    """Rewrite a result's markdown (and derived ratios) from its JSON."""
    result = json.loads(path.read_text())
    result["ratios"].update(paired(result["medians"]))
    path.write_text(json.dumps(result, indent=1) + "\n")
    path.with_suffix(".md").write_text(markdown(result))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=3_000_000)
    parser.add_argument("--files", type=int, default=12)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--skip", default="", help="contestants to leave out, comma-separated")
    parser.add_argument("--rerender", type=Path, help="rewrite the .md of a result .json")
    parser.add_argument("--role", choices=("limit", "pandas", "ray"), help=argparse.SUPPRESS)
    parser.add_argument("--model", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--output", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.rerender:
        rerender(args.rerender)
        return
    if args.role:
        paths = sorted((WORK / f"data-{args.rows}x{args.files}").glob("*.parquet"))
        roles = {
            "limit": lambda: role_limit(args.model, paths),
            "pandas": lambda: role_pandas(args.model, paths, args.output),
            "ray": lambda: role_ray(args.model, paths, args.output),
        }
        print(json.dumps(roles[args.role]()))
        return
    model, paths = prepare(args.rows, args.files)
    args.load_at_start = round(os.getloadavg()[0], 2)
    skip = set(filter(None, args.skip.split(",")))
    runs: dict[str, list[dict[str, Any]]] = {n: [] for n in CONTESTANTS if n not in skip}
    for repeat in range(args.repeats):
        for name in runs:
            result = run_contestant(name, model, paths, args.rows, args.files)
            runs[name].append(result)
            print(
                f"[{repeat + 1}/{args.repeats}] {name:15s} {result['rows_per_second']:>10,.0f} "
                f"rows/s  {result['seconds']:6.1f} s  {result['peak_rss_mb']:6.0f} MB",
                flush=True,
            )
    result = summarise(runs, args)
    RESULTS.mkdir(exist_ok=True)
    stem = RESULTS / f"score-{datetime.date.today():%Y%m%d}"
    stem.with_suffix(".json").write_text(json.dumps(result, indent=1) + "\n")
    stem.with_suffix(".md").write_text(markdown(result))
    print(markdown(result))


if __name__ == "__main__":
    main()
