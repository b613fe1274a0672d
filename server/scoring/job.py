"""A scoring job from start to summary: resolve, check everything, then hand to an engine.

Every mismatch between the data and the model is found here, before any output is written:
the mapping is planned from the first input's schema and every other input is checked
against it.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Protocol, TextIO

from server.engine.session import OrtSession
from server.errors import ConfigError
from server.resources import usable_cores
from server.scoring.inputs import InputFile, discover
from server.scoring.local_engine import LocalEngine, Pending
from server.scoring.manifest import JobIdentity, Manifest
from server.scoring.mapping import build_mapping
from server.scoring.model_ref import ModelRef, resolve_model
from server.scoring.options import ScoreOptions
from server.scoring.policy import ErrorPolicy
from server.scoring.progress import Progress, Summary, Tally
from server.scoring.scorer import Scorer
from server.scoring.threads import scoring_runtime


class Engine(Protocol):
    """Scores the pending inputs, recording each finished one in the manifest."""

    def run(
        self, pending: list[Pending], manifest: Manifest, policy: ErrorPolicy, progress: Progress
    ) -> Tally: ...


def score(options: ScoreOptions, stream: TextIO | None = None) -> Summary:
    """Run the job ``options`` describe and return its summary; ``stream`` gets the bar."""
    started = time.monotonic()
    model = resolve_model(options.model, options.repository, options.registry)
    files = discover(options.inputs)
    _check_output_location(options.output, options.inputs)
    runtime = scoring_runtime(model.runtime, options, usable_cores().count)
    session = OrtSession(model.path, runtime, model.name)
    mapping = build_mapping(files[0].schema(), session.inputs, options.features, options.keep)
    for file in files[1:]:
        mapping.check(file.schema(), str(file.path))
    scorer = Scorer(session, mapping)
    identity = JobIdentity(
        model_sha256=model.sha256,
        inputs=[{"path": str(f.path), "size": f.size} for f in files],
        features=[c for s in mapping.sources for c in s.columns],
        keep=list(mapping.keep),
    )
    manifest = Manifest(options.output, identity, options.overwrite)
    try:
        names = output_names(files)
        pending = [
            Pending(f, names[f.path]) for f in files if not manifest.is_finished(str(f.path))
        ]
        earlier = sum(e["rows_skipped"] for e in manifest.finished.values())
        policy = ErrorPolicy(options.on_error, options.max_errors, earlier)
        progress = Progress(sum(p.file.count_rows() for p in pending), stream, options.progress)
        engine: Engine
        if options.engine == "ray":
            try:
                from server.scoring.ray_engine import RayEngine  # optional dependency
            except ImportError as exc:
                raise ConfigError(
                    f"--engine ray needs Ray Data ({exc}); install the extra: sluice[ray]"
                ) from exc
            engine = RayEngine(model, runtime, mapping, options)
        else:
            if runtime.warmup:
                session.warmup(min(options.batch_size, 64))
            engine = LocalEngine(scorer, runtime.instances, options.batch_size, options.read_ahead)
        tally = engine.run(pending, manifest, policy, progress)
        progress.close()
    finally:
        manifest.close()
    return _summary(options, model, files, tally, time.monotonic() - started)


def output_names(files: list[InputFile]) -> dict[Path, str]:
    """One output name per input: its stem, with ``-1``, ``-2``… where stems collide."""
    names: dict[Path, str] = {}
    used: set[str] = set()
    for file in files:
        stem, n = file.path.stem, 0
        name = f"{stem}.parquet"
        while name in used:
            n += 1
            name = f"{stem}-{n}.parquet"
        used.add(name)
        names[file.path] = name
    return names


def _check_output_location(output: Path, inputs: tuple[Path, ...]) -> None:
    target = output.resolve()
    for path in inputs:
        source = path.resolve()
        if target == source or (source.is_dir() and target.is_relative_to(source)):
            raise ConfigError(
                f"--output {output} is inside --input {path}: a rerun would read its own output"
            )


def _summary(
    options: ScoreOptions, model: ModelRef, files: list[InputFile], tally: Tally, seconds: float
) -> Summary:
    return Summary(
        output=str(options.output),
        model=model.name,
        model_version=model.version,
        model_sha256=model.sha256,
        engine=options.engine,
        files=len(files),
        files_scored=tally.files,
        files_resumed=len(files) - tally.files,
        rows_read=tally.rows_read,
        rows_scored=tally.rows_scored,
        rows_skipped=tally.rows_skipped,
        seconds=round(seconds, 3),
        rows_per_second=round(tally.rows_scored / seconds, 1) if seconds > 0 else 0.0,
        copied_bytes=tally.copied_bytes,
    )
