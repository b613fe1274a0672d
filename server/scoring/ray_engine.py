"""The Ray Data engine: the same scorer as a ``map_batches`` actor pool, one session per actor.

Ray reads the pending Parquet inputs and writes the scored rows into a hidden staging folder;
only when the whole dataset is written are the files renamed into the output directory and
the inputs recorded in the manifest, so a killed Ray job leaves nothing visible and a rerun
scores its inputs again, once. Rows set aside under ``--on-error skip`` are written by the
actors into the staging folder too (Ray does not give a row's position in its file, so their
``row`` is null).

On a multi-node cluster (``RAY_ADDRESS``), the output directory must be on storage every
node sees. ``ray[data]`` is an optional dependency, imported only here.
"""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.parquet as pq
import ray
import ray.data

from server.engine.session import OrtSession
from server.errors import ConfigError, InvalidInput, ModelFailed, SluiceError
from server.scoring.local_engine import Pending
from server.scoring.manifest import ERRORS_DIR, STAGING_DIR, Finished, Manifest
from server.scoring.mapping import Mapping
from server.scoring.model_ref import ModelRef
from server.scoring.options import OnError, ScoreOptions
from server.scoring.policy import ErrorPolicy, RowFailed
from server.scoring.progress import Progress, Tally
from server.scoring.scorer import ROW_COLUMN, Scorer
from server.scoring.writer import fsync_dir, replace_durably
from server.settings import RuntimeConfig

# An actor asks Ray for half a CPU: with whole CPUs, a 2-CPU machine runs two actors and has
# no slot left for the read tasks, and the pipeline stalls. ONNX Runtime's own threads are
# set by ``intra_op_threads``, not by this reservation.
ACTOR_CPUS = 0.5


class _ScoreActor:
    """One ONNX Runtime session per Ray actor; called with pyarrow tables."""

    def __init__(
        self,
        model: ModelRef,
        runtime: RuntimeConfig,
        mapping: Mapping,
        on_error: OnError,
        staging: str,
    ) -> None:
        self.scorer = Scorer(OrtSession(model.path, runtime, model.name), mapping)
        self.on_error = on_error
        self.errors_dir = Path(staging) / "errors"
        self.failures_dir = Path(staging) / "failures"

    def __call__(self, table: pa.Table) -> pa.Table:
        try:
            return self._score(table)
        except SluiceError as exc:
            # Ray Data hands the driver only the text of an actor's exception: leave the
            # error itself where the driver looks for it.
            self.failures_dir.mkdir(parents=True, exist_ok=True)
            body = {"type": type(exc).__name__, "message": exc.message}
            (self.failures_dir / f"{uuid.uuid4().hex}.json").write_text(json.dumps(body))
            raise

    def _score(self, table: pa.Table) -> pa.Table:
        outputs, errors = [], []
        for batch in table.to_batches():
            scored = self.scorer.score(batch, 0)
            if scored.errors.num_rows:
                errors.append(scored.errors)
            if scored.output is not None:
                outputs.append(scored.output)
        if errors:
            self._set_aside(pa.Table.from_batches(errors))
        if not outputs:
            schema = self.scorer.output_schema
            if schema is None:
                raise ConfigError("--engine ray needs outputs whose inner dimensions are fixed")
            return schema.empty_table()
        return pa.Table.from_batches(outputs)

    def _set_aside(self, errors: pa.Table) -> None:
        errors = errors.set_column(0, ROW_COLUMN, pa.nulls(errors.num_rows, pa.int64()))
        if self.on_error == "fail":
            first = errors.slice(0, 1).to_pylist()[0]
            reason = first.pop("reason")
            first.pop(ROW_COLUMN)
            raise RowFailed(
                f"a row could not be scored: {reason} (kept columns: {first}; use --on-error "
                "skip to write such rows to the errors file and go on)"
            )
        self.errors_dir.mkdir(parents=True, exist_ok=True)
        pq.write_table(errors, self.errors_dir / f"{uuid.uuid4().hex}.parquet")


class RayEngine:
    """Scores the pending inputs as one Ray Data job and commits its files all at once."""

    def __init__(
        self, model: ModelRef, runtime: RuntimeConfig, mapping: Mapping, options: ScoreOptions
    ) -> None:
        self.model = model
        self.runtime = runtime
        self.mapping = mapping
        self.options = options

    def run(
        self, pending: list[Pending], manifest: Manifest, policy: ErrorPolicy, progress: Progress
    ) -> Tally:
        tally = Tally()
        if not pending:
            return tally
        if any(p.file.format != "parquet" for p in pending):
            raise ConfigError("--engine ray reads Parquet inputs only; use --engine local")
        staging = manifest.directory / STAGING_DIR
        run_id = uuid.uuid4().hex[:8]
        if not ray.is_initialized():
            ray.init(include_dashboard=False, log_to_driver=False, configure_logging=False)
        context = ray.data.DataContext.get_current()
        context.enable_progress_bars = progress.enabled
        # Ray pushes the column selection down into the Parquet read.
        dataset = ray.data.read_parquet(
            [str(p.file.path) for p in pending], partitioning=None
        ).select_columns(self.mapping.read_columns)
        scored = dataset.map_batches(
            _ScoreActor,
            fn_constructor_args=(
                self.model,
                self.runtime,
                self.mapping,
                self.options.on_error,
                str(staging),
            ),
            batch_size=self.options.batch_size,
            batch_format="pyarrow",
            compute=ray.data.ActorPoolStrategy(min_size=1, max_size=self.runtime.instances),
            num_cpus=ACTOR_CPUS,
        )
        try:
            scored.write_parquet(str(staging / "output"))
        except Exception as exc:  # Ray wraps the actor's error; report the Sluice one
            raise _actor_failure(staging / "failures", exc) from exc
        return self._commit(pending, manifest, policy, progress, staging, run_id)

    def _commit(
        self,
        pending: list[Pending],
        manifest: Manifest,
        policy: ErrorPolicy,
        progress: Progress,
        staging: Path,
        run_id: str,
    ) -> Tally:
        errors_table = (
            ds.dataset(staging / "errors").to_table() if (staging / "errors").is_dir() else None
        )
        skipped = errors_table.num_rows if errors_table is not None else 0
        if errors_table is not None and skipped:
            policy.check(errors_table.combine_chunks().to_batches()[0], "the Ray job")
        outputs: list[str] = []
        for k, path in enumerate(sorted((staging / "output").glob("*.parquet"))):
            name = f"ray-{run_id}-{k:05d}.parquet"
            replace_durably(path, manifest.directory / name)
            outputs.append(name)
        errors_name: str | None = None
        if errors_table is not None and skipped:
            (manifest.directory / ERRORS_DIR).mkdir(exist_ok=True)
            errors_name = f"{ERRORS_DIR}/ray-{run_id}.parquet"
            temp = staging / "errors.parquet"
            pq.write_table(errors_table, temp)
            replace_durably(temp, manifest.directory / errors_name)
        fsync_dir(manifest.directory)
        rows = {p.file.path: p.file.count_rows() for p in pending}
        scored = sum(pq.ParquetFile(manifest.directory / n).metadata.num_rows for n in outputs)
        tally = Tally()
        entries: dict[str, Finished] = {}
        for i, job in enumerate(pending):
            # Ray does not keep the input → output correspondence: the first input carries
            # the job's files and totals, so the manifest's sums stay exact. All inputs are
            # recorded in one manifest write: a crash before it leaves only orphans.
            first = i == 0
            entries[str(job.file.path)] = Finished(
                outputs=outputs if first else [],
                errors=errors_name if first else None,
                rows_read=rows[job.file.path],
                rows_scored=scored if first else 0,
                rows_skipped=skipped if first else 0,
            )
            tally.add(entries[str(job.file.path)])
        manifest.record_all(entries)
        progress.advance(scored, skipped)
        return tally


_ERRORS: dict[str, type[SluiceError]] = {
    cls.__name__: cls for cls in (RowFailed, InvalidInput, ConfigError, ModelFailed)
}


def _actor_failure(folder: Path, exc: BaseException) -> SluiceError:
    """The Sluice error an actor recorded before failing, or a ModelFailed for Ray's own."""
    for path in sorted(folder.glob("*.json")) if folder.is_dir() else []:
        body = json.loads(path.read_text())
        return _ERRORS.get(body["type"], ModelFailed)(body["message"])
    return ModelFailed(f"the Ray job failed: {str(exc).strip().splitlines()[0]}")
