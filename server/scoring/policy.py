"""What happens to rows that cannot be scored: ``fail`` stops the job at the first one,
``skip`` sets them aside in the errors file until ``max_errors`` is exceeded."""

from __future__ import annotations

import pyarrow as pa

from server.errors import InvalidInput
from server.scoring.options import OnError
from server.scoring.scorer import REASON_COLUMN, ROW_COLUMN


class RowFailed(InvalidInput):
    """A row could not be scored under ``--on-error fail``."""


class TooManyErrors(InvalidInput):
    """More rows could not be scored than ``--max-errors`` allows."""


class ErrorPolicy:
    """Counts skipped rows across the whole job, including inputs finished by earlier runs."""

    def __init__(self, on_error: OnError, max_errors: int | None, skipped: int = 0) -> None:
        self.on_error = on_error
        self.max_errors = max_errors
        self.skipped = skipped

    def check(self, errors: pa.RecordBatch, where: str) -> None:
        """Raise for ``errors`` (rows set aside while scoring ``where``) if the policy says so."""
        if errors.num_rows == 0:
            return
        row = errors.column(ROW_COLUMN)[0].as_py()
        reason = errors.column(REASON_COLUMN)[0].as_py()
        if self.on_error == "fail":
            raise RowFailed(
                f"{where}, row {row}: {reason} (use --on-error skip to write such rows "
                "to the errors file and go on)"
            )
        self.skipped += errors.num_rows
        if self.max_errors is not None and self.skipped > self.max_errors:
            raise TooManyErrors(
                f"{self.skipped} rows could not be scored, more than --max-errors "
                f"{self.max_errors}; the latest in {where}, row {row}: {reason}"
            )
