"""Which model input (and which of its columns) each baseline feature is read from.

The rule is ``sluice score``'s, run backwards: a feature named like an input of one value per
row (``[batch]`` or ``[batch, 1]``) is that input; the features left over, in baseline order,
are the ``k`` columns of the one remaining input of ``k`` values per row. The online monitor and
``sluice drift BASELINE CAPTURE_DIR`` both use it, so they read the same values.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from server.errors import ConfigError


@dataclass(frozen=True, slots=True)
class FeatureSource:
    """Feature ``feature`` is column ``column`` of input ``tensor`` (of ``width`` columns)."""

    feature: str
    tensor: str
    column: int
    width: int


def feature_sources(
    widths: Mapping[str, int | None], features: Sequence[str], where: str
) -> tuple[FeatureSource, ...]:
    """Map ``features`` onto inputs of the given per-row widths (None: not a fixed width).

    ``ConfigError`` naming ``where`` when a feature has no input to come from.
    """
    sources: dict[str, FeatureSource] = {}
    for name in features:
        if name in widths and widths[name] == 1:
            sources[name] = FeatureSource(name, name, 0, 1)
    rest = [name for name in features if name not in sources]
    if rest:
        used = {s.tensor for s in sources.values()}
        fits = [t for t, w in widths.items() if t not in used and w == len(rest)]
        if len(fits) != 1:
            shown = ", ".join(
                f"{t} ({w if w is not None else '?'} per row)" for t, w in widths.items()
            )
            raise ConfigError(
                f"{where}: baseline feature(s) {', '.join(rest[:5])}"
                f"{' ...' if len(rest) > 5 else ''} match no model input; inputs: {shown}. "
                "A feature is an input of one value per row, or one of the k columns of the "
                "single [batch, k] input (k baseline features in order)"
            )
        for j, name in enumerate(rest):
            sources[name] = FeatureSource(name, fits[0], j, len(rest))
    return tuple(sources[name] for name in features)


def row_width(shape: Sequence[int], batching: bool) -> int | None:
    """Values per row of an input of ``shape`` (None when a non-batch dim is dynamic)."""
    dims = shape[1:] if batching else shape
    width = 1
    for dim in dims:
        if dim < 0:
            return None
        width *= dim
    return width
