"""The profiler's quality target: the tuned config against an exhaustive grid, and the defaults.

    python -m benchmarks.profile_bench            # ~8 minutes on 2 cores
    python -m benchmarks.profile_bench --quick    # one case, for a smoke test

For each case (the reference MLP and a smaller MLP; 1-row and 64-row requests):

1. every configuration of the grid runs as a real trial (a fresh ``sluice serve``, warm-up,
   windows until two agree within 10 %), in a shuffled order so the machine's drift spreads
   over the grid instead of favouring its first or last configurations;
2. the profiler's search (``server.profiler.search.Search``) is replayed over those trials with
   ``--max-trials`` = 25 % of the grid: for each configuration it asks for, it gets the grid's
   trial of it. The tuned config and the grid's best are then the same measurements, so their
   ratio measures the search, not the noise between two runs of one configuration;
3. the server's defaults (``sluice serve MODEL``, no flags), ONNX Runtime's own defaults (one
   instance, ``intra_op_threads = 0``: all cores, spinning on), and MLServer 1.7 with its
   defaults (one parallel worker, adaptive batching off; the peers' ONNX runtime) run as trials
   too. MLServer speaks JSON only (no binary tensor extension), so it is compared with the
   tuned config over JSON.

Writes ``benchmarks/results/profile-<stamp>.json`` and ``.md`` with the load average.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import time
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import onnx

from benchmarks.models import mlp, save
from benchmarks.peers import servers
from server.profiler.objective import Objective, choose
from server.profiler.search import Search
from server.profiler.space import Knobs, Space
from server.profiler.trial import Load, Trial, measure, run_trial, summarise

RESULTS = Path(__file__).parent / "results"
SMALL_SIZES = (64, 256, 256, 4)
# p99 objectives: a few times the single-request latency on 2 cores, so that the SLO binds
# the configurations that queue (long batching delays, spinning threads starving the loop).
SLO_MS = {1: 10.0, 64: 60.0}


def bench_space(rows: int, cores: int) -> Space:
    return Space(
        cores=cores,
        instances=(1, 2),
        intra_op_threads=(1, 2),
        workers=(1, 2),
        allow_spinning=(False, True),
        memory_arena=(True,),
        max_batch_size=(rows * 8,),
        max_queue_delay_us=(0, 500, 2000),
    )


def _tensor(value: onnx.ValueInfoProto) -> dict[str, Any]:
    dims = [d.dim_value or -1 for d in value.type.tensor_type.shape.dim]
    return {"name": value.name, "datatype": "FP32", "shape": dims}


def mlserver_trial(model: Path, load: Load, index: int) -> Trial:
    server = servers.mlserver(1, max_batch_size=0, max_batch_time_s=0.0)
    assert server.cwd is not None
    # servers.mlserver copies the reference MLP; the case's model replaces it.
    (server.cwd / servers.MODEL / "model.onnx").write_bytes(model.read_bytes())
    # The load generator reads the inputs from the model's metadata; MLServer declares only
    # what model-settings.json says.
    settings_path = server.cwd / servers.MODEL / "model-settings.json"
    settings = json.loads(settings_path.read_text())
    proto = onnx.load(str(model), load_external_data=False)
    settings["inputs"] = [_tensor(v) for v in proto.graph.input]
    settings["outputs"] = [_tensor(v) for v in proto.graph.output]
    settings_path.write_text(json.dumps(settings))
    json_load = replace(load, binary=False)
    with servers.running(server):
        windows, _ = measure(f"{servers.HOST}:{server.http_port}", servers.MODEL, json_load)
    return summarise(index, None, json_load, windows, 0.0, 0.0)


def head_to_head(
    model: Path, load: Load, contenders: dict[str, Knobs | None], rounds: int
) -> dict[str, list[Trial]]:
    """Each contender once per round, the order reversed every other round (ABBA): a single
    trial of each on a shared machine swings by more than the gaps being measured."""
    runs: dict[str, list[Trial]] = {k: [] for k in contenders}
    names = list(contenders)
    for r in range(rounds):
        for k in names if r % 2 == 0 else names[::-1]:
            runs[k].append(run_trial(model, contenders[k], load, index=-1))
    return runs


def run_case(name: str, model: Path, rows: int, args: argparse.Namespace) -> dict[str, Any]:
    cores = len(os.sched_getaffinity(0))
    space = bench_space(rows, cores)
    load = Load(rows=rows, concurrency=args.concurrency, window_s=args.window, max_windows=4)
    objective = Objective(slo_p99_ms=SLO_MS[rows])
    grid = space.grid()
    order = list(range(len(grid)))
    random.Random(rows).shuffle(order)
    by_knobs: dict[Knobs, Trial] = {}
    started = time.monotonic()
    for n, i in enumerate(order, 1):
        t = run_trial(model, grid[i], load, index=i + 1)
        by_knobs[grid[i]] = t
        print(f"  [{n}/{len(grid)}] {t.label}: {t.rows_per_s:,.0f} rows/s p99 {t.p99_ms:.2f} ms",
              flush=True)  # fmt: skip
    grid_s = time.monotonic() - started
    budget = len(grid) // 4
    search = Search(space, objective, budget)
    replayed = search.run(lambda knobs, _: by_knobs[knobs])
    tuned = choose(replayed, objective)
    best = choose(list(by_knobs.values()), objective)
    contenders: dict[str, Knobs | None] = {
        "best": best.trial.knobs,
        "tuned": tuned.trial.knobs,
        "defaults": None,
        "ort_defaults": Knobs(intra_op_threads=0, allow_spinning=True),
    }
    runs = head_to_head(model, load, contenders, args.rounds)
    median = {k: statistics.median(t.rows_per_s for t in v) for k, v in runs.items()}
    p99 = {k: statistics.median(t.p99_ms for t in v) for k, v in runs.items()}
    json_tuned = run_trial(model, tuned.trial.knobs, replace(load, binary=False), index=-2)
    peer: Trial | None = None
    if not args.no_mlserver:
        peer = mlserver_trial(model, load, index=-3)

    def over_best(k: str) -> float:
        return round(median[k] / median["best"], 3)

    return {
        "case": f"{name} {rows}-row",
        "model": name,
        "rows": rows,
        "concurrency": args.concurrency,
        "slo_p99_ms": SLO_MS[rows],
        "grid_trials": len(grid),
        "grid_seconds": round(grid_s, 1),
        "search_trials": len(replayed),
        "search_stopped": search.stopped,
        "trial_fraction": round(len(replayed) / len(grid), 3),
        "grid_best": best.trial.to_dict(),
        "grid_best_met_slo": best.met,
        "tuned": tuned.trial.to_dict(),
        "tuned_rule": tuned.rule,
        "tuned_over_best_in_grid": round(tuned.trial.rows_per_s / best.trial.rows_per_s, 3),
        "rounds": args.rounds,
        "median_rows_per_s": {k: round(v, 1) for k, v in median.items()},
        "median_p99_ms": {k: round(v, 3) for k, v in p99.items()},
        "meets_slo": {k: v <= SLO_MS[rows] for k, v in p99.items()},
        "tuned_over_best": over_best("tuned"),
        "defaults_over_best": over_best("defaults"),
        "ort_defaults_over_best": over_best("ort_defaults"),
        "head_to_head": {k: [t.to_dict() for t in v] for k, v in runs.items()},
        "tuned_json": json_tuned.to_dict(),
        "mlserver_json": peer.to_dict() if peer is not None else None,
        "mlserver_over_tuned_json": (
            round(peer.rows_per_s / json_tuned.rows_per_s, 3) if peer is not None else None
        ),
        "grid": [t.to_dict() for t in by_knobs.values()],
    }


def markdown(doc: dict[str, Any]) -> str:
    lines = [
        f"# sluice profile quality, {doc['stamp']}",
        "",
        f"{doc['cores']} cores, load average before {doc['loadavg_before']}, after "
        f"{doc['loadavg_after']}; window {doc['window_s']} s, concurrency {doc['concurrency']}, "
        f"binary HTTP unless said; {doc['seconds']:.0f} s in all.",
        "",
        "| case | SLO p99 | grid best (single trial) | tuned / best in grid | trials (of grid) "
        "| tuned / best, head to head | defaults / best | ORT defaults / best "
        "| MLServer / tuned (JSON) |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for c in doc["cases"]:
        mark = {k: "" if ok else " (misses SLO)" for k, ok in c["meets_slo"].items()}

        ml = c["mlserver_over_tuned_json"]
        lines.append(
            f"| {c['case']} | {c['slo_p99_ms']:g} ms | {c['grid_best']['rows_per_s']:,.0f} "
            f"rows/s ({c['grid_best']['label']}) | {c['tuned_over_best_in_grid']:.3f} "
            f"({c['tuned']['label']}) | {c['search_trials']} of {c['grid_trials']} "
            f"| {c['tuned_over_best']:.3f}{mark['tuned']} "
            f"| {c['defaults_over_best']:.3f}{mark['defaults']} "
            f"| {c['ort_defaults_over_best']:.3f}{mark['ort_defaults']} "
            f"| {'-' if ml is None else f'{ml:.3f}'} |"
        )
    lines += [
        "",
        "Head to head: the medians of "
        f"{doc['cases'][0]['rounds']} ABBA rounds of fresh trials of each configuration.",
    ]
    return "\n".join(lines) + "\n"


def main(argv: Sequence[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--window", type=float, default=0.5, help="seconds per window")
    p.add_argument("--concurrency", type=int, default=8)
    p.add_argument("--quick", action="store_true", help="the small model, 1-row, only")
    p.add_argument("--rounds", type=int, default=2, help="head-to-head rounds")
    p.add_argument("--no-mlserver", action="store_true")
    p.add_argument("--out", type=Path, default=RESULTS)
    args = p.parse_args(argv)
    work = servers.WORK
    work.mkdir(parents=True, exist_ok=True)
    reference = save(mlp(), work / "profile-mlp.onnx")
    small = save(mlp(SMALL_SIZES, seed=1), work / "profile-small.onnx")
    cases = [("small", small, 1)] if args.quick else [
        ("mlp", reference, 1), ("mlp", reference, 64), ("small", small, 1), ("small", small, 64)
    ]  # fmt: skip
    before = [round(x, 2) for x in os.getloadavg()]
    started = time.monotonic()
    results = []
    for name, path, rows in cases:
        print(f"{name} {rows}-row", flush=True)
        results.append(run_case(name, path, rows, args))
    stamp = time.strftime("%Y%m%d-%H%M", time.gmtime())
    doc = {
        "stamp": stamp,
        "cores": len(os.sched_getaffinity(0)),
        "loadavg_before": before,
        "loadavg_after": [round(x, 2) for x in os.getloadavg()],
        "window_s": args.window,
        "concurrency": args.concurrency,
        "seconds": time.monotonic() - started,
        "cases": results,
    }
    args.out.mkdir(parents=True, exist_ok=True)
    suffix = "-quick" if args.quick else ""
    (args.out / f"profile-{stamp}{suffix}.json").write_text(json.dumps(doc, indent=2) + "\n")
    text = markdown(doc)
    (args.out / f"profile-{stamp}{suffix}.md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()
