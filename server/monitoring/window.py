"""The online drift windows: time slices of bin counts and reservoirs, and of category counts.

A numeric window covers the features read from one input tensor (the ``k`` columns of a
``[batch, k]`` input, or a ``[batch]`` input of one). It is ``ceil(window_seconds /
slice_seconds)`` slices. Each slice counts every value it is given (rows, nulls, infinities,
values outside the reference range, and finite values per reference bin, so PSI and JS are
exact over the whole window) and keeps a uniform reservoir sample of its rows for KS and
Wasserstein (seeded; Algorithm L once the reservoir is full, so only the rows that enter cost
anything). The reservoir samples rows, not values: one draw serves every feature, and a
feature's finite values among the kept rows are a uniform sample of its finite values. Memory
is bounded by the reservoir size whatever the traffic. While no slice's reservoir is full, the
window holds every row, so its statistics equal ``sluice drift`` over the same rows.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from kernels.window import reservoir_rows, window_rows
from server.monitoring.profile import NumericProfile

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]
_NANS, _INFS, _OUTSIDE = 0, 1, 2


@dataclass(slots=True)
class _Slice:
    number: int
    reservoir: FloatArray  # [cap, features]: the kept rows' watched values
    bins: IntArray  # [features, max edges + 1]
    counts: IntArray  # [features, 3]: NaNs, infinities, outside the reference range
    rng: np.random.Generator
    rows: int = 0  # rows seen (the reservoir holds min(rows, cap))
    next_take: int = 0  # Algorithm L: the index (among rows) of the next that enters
    weight: float = 0.0


@dataclass(frozen=True, slots=True)
class WindowView:
    """One feature's share of the window's current contents, as an evaluation needs them."""

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


class TensorWindow:
    """Sliding window of the numeric features read from one input tensor: feature ``j`` has
    profile ``profiles[j]`` and is column ``columns[j]`` of the ``[rows, width]`` arrays that
    ``add`` takes. ``add`` and ``views`` take the slice number (``floor(time /
    slice_seconds)``), so time is the caller's."""

    def __init__(
        self,
        profiles: Sequence[NumericProfile],
        columns: Sequence[int],
        slices: int,
        reservoir_rows: int,
        seed: int = 0,
    ) -> None:
        self.profiles = tuple(profiles)
        self.columns = np.asarray(columns, dtype=np.int64)
        self.slices = slices
        self.cap = max(1, math.ceil(reservoir_rows / slices))
        self.seed = seed
        widest = max((p.edges.shape[0] for p in self.profiles), default=0)
        self.edges = np.full((len(self.profiles), widest), np.inf)
        for j, profile in enumerate(self.profiles):
            self.edges[j, : profile.edges.shape[0]] = profile.edges
        self.low = np.array([p.minimum for p in self.profiles], dtype=np.float64)
        self.high = np.array([p.maximum for p in self.profiles], dtype=np.float64)
        self._ring: dict[int, _Slice] = {}

    def add(self, matrix: np.ndarray, number: int) -> None:
        """Add the rows of ``matrix`` (``[rows, width]``, any real dtype)."""
        if matrix.dtype not in (np.float32, np.float64):
            matrix = matrix.astype(np.float64)
        matrix = np.ascontiguousarray(matrix)
        current = self._slice(number)
        window_rows(
            matrix, self.columns, self.edges, self.low, self.high, current.bins, current.counts
        )
        _reservoir_add(current, matrix, self.columns)

    def views(self, number: int) -> list[WindowView]:
        """Each feature's view of the slices within the window ending at slice ``number``
        (older slices are dropped)."""
        for old in [n for n in self._ring if n <= number - self.slices]:
            del self._ring[old]
        live = [s for s in self._ring.values() if s.number <= number]
        features = len(self.profiles)
        rows = sum(s.rows for s in live)
        bins = np.zeros((features, self.edges.shape[1] + 1), dtype=np.int64)
        counts = np.zeros((features, 3), dtype=np.int64)
        for piece in live:
            bins += piece.bins
            counts += piece.counts
        kept = [s.reservoir[: min(s.rows, self.cap)] for s in live]
        sample = np.concatenate(kept) if kept else np.empty((0, features))
        found = []
        for j, profile in enumerate(self.profiles):
            nulls, infs, outside = (int(c) for c in counts[j])
            column = sample[:, j]
            found.append(
                WindowView(
                    rows=rows,
                    nulls=nulls,
                    nonfinite=infs,
                    outside=outside,
                    bins=bins[j, : profile.edges.shape[0] + 1].copy(),
                    sorted_sample=np.sort(column[np.isfinite(column)]),
                    finite=rows - nulls - infs,
                )
            )
        return found

    def _slice(self, number: int) -> _Slice:
        found = self._ring.get(number)
        if found is None:
            features = len(self.profiles)
            found = _Slice(
                number,
                np.empty((self.cap, features)),
                np.zeros((features, self.edges.shape[1] + 1), dtype=np.int64),
                np.zeros((features, 3), dtype=np.int64),
                np.random.default_rng([self.seed, number]),
            )
            self._ring[number] = found
        return found


def _reservoir_add(target: _Slice, matrix: np.ndarray, columns: IntArray) -> None:
    """Fill free slots; once full, Algorithm L: each later row enters with probability
    ``cap / (i + 1)`` (``i`` 0-based over the slice's stream) and replaces a uniform slot, but
    the gaps between entries are drawn, so a chunk costs what enters, not what passes."""
    reservoir = target.reservoir
    cap = reservoir.shape[0]
    seen = target.rows
    free = max(0, min(cap - seen, matrix.shape[0]))
    if free:
        reservoir[seen : seen + free] = matrix[:free, columns]
    if seen + free == cap and free:  # just filled: draw the first gap
        u = 1.0 - target.rng.random(2)
        target.weight = math.exp(math.log(u[0]) / cap)
        target.next_take = cap + math.floor(math.log(u[1]) / math.log1p(-target.weight))
    target.rows = seen + matrix.shape[0]
    if target.rows <= cap:
        return
    start = seen + free
    rest = matrix[free:]
    while target.next_take < target.rows:
        # Three numbers per entry; about cap * ln(end / start) entries are due.
        due = cap * math.log(target.rows / max(start, 1)) + 8
        uniforms = 1.0 - target.rng.random(3 * math.ceil(due * 1.5))
        target.next_take, target.weight, _ = reservoir_rows(
            reservoir, rest, columns, start, target.next_take, target.weight, uniforms
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
