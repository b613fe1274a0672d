"""Drift of one feature: statistics against its reference profile and the verdict.

Numeric features carry ``psi``, ``js``, ``ks``, ``ks_p_value``, ``wasserstein_normed``,
``null_rate_delta`` and ``out_of_range_rate``; categorical ones ``chi2``, ``chi2_p_value``,
``js``, ``linf``, ``unseen_rate`` and ``null_rate_delta``. A statistic that is undefined for the
data (an empty or all-null column) is NaN and the feature's verdict is None, with the reason in
``error``.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
import numpy.typing as npt

from kernels.chi2 import chi2_homogeneity, chi2_sf
from kernels.divergence import js_distance, linf, psi
from kernels.histogram import outside_count, sorted_bin_counts
from kernels.kolmogorov import ks_p_value
from kernels.ks import ks_wasserstein_sorted
from server.errors import ConfigError
from server.monitoring.columns import FeatureKind
from server.monitoring.profile import CategoricalProfile, NumericProfile, sorted_column

FloatArray = npt.NDArray[np.float64]
NumericStatistic = Literal["wasserstein_normed", "psi", "js", "ks"]
CategoricalStatistic = Literal["js", "linf", "chi2"]
NUMERIC_STATISTICS: tuple[NumericStatistic, ...] = ("wasserstein_normed", "psi", "js", "ks")
CATEGORICAL_STATISTICS: tuple[CategoricalStatistic, ...] = ("js", "linf", "chi2")
_HISTOGRAM_CATEGORIES = 20


@dataclass(frozen=True, slots=True)
class DriftRule:
    """When a feature, and the dataset, count as drifted.

    A numeric feature drifts when ``numeric_statistic >= numeric_threshold``, a categorical one
    when ``categorical_statistic >= categorical_threshold``; for a current sample of at most
    ``small_sample_rows`` values the test's p-value decides instead (``ks_p_value`` or
    ``chi2_p_value`` below ``p_value_threshold``). The dataset drifts when at least
    ``dataset_share`` of the features with a verdict drift.
    """

    numeric_statistic: NumericStatistic = "wasserstein_normed"
    numeric_threshold: float = 0.1
    categorical_statistic: CategoricalStatistic = "js"
    categorical_threshold: float = 0.1
    small_sample_rows: int = 1000
    p_value_threshold: float = 0.05
    dataset_share: float = 0.5
    psi_epsilon: float = 1e-4

    def __post_init__(self) -> None:
        if self.numeric_statistic not in NUMERIC_STATISTICS:
            raise ConfigError(f"numeric statistic must be one of {NUMERIC_STATISTICS}")
        if self.categorical_statistic not in CATEGORICAL_STATISTICS:
            raise ConfigError(f"categorical statistic must be one of {CATEGORICAL_STATISTICS}")
        if not 0.0 < self.p_value_threshold < 1.0:
            raise ConfigError("p_value_threshold must be between 0 and 1")
        if not 0.0 < self.dataset_share <= 1.0:
            raise ConfigError("dataset_share must be in (0, 1]")
        if self.small_sample_rows < 0 or self.psi_epsilon <= 0.0:
            raise ConfigError("small_sample_rows must be >= 0 and psi_epsilon > 0")


@dataclass(frozen=True, slots=True)
class Histogram:
    """Reference and current shares per bin (or category), for plotting."""

    labels: tuple[str, ...]
    reference: tuple[float, ...]
    current: tuple[float, ...]


@dataclass(frozen=True, slots=True)
class FeatureDrift:
    """Statistics and verdict for one feature; ``rule`` names the test that decided."""

    kind: FeatureKind
    statistics: Mapping[str, float]
    drifted: bool | None
    rule: str
    reference_rows: int
    current_rows: int
    histogram: Histogram | None = None
    error: str | None = None


def failed(
    kind: FeatureKind, error: str, reference_rows: int = 0, current_rows: int = 0
) -> FeatureDrift:
    """A feature that could not be compared, with the reason."""
    return FeatureDrift(kind, {}, None, "", reference_rows, current_rows, None, error)


def _verdict(value: float, threshold: float, below: bool) -> bool | None:
    if math.isnan(value):
        return None
    return value < threshold if below else value >= threshold


def edge_labels(edges: FloatArray) -> tuple[str, ...]:
    if edges.size == 0:
        return ()
    shown = [f"{edge:.4g}" for edge in edges]
    inner = [f"[{lo}, {hi})" for lo, hi in itertools.pairwise(shown)]
    return (f"< {shown[0]}", *inner, f">= {shown[-1]}")


def numeric_drift(
    profile: NumericProfile,
    chunks: Sequence[FloatArray],
    rule: DriftRule,
    scratch: FloatArray | None = None,
) -> FeatureDrift:
    """Compare a current column (chunks of float64, NaN for missing) with its profile;
    ``scratch``, when large enough, holds the sorted current values instead of a new array."""
    column = sorted_column(chunks, scratch)
    current = column.sorted_values
    null_rate_delta = column.nulls / column.rows - profile.null_rate if column.rows else math.nan
    if profile.count == 0:
        return failed("numeric", "reference has no finite values", profile.rows, column.rows)
    if column.count == 0:
        reason = "current is empty" if column.rows == 0 else "current has no finite values"
        stats = {"null_rate_delta": null_rate_delta} if column.rows else {}
        return FeatureDrift("numeric", stats, None, "", profile.rows, column.rows, None, reason)
    shares = sorted_bin_counts(current, profile.edges) / column.count
    d, w1 = ks_wasserstein_sorted(profile.sample, current)
    # A constant reference: any movement at all is infinitely many of its stds.
    constant_normed = 0.0 if w1 == 0.0 else math.inf
    w1_normed = w1 / profile.std if profile.std > 0.0 else constant_normed
    outside = outside_count(current, profile.minimum, profile.maximum) + column.nonfinite
    stats = {
        "psi": psi(profile.proportions, shares, rule.psi_epsilon),
        "js": js_distance(profile.proportions, shares),
        "ks": d,
        "ks_p_value": ks_p_value(d, profile.sample.shape[0], column.count),
        "wasserstein_normed": w1_normed,
        "null_rate_delta": null_rate_delta,
        "out_of_range_rate": outside / (column.count + column.nonfinite),
    }
    if column.count <= rule.small_sample_rows:
        drifted = _verdict(stats["ks_p_value"], rule.p_value_threshold, True)
        text = f"ks_p_value < {rule.p_value_threshold:g}"
    else:
        name = rule.numeric_statistic
        drifted = _verdict(stats[name], rule.numeric_threshold, False)
        text = f"{name} >= {rule.numeric_threshold:g}"
    histogram = Histogram(
        edge_labels(profile.edges), tuple(profile.proportions.tolist()), tuple(shares.tolist())
    )
    return FeatureDrift("numeric", stats, drifted, text, profile.rows, column.rows, histogram)


def categorical_drift(
    profile: CategoricalProfile, counts: Mapping[str, int], nulls: int, rule: DriftRule
) -> FeatureDrift:
    """Compare current category counts with the reference profile, over the union of
    categories (reference order, then new categories by frequency)."""
    rows = sum(counts.values()) + nulls
    null_rate_delta = nulls / rows - profile.null_rate if rows else math.nan
    known = set(profile.categories)
    unseen = sorted((name for name in counts if name not in known), key=lambda k: -counts[k])
    names = (*profile.categories, *unseen)
    reference = np.zeros(len(names))
    reference[: len(profile.categories)] = profile.counts
    current = np.array([float(counts.get(name, 0)) for name in names])
    seen = float(current.sum())
    if reference.sum() == 0.0:
        return failed("categorical", "reference has no non-null values", profile.rows, rows)
    if seen == 0.0:
        reason = "current is empty" if rows == 0 else "current has no non-null values"
        stats = {"null_rate_delta": null_rate_delta} if rows else {}
        return FeatureDrift("categorical", stats, None, "", profile.rows, rows, None, reason)
    chi2, dof = chi2_homogeneity(reference, current)
    stats = {
        "chi2": chi2,
        "chi2_p_value": chi2_sf(chi2, dof) if dof > 0 else 1.0,
        "js": js_distance(reference, current),
        "linf": linf(reference, current),
        "unseen_rate": float(current[len(profile.categories) :].sum()) / seen,
        "null_rate_delta": null_rate_delta,
    }
    if seen <= rule.small_sample_rows:
        drifted = _verdict(stats["chi2_p_value"], rule.p_value_threshold, True)
        text = f"chi2_p_value < {rule.p_value_threshold:g}"
    else:
        name = rule.categorical_statistic
        drifted = _verdict(stats[name], rule.categorical_threshold, False)
        text = f"{name} >= {rule.categorical_threshold:g}"
    return FeatureDrift(
        "categorical",
        stats,
        drifted,
        text,
        profile.rows,
        rows,
        _category_histogram(names, reference, current),
    )


def _category_histogram(
    names: tuple[str, ...], reference: FloatArray, current: FloatArray
) -> Histogram:
    """Shares of the most frequent categories (by both samples), the rest pooled as other."""
    ref_share = reference / reference.sum()
    cur_share = current / current.sum()
    order = np.argsort(-(ref_share + cur_share), kind="stable")
    top = order[:_HISTOGRAM_CATEGORIES]
    labels = [names[i] for i in top]
    ref = ref_share[top].tolist()
    cur = cur_share[top].tolist()
    if order.size > _HISTOGRAM_CATEGORIES:
        rest = order[_HISTOGRAM_CATEGORIES:]
        labels.append(f"other ({rest.size})")
        ref.append(float(ref_share[rest].sum()))
        cur.append(float(cur_share[rest].sum()))
    return Histogram(tuple(labels), tuple(ref), tuple(cur))
