"""Drift statistics, side by side: Sluice vs scipy vs Evidently 0.7, in one run.

    python -m benchmarks.drift_bench                      # 1M x 1M x 20 float64 features
    python -m benchmarks.drift_bench --rows 100000 --systems sluice,scipy

Each system runs in its own fresh process on the same Parquet files and reports its times, its
peak memory and its statistics, so the numbers are comparable and cross-checked:

- sluice: ``server.monitoring.report.compare`` on raw reference data (every statistic: PSI, JS,
  exact KS and its p-value, exact Wasserstein-1, null and out-of-range rates, summaries), and
  again from a saved-in-memory baseline (the reference pre-sorted, as a model version carries it).
- scipy: per feature ``ks_2samp`` + ``wasserstein_distance`` + numpy PSI/JS over decile bins.
- evidently: ``Report([DataDriftPreset()]).run(current, reference)`` on pandas frames, in its own
  venv (``benchmarks/.venvs/evidently``, created here: Evidently needs pandas < 3).

"compute" excludes the Parquet read; "end to end" includes it (pandas conversion for Evidently).
Peak memory is the resident-set high-water mark during compute, above the process's footprint
before the data was read, divided by the size of the input arrays. Results go to
``benchmarks/results/drift-<date>.json`` and ``.md``.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
EVIDENTLY_VENV = ROOT / "benchmarks" / ".venvs" / "evidently"
EVIDENTLY_REQUIREMENTS = ["evidently>=0.7,<0.8", "pandas<3", "pyarrow"]
SHIFTED_EVERY = 2  # every second feature drifts


# --- helpers shared by every worker (stdlib only: the Evidently venv runs this file too) ---


def _rss_kib(field: str) -> int:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    return 0


def _reset_peak() -> None:
    # Writing 5 to clear_refs resets VmHWM (Linux >= 4.0), so the peak covers one phase only.
    with open("/proc/self/clear_refs", "w") as refs:
        refs.write("5")


def _timed(function: Any) -> tuple[float, Any]:
    start = time.perf_counter()
    result = function()
    return time.perf_counter() - start, result


# --- data ---


def make_data(workdir: Path, rows: int, features: int, seed: int) -> tuple[Path, Path]:
    """Seeded reference/current Parquet files; every ``SHIFTED_EVERY``-th feature is shifted
    by 0.25 std in current; a few features have heavy ties (rounded) or skew."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq

    reference_path = workdir / f"reference-{rows}x{features}.parquet"
    current_path = workdir / f"current-{rows}x{features}.parquet"
    if reference_path.exists() and current_path.exists():
        return reference_path, current_path
    workdir.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)

    def column(i: int, shift: float) -> Any:
        if i % 5 == 3:
            return np.round(rng.normal(shift, 1.0, rows), 1)  # heavy ties
        if i % 5 == 4:
            return rng.lognormal(0.0 + shift, 0.5, rows)
        return rng.normal(shift, 1.0, rows)

    names = [f"f{i:02d}" for i in range(features)]
    reference = pa.table({name: column(i, 0.0) for i, name in enumerate(names)})
    pq.write_table(reference, reference_path)
    del reference
    current = pa.table(
        {name: column(i, 0.25 if i % SHIFTED_EVERY == 1 else 0.0) for i, name in enumerate(names)}
    )
    pq.write_table(current, current_path)
    return reference_path, current_path


# --- workers: each runs in its own process and prints one JSON line ---


def _measure(read: Any, compute: Any, runs: int, after: Any = None) -> dict[str, Any]:
    """``runs`` times: read the inputs, reset the memory peak, compute, then (untimed here)
    ``after(*inputs)``. Returns the timings, the peak resident set during compute, the input
    size and the last run's result."""
    base_kib = _rss_kib("VmRSS")
    reads: list[float] = []
    computes: list[float] = []
    cpus: list[float] = []
    peak_kib = 0
    read_kib = 0
    after_read_kib = 0
    input_bytes = 0
    result: Any = None

    def one_run() -> Any:
        nonlocal peak_kib, input_bytes, read_kib, after_read_kib
        read_s, (inputs, size) = _timed(read)
        input_bytes = size
        if not reads:
            after_read_kib = _rss_kib("VmRSS")
        _reset_peak()
        cpu_start = time.process_time()
        compute_s, output = _timed(lambda: compute(*inputs))
        cpus.append(time.process_time() - cpu_start)
        if not reads:  # memory from the first run: a fresh process, nothing pooled yet
            read_kib = _rss_kib("VmRSS")
            peak_kib = _rss_kib("VmHWM")
        reads.append(read_s)
        computes.append(compute_s)
        if after is not None:
            after(*inputs)
        return output

    for _ in range(runs):
        result = None  # drop the previous run's result before reading again
        result = one_run()
    return {
        "read_s": reads,
        "compute_s": computes,
        "compute_cpu_s": cpus,
        "base_rss_kib": base_kib,
        "peak_rss_kib": peak_kib,
        "rss_after_read_kib": after_read_kib,
        "rss_after_compute_kib": read_kib,
        "input_bytes": input_bytes,
        "result": result,
    }


def _read_arrow(reference_path: str, current_path: str) -> tuple[tuple[Any, Any], int]:
    import pyarrow.parquet as pq

    reference = pq.read_table(reference_path)
    current = pq.read_table(current_path)
    return (reference, current), reference.nbytes + current.nbytes


def worker_sluice(reference_path: str, current_path: str, runs: int) -> dict[str, Any]:
    import numpy as np
    import pyarrow as pa

    from server.monitoring.baseline import BaselineOptions, build_baseline
    from server.monitoring.columns import read_table
    from server.monitoring.drift import DriftRule
    from server.monitoring.report import compare

    options = BaselineOptions(threads=os.cpu_count() or 1)
    rule = DriftRule()
    tiny = pa.table({"x": np.arange(64.0), "y": np.arange(64.0) % 7})
    compare(tiny, tiny, rule, options)  # load compiled kernels from numba's cache
    build_baseline(tiny, options)
    builds: list[float] = []
    from_baseline: list[float] = []

    def from_saved_baseline(reference: Any, current: Any) -> None:
        build_s, baseline = _timed(lambda: build_baseline(reference, options))
        compare_s, _ = _timed(lambda: compare(baseline, current, rule, options))
        builds.append(build_s)
        from_baseline.append(compare_s)

    def read() -> tuple[tuple[Any, Any], int]:
        reference = read_table(reference_path)
        current = read_table(current_path)
        return (reference, current), reference.nbytes + current.nbytes

    measured = _measure(
        read,
        lambda reference, current: compare(reference, current, rule, options),
        runs,
        after=from_saved_baseline,
    )
    report = measured.pop("result")
    measured["statistics"] = {
        name: {key: result.statistics.get(key) for key in ("ks", "wasserstein_normed", "psi", "js")}
        | {"drifted": result.drifted}
        for name, result in report.features.items()
    }
    measured["baseline_build_s"] = builds
    measured["compute_from_baseline_s"] = from_baseline
    measured["threads"] = options.threads
    return measured


def worker_scipy(reference_path: str, current_path: str, runs: int) -> dict[str, Any]:
    import numpy as np
    from scipy.spatial.distance import jensenshannon
    from scipy.stats import ks_2samp, wasserstein_distance

    deciles = np.arange(1, 10) / 10

    def psi(p: Any, q: Any) -> float:
        p = np.where(p == 0, 1e-4, p)
        q = np.where(q == 0, 1e-4, q)
        return float(np.sum((q - p) * np.log(q / p)))

    def compute(reference: Any, current: Any) -> dict[str, Any]:
        out = {}
        for name in reference.column_names:
            ref = reference.column(name).to_numpy()
            cur = current.column(name).to_numpy()
            edges = np.quantile(ref, deciles)
            p = np.bincount(np.searchsorted(edges, ref, side="right"), minlength=10) / ref.size
            q = np.bincount(np.searchsorted(edges, cur, side="right"), minlength=10) / cur.size
            ks = ks_2samp(ref, cur)
            out[name] = {
                "ks": float(ks.statistic),
                "ks_p_value": float(ks.pvalue),
                "wasserstein_normed": float(wasserstein_distance(ref, cur) / ref.std()),
                "psi": psi(p, q),
                "js": float(jensenshannon(p, q, base=2)),
            }
        return out

    measured = _measure(lambda: _read_arrow(reference_path, current_path), compute, runs)
    measured["statistics"] = measured.pop("result")
    return measured


def worker_evidently(reference_path: str, current_path: str, runs: int) -> dict[str, Any]:
    import evidently
    import pandas as pd
    from evidently import Report
    from evidently.presets import DataDriftPreset

    def read() -> tuple[tuple[Any, Any], int]:
        reference = pd.read_parquet(reference_path)
        current = pd.read_parquet(current_path)
        size = int(reference.memory_usage().sum() + current.memory_usage().sum())
        return (reference, current), size

    def compute(reference: Any, current: Any) -> Any:
        return Report([DataDriftPreset()]).run(current, reference)

    measured = _measure(read, compute, runs)
    stats: dict[str, Any] = {}
    for metric in measured.pop("result").dict()["metrics"]:
        config = metric["config"]
        if config.get("type", "").endswith("ValueDrift"):
            value = float(metric["value"])
            stats[config["column"]] = {
                "method": config.get("method"),
                "value": value,
                "drifted": bool(value >= config.get("threshold", 0.1)),
            }
    measured["statistics"] = stats
    measured["version"] = evidently.__version__
    return measured


WORKERS = {"sluice": worker_sluice, "scipy": worker_scipy, "evidently": worker_evidently}


# --- driver ---


def ensure_evidently_venv() -> Path:
    python = EVIDENTLY_VENV / "bin" / "python"
    if not python.exists():
        subprocess.run([sys.executable, "-m", "venv", str(EVIDENTLY_VENV)], check=True)
        subprocess.run(
            [str(python), "-m", "pip", "install", "-q", *EVIDENTLY_REQUIREMENTS], check=True
        )
    return python


def run_worker(python: str, system: str, paths: tuple[Path, Path], runs: int) -> dict[str, Any]:
    command = [
        python,
        str(Path(__file__).resolve()),
        "--worker",
        system,
        "--reference",
        str(paths[0]),
        "--current",
        str(paths[1]),
        "--runs",
        str(runs),
    ]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    done = subprocess.run(command, check=True, capture_output=True, text=True, cwd=ROOT, env=env)
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def summarize(system: dict[str, Any]) -> dict[str, float]:
    compute = statistics.median(system["compute_s"])
    read = statistics.median(system["read_s"])
    peak_mib = (system["peak_rss_kib"] - system["base_rss_kib"]) / 1024
    return {
        "compute_s": compute,
        "compute_cpu_s": statistics.median(system["compute_cpu_s"]),
        "read_s": read,
        "end_to_end_s": compute + read,
        "peak_above_start_mib": peak_mib,
        "peak_over_input": peak_mib * 1024 * 1024 / system["input_bytes"],
    }


def cross_check(results: dict[str, Any]) -> dict[str, Any]:
    """Largest differences between Sluice's statistics and each peer's, per statistic."""
    sluice = results["sluice"]["statistics"]
    checks: dict[str, Any] = {}
    if "scipy" in results:
        scipy_stats = results["scipy"]["statistics"]
        checks["scipy_max_abs_diff"] = {
            key: max(abs(sluice[f][key] - scipy_stats[f][key]) for f in sluice)
            for key in ("ks", "wasserstein_normed", "psi", "js")
        }
    if "evidently" in results:
        peer = results["evidently"]["statistics"]
        shared = [f for f in sluice if f in peer]
        checks["evidently_method"] = sorted({peer[f]["method"] for f in shared})
        checks["evidently_wasserstein_normed_max_rel_diff"] = max(
            abs(sluice[f]["wasserstein_normed"] - peer[f]["value"]) / max(peer[f]["value"], 1e-12)
            for f in shared
        )
        checks["evidently_same_verdicts"] = all(
            sluice[f]["drifted"] == peer[f]["drifted"] for f in shared
        )
    return checks


def markdown(summary: dict[str, Any]) -> str:
    rows = summary["systems"]
    lines = [
        f"# Drift statistics benchmark, {summary['date']}",
        "",
        f"{summary['rows']:,} reference x {summary['rows']:,} current rows x "
        f"{summary['features']} float64 features; {summary['cpu_count']} cores "
        f"({summary['cpu']}); medians of {summary['runs']['sluice']} Sluice runs, "
        f"{summary['runs']['peers']} per peer. 1-minute load average "
        f"{summary['load_average_before'][0]:.1f} before, {summary['load_average_after'][0]:.1f} "
        "after (other work shared the machine when it exceeds the core count).",
        "",
        "| system | compute s | compute CPU s | read s | end to end s | peak above start MiB "
        "| peak / input |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for name, row in rows.items():
        lines.append(
            f"| {name} | {row['compute_s']:.3f} | {row['compute_cpu_s']:.3f} | "
            f"{row['read_s']:.3f} | "
            f"{row['end_to_end_s']:.3f} | {row['peak_above_start_mib']:.0f} | "
            f"{row['peak_over_input']:.2f} |"
        )
    lines += ["", "| ratio (peer / Sluice) | compute | end to end |", "| --- | ---: | ---: |"]
    for name, ratio in summary["ratios"].items():
        lines.append(f"| {name} | {ratio['compute']:.1f}x | {ratio['end_to_end']:.1f}x |")
    lines += [
        "",
        f"Sluice from a saved baseline (reference pre-sorted): "
        f"{summary['sluice_from_baseline_s']:.3f} s compute; building that baseline "
        f"{summary['sluice_baseline_build_s']:.3f} s.",
        "",
        "Cross-check: `" + json.dumps(summary["cross_check"]) + "`",
        "",
    ]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--worker", choices=sorted(WORKERS))
    parser.add_argument("--reference")
    parser.add_argument("--current")
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--features", type=int, default=20)
    parser.add_argument("--runs", type=int, default=5, help="Sluice runs (median reported)")
    parser.add_argument("--peer-runs", type=int, default=1, help="scipy and Evidently runs")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--systems", default="sluice,scipy,evidently", help="comma-separated")
    parser.add_argument("--workdir", type=Path, default=ROOT / "benchmarks" / ".work" / "drift")
    parser.add_argument("--results", type=Path, default=ROOT / "benchmarks" / "results")
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(WORKERS[args.worker](args.reference, args.current, args.runs)))
        return

    paths = make_data(args.workdir, args.rows, args.features, args.seed)
    load_before = os.getloadavg()
    results: dict[str, Any] = {}
    chosen = set(args.systems.split(","))
    results["sluice"] = run_worker(sys.executable, "sluice", paths, args.runs)
    if "scipy" in chosen:
        results["scipy"] = run_worker(sys.executable, "scipy", paths, args.peer_runs)
    if "evidently" in chosen:
        python = ensure_evidently_venv()
        results["evidently"] = run_worker(str(python), "evidently", paths, args.peer_runs)
    systems = {name: summarize(result) for name, result in results.items()}
    sluice = systems["sluice"]
    date = datetime.date.today().isoformat()
    summary = {
        "date": date,
        "rows": args.rows,
        "features": args.features,
        "runs": {"sluice": args.runs, "peers": args.peer_runs},
        "cpu_count": os.cpu_count(),
        # The machine is shared: a load average above the core count means other work ran.
        "load_average_before": load_before,
        "load_average_after": os.getloadavg(),
        "cpu": platform.processor() or platform.machine(),
        "python": platform.python_version(),
        "systems": systems,
        "ratios": {
            name: {
                "compute": row["compute_s"] / sluice["compute_s"],
                "end_to_end": row["end_to_end_s"] / sluice["end_to_end_s"],
            }
            for name, row in systems.items()
            if name != "sluice"
        },
        "sluice_from_baseline_s": statistics.median(results["sluice"]["compute_from_baseline_s"]),
        "sluice_baseline_build_s": statistics.median(results["sluice"]["baseline_build_s"]),
        "evidently_version": results.get("evidently", {}).get("version"),
        "cross_check": cross_check(results),
        "raw": {
            name: {k: v for k, v in r.items() if k != "statistics"} for name, r in results.items()
        },
    }
    args.results.mkdir(parents=True, exist_ok=True)
    (args.results / f"drift-{date}.json").write_text(json.dumps(summary, indent=2) + "\n")
    (args.results / f"drift-{date}.md").write_text(markdown(summary))
    print(markdown(summary))


if __name__ == "__main__":
    main()
