"""The online drift window of one feature: time slices of bin counts and reservoirs.

The window is ``ceil(window_seconds / slice_seconds)`` slices. Each slice counts every value
it is given (rows, nulls, infinities, values outside the reference range, and finite values
per reference bin, so PSI and JS are exact over the whole window) and keeps a uniform
reservoir sample of its finite values for KS and Wasserstein (seeded; Algorithm L once the
reservoir is full, so only the values that enter cost anything). Memory is
bounded by the reservoir size whatever the traffic. While no slice's reservoir is full, the
window holds every value, so its statistics equal ``sluice drift`` over the same rows.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from kernels.window import reservoir_skip, window_pass
from server.monitoring.profile import NumericProfile

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]


@dataclass(slots=True)
class _Slice:
    number: int
    reservoir: FloatArray
    bins: IntArray
    rng: np.random.Generator
    rows: int = 0
    nulls: int = 0
    nonfinite: int = 0
    outside: int = 0
    finite: int = 0  # finite values seen (the reservoir holds min(finite, cap))
    next_take: int = 0  # Algorithm L: the index (among finite values) of the next that enters
    weight: float = 0.0


@dataclass(frozen=True, slots=True)
class WindowView:
    """The window's current contents, as an evaluation needs them."""

    rows: int
    nulls: int
    nonfinite: int
    outside: int
    bins: IntArray
    sorted_sample: FloatArray
    finite: int

    @property
    def saturated(self) -> bool:
        return bool(self.sorted_sample.shape[0] < self.finite)


@dataclass(slots=True)
class FeatureWindow:
    """Sliding window of one numeric feature; ``add`` and ``view`` take the slice number
    (``floor(time / slice_seconds)``) so time is the caller's."""

    profile: NumericProfile
    slices: int
    reservoir_rows: int
    seed: int = 0
    _ring: dict[int, _Slice] = field(default_factory=dict)

    def add(self, values: FloatArray, number: int) -> None:
        current = self._slice(number)
        scratch = np.empty(values.shape[0])
        profile = self.profile
        nans, infs, outside, count = window_pass(
            values, profile.edges, profile.minimum, profile.maximum, current.bins, scratch
        )
        current.rows += values.shape[0]
        current.nulls += nans
        current.nonfinite += infs
        current.outside += outside
        _reservoir_add(current, scratch[:count])

    def view(self, number: int) -> WindowView:
        """The slices within the window ending at slice ``number`` (older ones are dropped)."""
        for old in [n for n in self._ring if n <= number - self.slices]:
            del self._ring[old]
        live = [s for s in self._ring.values() if s.number <= number]
        bins = np.zeros(self.profile.edges.shape[0] + 1, dtype=np.int64)
        samples = [s.reservoir[: min(s.finite, s.reservoir.shape[0])] for s in live]
        for s in live:
            bins += s.bins
        sample = np.sort(np.concatenate(samples)) if samples else np.empty(0)
        return WindowView(
            rows=sum(s.rows for s in live),
            nulls=sum(s.nulls for s in live),
            nonfinite=sum(s.nonfinite for s in live),
            outside=sum(s.outside for s in live),
            bins=bins,
            sorted_sample=sample,
            finite=sum(s.finite for s in live),
        )

    def _slice(self, number: int) -> _Slice:
        found = self._ring.get(number)
        if found is None:
            cap = max(1, math.ceil(self.reservoir_rows / self.slices))
            found = _Slice(
                number,
                np.empty(cap),
                np.zeros(self.profile.edges.shape[0] + 1, dtype=np.int64),
                np.random.default_rng([self.seed, number]),
            )
            self._ring[number] = found
        return found


def _reservoir_add(target: _Slice, finite: FloatArray) -> None:
    """Fill free slots; once full, Algorithm L: each later value enters with probability
    ``cap / (i + 1)`` (``i`` 0-based over the slice's stream) and replaces a uniform slot, but
    the gaps between entries are drawn, so a chunk costs what enters, not what passes."""
    reservoir = target.reservoir
    cap = reservoir.shape[0]
    seen = target.finite
    free = max(0, min(cap - seen, finite.shape[0]))
    reservoir[seen : seen + free] = finite[:free]
    if seen + free == cap and free:  # just filled: draw the first gap
        u = 1.0 - target.rng.random(2)
        target.weight = math.exp(math.log(u[0]) / cap)
        target.next_take = cap + math.floor(math.log(u[1]) / math.log1p(-target.weight))
    target.finite = seen + finite.shape[0]
    if target.finite <= cap:
        return
    start = seen + free
    rest = finite[free:]
    while target.next_take < target.finite:
        # Three numbers per entry; about cap * ln(end / start) entries are due.
        due = cap * math.log(target.finite / max(start, 1)) + 8
        uniforms = 1.0 - target.rng.random(3 * math.ceil(due * 1.5))
        target.next_take, target.weight, _ = reservoir_skip(
            reservoir, rest, start, target.next_take, target.weight, uniforms
        )


OTHER_CATEGORY = "(other)"


@dataclass(slots=True)
class _CategorySlice:
    number: int
    counts: dict[str, int] = field(default_factory=dict)
    rows: int = 0
    nulls: int = 0


@dataclass(frozen=True, slots=True)
class CategoryView:
    rows: int
    nulls: int
    counts: dict[str, int]


@dataclass(slots=True)
class CategoryWindow:
    """Sliding window of one categorical feature: exact category counts per time slice.

    Categories are rendered as ``sluice drift`` renders a Parquet column's (bytes as UTF-8,
    booleans as ``true``/``false``, others by ``str``). A slice keeps at most
    ``max_categories`` distinct categories; later new ones are pooled as ``(other)``, so a
    client sending endless new values cannot grow the server.
    """

    slices: int
    max_categories: int = 1000
    _ring: dict[int, _CategorySlice] = field(default_factory=dict)

    def add(self, values: np.ndarray, number: int) -> None:
        current = self._ring.get(number)
        if current is None:
            current = self._ring[number] = _CategorySlice(number)
        values = values.reshape(-1)
        current.rows += values.shape[0]
        if values.dtype == object:
            missing = np.array([v is None for v in values.tolist()], dtype=np.bool_)
            if missing.any():
                current.nulls += int(missing.sum())
                values = values[~missing]
        found: list[tuple[object, int]]
        try:
            keys, counts = np.unique(values, return_counts=True)
            found = list(zip(keys.tolist(), counts.tolist(), strict=True))
        except TypeError:  # values of mixed types do not sort
            tally: dict[object, int] = {}
            for value in values.tolist():
                tally[value] = tally.get(value, 0) + 1
            found = list(tally.items())
        table = current.counts
        for key, count in found:
            name = category_name(key)
            if name not in table and len(table) >= self.max_categories:
                name = OTHER_CATEGORY
            table[name] = table.get(name, 0) + int(count)

    def view(self, number: int) -> CategoryView:
        for old in [n for n in self._ring if n <= number - self.slices]:
            del self._ring[old]
        live = [s for s in self._ring.values() if s.number <= number]
        counts: dict[str, int] = {}
        for piece in live:
            for name, count in piece.counts.items():
                counts[name] = counts.get(name, 0) + count
        return CategoryView(sum(s.rows for s in live), sum(s.nulls for s in live), counts)


def category_name(value: object) -> str:
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    if isinstance(value, bool):
        return str(value).lower()
    return str(value)
