"""Arrow batch scoring: Parquet/Arrow in, Parquet out, resumable, exactly once per row."""

from server.scoring.job import score
from server.scoring.options import ScoreOptions

__all__ = ["ScoreOptions", "score"]
