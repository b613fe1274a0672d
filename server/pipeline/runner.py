"""Run a pipeline: steps in graph order, ``jobs`` at a time, each reused when its key is cached.

Per step: digest its inputs (upstream outputs are published by then), compute its key, and
reuse the cached result only if every recorded output still exists with its recorded digest.
Otherwise lease the key (a concurrent run of the same step makes this one wait, then reuse),
run the kind into staging paths, publish, record. A failed step stops its descendants; the
other branches finish. A rerun resumes: what finished is a cache hit, the failed step runs.
"""

from __future__ import annotations

import time
import traceback
import uuid
from collections.abc import Mapping
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

from server.errors import SluiceError
from server.pipeline import outputs as staging
from server.pipeline.graph import Graph
from server.pipeline.hashing import Hasher, digest_uncached
from server.pipeline.key import key_of, key_parts
from server.pipeline.kinds import KINDS, StepContext, StepKind, check_step
from server.pipeline.lease import leases
from server.pipeline.progress import Progress
from server.pipeline.records import STATE_DIR, Records, connect
from server.pipeline.spec import Pipeline, PipelineError, Step, load_pipeline


@dataclass(frozen=True, slots=True)
class RunOptions:
    params: Mapping[str, str] = field(default_factory=dict)
    force: tuple[str, ...] = ()
    from_step: str | None = None
    jobs: int = 1
    verify: bool = False
    check_repro: bool = False
    reuse_nondeterministic: bool = False

    def __post_init__(self) -> None:
        if self.jobs < 1:
            raise PipelineError(f"--jobs must be >= 1, got {self.jobs}")


def prepare(path: Path, params: Mapping[str, str]) -> tuple[Pipeline, Graph]:
    """Load and check everything: file, graph, kinds and their fields."""
    pipeline = load_pipeline(path, params)
    graph = Graph(pipeline)
    for step in pipeline.steps.values():
        kind = KINDS.get(step.kind)
        if kind is None:
            known = ", ".join(sorted(KINDS))
            raise PipelineError(f"{step.where('kind')}: unknown kind '{step.kind}' ({known})")
        check_step(step, kind)
    return pipeline, graph


def run_pipeline(path: Path, options: RunOptions, stream: TextIO | None = None) -> dict[str, Any]:
    """Run the pipeline at ``path``; returns the JSON summary (``status`` failed or succeeded)."""
    pipeline, graph = prepare(path, options.params)
    for name in (*options.force, *([options.from_step] if options.from_step else [])):
        if name not in pipeline.steps:
            raise PipelineError(f"--force/--from {name}: the pipeline has no step '{name}'")
    forced = set(options.force)
    if options.from_step is not None:
        forced |= {options.from_step} | graph.descendants([options.from_step])
    return _Run(pipeline, graph, options, forced, Progress(stream, len(pipeline.steps))).run()


class _Run:
    def __init__(
        self,
        pipeline: Pipeline,
        graph: Graph,
        options: RunOptions,
        forced: set[str],
        progress: Progress,
    ) -> None:
        self.pipeline = pipeline
        self.graph = graph
        self.options = options
        self.forced = forced
        self.progress = progress
        self.run_id = time.strftime("%Y%m%dT%H%M%S") + "-" + uuid.uuid4().hex[:6]
        self.state = pipeline.root / STATE_DIR
        self.records = Records(connect(pipeline.root))
        self.hasher_db = connect(pipeline.root)  # its own: memo writes interleave with records
        self.hasher = Hasher(self.hasher_db, options.verify)
        self.results: dict[str, dict[str, Any]] = {}

    def run(self) -> dict[str, Any]:
        started = time.monotonic()
        self.records.start_run(self.run_id, self.pipeline.path, dict(self.pipeline.params))
        status = "failed"
        try:
            self._schedule()
            ok = all(r["status"] == "succeeded" for r in self.results.values())
            status = "succeeded" if ok else "failed"
        except BaseException:
            status = "interrupted"
            raise
        finally:
            self.records.finish_run(self.run_id, status)
            self.records.db.close()
            self.hasher_db.close()
        summary = {
            "run_id": self.run_id,
            "pipeline": str(self.pipeline.path),
            "status": status,
            "seconds": round(time.monotonic() - started, 3),
            "steps": {name: self.results[name] for name in self.graph.order},
        }
        if self.options.check_repro:
            summary["not_reproducible"] = [
                n for n, r in self.results.items() if r.get("reproducible") is False
            ]
        return summary

    def _schedule(self) -> None:
        waiting = list(self.graph.order)
        running: dict[Future[dict[str, Any]], str] = {}
        with ThreadPoolExecutor(self.options.jobs) as pool:
            while waiting or running:
                for name in list(waiting):
                    parents = self.graph.parents[name]
                    if not parents <= self.results.keys():
                        continue
                    blocked = sorted(p for p in parents if self.results[p]["status"] != "succeeded")
                    if blocked:
                        waiting.remove(name)
                        self.results[name] = self._skipped(name, blocked)
                    elif len(running) < self.options.jobs:
                        waiting.remove(name)
                        running[pool.submit(self._step, self.pipeline.steps[name])] = name
                if not running:
                    continue
                done, _ = wait(running, return_when=FIRST_COMPLETED)
                for future in done:
                    self.results[running.pop(future)] = future.result()

    def _skipped(self, name: str, blocked: list[str]) -> dict[str, Any]:
        reason = f"not run: upstream step(s) {', '.join(blocked)} did not succeed"
        self.records.step(self.run_id, name, "skipped", error=reason)
        self.progress.line(name, "skipped", reason)
        return {"status": "skipped", "cache": None, "error": reason}

    def _step(self, step: Step) -> dict[str, Any]:
        kind = KINDS[step.kind]
        started = time.monotonic()
        try:
            parts = key_parts(step, kind, self.pipeline, self.hasher)
        except Exception as exc:  # an unreadable input or module fails this step, not the run
            message = (
                exc.message if isinstance(exc, SluiceError) else f"{type(exc).__name__}: {exc}"
            )
            return self._failed(step, started, None, None, f"step '{step.name}': {message}")
        key = key_of(parts)
        reusable = step.name not in self.forced and (
            step.deterministic or self.options.reuse_nondeterministic
        )
        if reusable and (hit := self._verified_hit(step, key)) is not None:
            return self._hit(step, key, parts, hit, started, waited=False)
        self.progress.line(step.name, "running", key[:12])
        try:
            with leases(
                self.state / "locks",
                key,
                list(step.outputs.values()),
                lambda: self.progress.line(step.name, "waiting", "another run holds this step"),
            ) as waited:
                if reusable and waited and (hit := self._verified_hit(step, key)) is not None:
                    return self._hit(step, key, parts, hit, started, waited=True)
                result = self._execute(step, kind, key)
                digests = {n: self.hasher.digest(p) for n, p in step.outputs.items()}
                self.records.remember(key, step.name, self.run_id, digests)
        except SluiceError as exc:
            return self._failed(step, started, key, parts, exc.message)
        except Exception as exc:  # a step's bug must fail that step only, with its trace kept
            trace = self._scratch(step) / "traceback.txt"
            trace.write_text(traceback.format_exc())
            message = f"step '{step.name}': {type(exc).__name__}: {exc} (traceback in {trace})"
            return self._failed(step, started, key, parts, message)
        seconds = round(time.monotonic() - started, 3)
        self.records.step(
            self.run_id, step.name, "succeeded", cache="miss", seconds=seconds, key=key,
            parts=parts, outputs=digests,
        )  # fmt: skip
        self.progress.line(step.name, "miss", f"{seconds:.2f}s")
        return {
            "status": "succeeded",
            "cache": "miss",
            "seconds": seconds,
            "key": key,
            "outputs": digests,
            "result": result,
        }

    def _execute(self, step: Step, kind: StepKind, key: str) -> dict[str, Any]:
        staged = staging.prepare(step.outputs, key, keep=kind.resumable)
        context = StepContext(
            step, self.pipeline, self.run_id, self._inputs(step), staged,
            self._scratch(step),
        )  # fmt: skip
        try:
            result = dict(kind.run(context))
            absent = staging.missing(staged)
            if absent:
                raise PipelineError(
                    f"step '{step.name}' did not write output(s) {', '.join(absent)} "
                    f"(it was given the path(s) {', '.join(str(staged[a]) for a in absent)})"
                )
        except BaseException:
            if not kind.resumable:  # a resumable kind continues from its partial output
                for path in staged.values():
                    staging.remove(path)
            raise
        staging.publish(staged, step.outputs)
        return result

    def _verified_hit(self, step: Step, key: str) -> dict[str, str] | None:
        """The cached digests, if every output still exists and matches them."""
        cached = self.records.cached(key)
        if cached is None or set(cached) != set(step.outputs):
            return None
        for name, path in step.outputs.items():
            try:
                if self.hasher.digest(path) != cached[name]:
                    return None
            except FileNotFoundError:
                return None
        return cached

    def _hit(
        self,
        step: Step,
        key: str,
        parts: dict[str, Any],
        digests: dict[str, str],
        started: float,
        waited: bool,
    ) -> dict[str, Any]:
        seconds = round(time.monotonic() - started, 3)
        body: dict[str, Any] = {
            "status": "succeeded",
            "cache": "hit",
            "seconds": seconds,
            "key": key,
            "outputs": digests,
            "waited": waited,
        }
        if self.options.check_repro:
            body["reproducible"] = self._reproduces(step, key, digests)
        self.records.step(
            self.run_id, step.name, "succeeded", cache="hit", seconds=seconds, key=key,
            parts=parts, outputs=digests,
        )  # fmt: skip
        note = "after waiting for another run" if waited else ""
        if body.get("reproducible") is False:
            note = "outputs differ on rerun: not reproducible"
        self.progress.line(step.name, "hit", note)
        return body

    def _reproduces(self, step: Step, key: str, digests: dict[str, str]) -> bool:
        kind = KINDS[step.kind]
        repro_key = "repro" + uuid.uuid4().hex
        staged = staging.prepare(step.outputs, repro_key, keep=False)
        try:
            context = StepContext(
                step, self.pipeline, self.run_id, self._inputs(step), staged,
                self._scratch(step),
            )  # fmt: skip
            kind.run(context)
            return all(
                staged[n].exists() and digest_uncached(staged[n]) == d for n, d in digests.items()
            )
        finally:
            for path in staged.values():
                staging.remove(path)

    def _failed(
        self,
        step: Step,
        started: float,
        key: str | None,
        parts: dict[str, Any] | None,
        message: str,
    ) -> dict[str, Any]:
        seconds = round(time.monotonic() - started, 3)
        self.records.step(
            self.run_id, step.name, "failed", cache="miss", seconds=seconds, key=key,
            parts=parts, error=message,
        )  # fmt: skip
        self.progress.line(step.name, "failed", message)
        return {"status": "failed", "cache": "miss", "seconds": seconds, "key": key,
                "error": message}  # fmt: skip

    def _inputs(self, step: Step) -> dict[str, Path]:
        return {name: ref.path for name, ref in step.inputs.items()}

    def _scratch(self, step: Step) -> Path:
        folder = self.state / "runs" / self.run_id / step.name
        folder.mkdir(parents=True, exist_ok=True)
        return folder
