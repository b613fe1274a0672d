"""The HTTP serving benchmark's report: the serving-core issue's ratios and the Markdown."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from benchmarks.loadgen import profile
from benchmarks.loadgen.harness import point_from_json
from benchmarks.loadgen.stats import Point, at, best, ratio, table
from benchmarks.peers.ort_limit import CONFIGS

JSON1, JSON64, BIN64 = "json-1", "json-64", "binary-64"


def ratios(points: Sequence[Point], limit: dict[str, Any]) -> dict[str, Any]:
    """The issue's ratios. The binary-64 limit is given two ways: ORT's default options (the
    issue's definition) and the best raw configuration measured (the stricter bar)."""
    limit_rows = limit.get("rows_per_s")
    default_rows = limit.get("ort_default", {}).get("rows_per_s")

    def best_of(prefix: str, payload: str) -> Point | None:
        names = {p.server for p in points if p.server.startswith(prefix)}
        cands = [b for n in names if (b := best(points, n, payload)) is not None]
        return max(cands, key=lambda p: p.rps, default=None)

    sluice, plain, mls = (
        best_of("sluice", JSON1),
        best_of("plain", JSON1),
        best_of("mlserver", JSON1),
    )
    sluice64 = at(points, sluice.server, JSON1, 64) if sluice else None
    plain64 = at(points, plain.server, JSON1, 64) if plain else None
    binary = best_of("sluice", BIN64)
    out: dict[str, Any] = {
        "best": {
            name: p
            and {"server": p.server, "concurrency": p.concurrency, "rps": p.rps, "p99_ms": p.p99_ms}
            for name, p in (("sluice", sluice), ("plain", plain), ("mlserver", mls))
        },
        "sluice_over_mlserver": ratio(sluice and sluice.rps, mls and mls.rps),
        "sluice_over_plain": ratio(sluice and sluice.rps, plain and plain.rps),
        "p99_at_64_ms": {
            "sluice": sluice64 and sluice64.p99_ms,
            "plain": plain64 and plain64.p99_ms,
        },
        "binary64_rows_per_s": binary and binary.rows_per_s,
        "limit_rows_per_s": limit_rows,
        "binary64_over_limit": ratio(binary and binary.rows_per_s, limit_rows),
        "ort_default_rows_per_s": default_rows,
        "binary64_over_ort_default": ratio(binary and binary.rows_per_s, default_rows),
    }
    return out


def verdicts(r: dict[str, Any]) -> list[str]:
    def fmt(x: float | None, spec: str = ".2f") -> str:
        return "n/a" if x is None else format(x, spec)

    p99 = r["p99_at_64_ms"]
    p99_ok = None if None in (p99["sluice"], p99["plain"]) else p99["sluice"] <= p99["plain"]
    rows = [
        (
            "best req/s Sluice / MLServer",
            fmt(r["sluice_over_mlserver"]),
            ">= 5",
            r["sluice_over_mlserver"] and r["sluice_over_mlserver"] >= 5,
        ),
        (
            "best req/s Sluice / plain",
            fmt(r["sluice_over_plain"]),
            ">= 2",
            r["sluice_over_plain"] and r["sluice_over_plain"] >= 2,
        ),
        (
            "p99 at c=64, Sluice vs plain (ms)",
            f"{fmt(p99['sluice'])} vs {fmt(p99['plain'])}",
            "<= plain",
            p99_ok,
        ),
        (
            "binary 64-row rows/s / raw ORT batch 64, default options",
            fmt(r.get("binary64_over_ort_default")),
            ">= 0.80",
            r.get("binary64_over_ort_default") and r["binary64_over_ort_default"] >= 0.8,
        ),
        (
            "binary 64-row rows/s / raw ORT batch 64, best configuration",
            fmt(r["binary64_over_limit"]),
            ">= 0.80",
            r["binary64_over_limit"] and r["binary64_over_limit"] >= 0.8,
        ),
    ]
    lines = ["| target | reached | wanted | |", "| --- | ---: | ---: | --- |"]
    for name, got, want, ok in rows:
        mark = "n/a" if ok is None else ("met" if ok else "MISSED")
        lines.append(f"| {name} | {got} | {want} | {mark} |")
    return lines


def markdown(result: dict[str, Any]) -> str:
    env, args = result["environment"], result["args"]
    mode = (
        "servers up together, taking turns each round"
        if args["interleave"]
        else ("servers one at a time")
    )
    lines = [
        f"# Serving benchmark (HTTP) — {result['started']}",
        "",
        f"Machine: {env['cpu_count']} cores (`os.cpu_count()`), shared and noisy; load average "
        f"at start {', '.join(f'{x:.2f}' for x in env['loadavg_start'])}, at end "
        f"{', '.join(f'{x:.2f}' for x in result['loadavg_end'])}. {env['platform']}, Python "
        f"{env['python']}, ONNX Runtime {env['onnxruntime']}, {env['wrk']}; commit "
        f"`{env['commit']}` ({env['branch']}).",
        "",
        f"Each point: median of {args['repeats']} x {args['duration']:g} s wrk runs "
        f"({args['threads']} wrk thread(s); {mode}); latency in ms from wrk. "
        "Model: MLP 256 -> 1024 -> 1024 -> 512 -> 8 FP32; every server runs ORT with "
        "1 intra-op thread, spinning off.",
        "",
    ]
    if result.get("ceiling"):
        c = result["ceiling"]
        lines.append(
            f"Load generator ceiling: wrk reaches {c['rps']:,.0f} req/s against a canned-response "
            f"endpoint (1-row JSON body, c={c['concurrency']}), so no point below is client-bound."
        )
    if result.get("limit"):
        lim = result["limit"]
        configs = ", ".join(
            f"{label.removeprefix('ort_').replace('_', ' ')} {lim[label]['rows_per_s']:,.0f}"
            for label, _, _ in CONFIGS
            if label in lim
        )
        lines.append(
            f"Limit: raw in-process ORT at batch 64, rows/s: {configs}; the ratio uses the best "
            f"({lim['rows_per_s']:,.0f} rows/s)."
        )
    lines += ["", "## Points", "", table([point_from_json(p) for p in result["points"]]), ""]
    lines += ["## Ratios", "", *verdicts(result["ratios"]), ""]
    if result.get("failures"):
        lines += ["## Failures", ""] + [f"- {f}" for f in result["failures"]] + [""]
    for summary in result.get("profiles", []):
        lines += [f"## Profile: {summary['server']} at c=64", "", profile.markdown(summary), ""]
    return "\n".join(lines)
