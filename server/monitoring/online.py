"""Online drift of one model version: feature windows, evaluation, and the report.

``add`` takes sampled requests' input tensors; ``evaluate`` turns the window into a
``DriftReport`` shaped like ``sluice drift``'s (same statistics, same kernels). Verdicts: a
feature with fewer than ``min_rows`` rows in the window has none; for a window of at most
``small_sample_rows`` values, the p-values of all such features (KS for numeric ones,
chi-squared for categorical ones) are adjusted together by Benjamini-Hochberg and a feature
breaches when its adjusted p-value is below ``p_value`` (so twenty quiet features do not raise
one false alarm each at p = 0.05); for larger windows a numeric feature breaches when any
statistic in ``statistics`` reaches its threshold, a categorical one when its JS distance
reaches ``js``. Both run on a worker thread: the kernels are numba ``nogil``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from kernels.divergence import js_distance, psi
from kernels.kolmogorov import ks_p_value
from kernels.ks import ks_wasserstein_sorted
from server.monitoring.drift import (
    DriftRule,
    FeatureDrift,
    Histogram,
    categorical_drift,
    edge_labels,
    failed,
)
from server.monitoring.features import FeatureSource
from server.monitoring.profile import CategoricalProfile, NumericProfile
from server.monitoring.report import DriftReport
from server.monitoring.window import CategoryWindow, TensorWindow, WindowView
from server.settings import DriftConfig

FloatArray = npt.NDArray[np.float64]
PSI_EPSILON = 1e-4
_P_VALUE = {"numeric": "ks_p_value", "categorical": "chi2_p_value"}


def benjamini_hochberg(p_values: Sequence[float]) -> FloatArray:
    """Benjamini-Hochberg adjusted p-values (the step-up FDR procedure), in input order."""
    p = np.asarray(p_values, dtype=np.float64)
    m = p.shape[0]
    if m == 0:
        return p
    order = np.argsort(p)
    scaled = p[order] * m / np.arange(1, m + 1)
    adjusted = np.minimum.accumulate(scaled[::-1])[::-1]
    out = np.empty(m)
    out[order] = np.minimum(adjusted, 1.0)
    return out


@dataclass(frozen=True, slots=True)
class Verdict:
    """Why one feature breached or not: the deciding statistic, its value and threshold."""

    breach: bool | None
    statistic: str
    value: float
    threshold: float


@dataclass(frozen=True, slots=True)
class Evaluation:
    report: DriftReport
    verdicts: Mapping[str, Verdict]
    window_rows: int


class OnlineDrift:
    """Windows of the features of one model version: numeric ones (bin counts and a reservoir)
    and categorical ones (category counts), each read from its model input."""

    def __init__(
        self,
        sources: Sequence[FeatureSource],
        profiles: Mapping[str, NumericProfile],
        config: DriftConfig,
        skipped: Mapping[str, str],
        categorical: Mapping[str, CategoricalProfile] | None = None,
    ) -> None:
        self.sources = tuple(sources)
        self.profiles = dict(profiles)
        self.categorical = dict(categorical or {})
        # A categorical feature is an input of one value per row named like it.
        self.category_sources = tuple(FeatureSource(n, n, 0, 1) for n in self.categorical)
        self.config = config
        self.skipped = dict(skipped)
        self.slice_seconds = config.evaluate_every_s
        slices = max(1, math.ceil(config.window_seconds / config.evaluate_every_s))
        # One window per input tensor: a batch's rows are counted and sampled for all the
        # features of a [batch, k] input in one pass.
        by_tensor: dict[str, list[FeatureSource]] = {}
        for source in self.sources:
            by_tensor.setdefault(source.tensor, []).append(source)
        self.windows = {
            tensor: (
                TensorWindow(
                    [profiles[s.feature] for s in group],
                    [s.column for s in group],
                    slices,
                    config.reservoir_rows,
                    seed=i,
                ),
                tuple(s.feature for s in group),
            )
            for i, (tensor, group) in enumerate(by_tensor.items())
        }
        self.category_windows = {name: CategoryWindow(slices) for name in self.categorical}
        self.rule = DriftRule(
            categorical_statistic="js",
            categorical_threshold=config.js,
            small_sample_rows=config.small_sample_rows,
            p_value_threshold=config.p_value,
        )

    @property
    def all_sources(self) -> tuple[FeatureSource, ...]:
        """Every watched feature's source, numeric then categorical."""
        return self.sources + self.category_sources

    def slice_number(self, now: float) -> int:
        return math.floor(now / self.slice_seconds)

    def add(self, tensors: Mapping[str, Sequence[np.ndarray]], now: float) -> None:
        """Add the rows of input tensors (by name, a list of ``[rows, ...]`` arrays)."""
        number = self.slice_number(now)
        stacked = {name: _stacked(arrays) for name, arrays in tensors.items() if arrays}
        for tensor, (window, _) in self.windows.items():
            data = stacked.get(tensor)
            if data is not None:
                window.add(data, number)
        for source in self.category_sources:
            data = stacked.get(source.tensor)
            if data is not None:
                self.category_windows[source.feature].add(data, number)

    def evaluate(self, now: float) -> Evaluation:
        number = self.slice_number(now)
        found = {
            name: view
            for window, names in self.windows.values()
            for name, view in zip(names, window.views(number), strict=True)
        }
        views = {s.feature: found[s.feature] for s in self.sources}  # in the baseline's order
        config = self.config
        results: dict[str, FeatureDrift] = {}
        verdicts: dict[str, Verdict] = {}
        small: list[str] = []
        for name, view in views.items():
            profile = self.profiles[name]
            if view.rows < config.min_rows or view.finite == 0:
                reason = f"insufficient data: {view.rows} rows (min_rows {config.min_rows})"
                results[name] = failed("numeric", reason, profile.rows, view.rows)
                verdicts[name] = Verdict(None, "", math.nan, math.nan)
                continue
            results[name] = _feature_drift(profile, view)
            if view.sorted_sample.shape[0] <= config.small_sample_rows:
                small.append(name)
            else:
                verdicts[name] = _threshold_verdict(results[name].statistics, config)
        category_rows = [0]
        for name, window in self.category_windows.items():
            counted = window.view(number)
            category_rows.append(counted.rows)
            reference = self.categorical[name]
            if counted.rows < config.min_rows:
                reason = f"insufficient data: {counted.rows} rows (min_rows {config.min_rows})"
                results[name] = failed("categorical", reason, reference.rows, counted.rows)
                verdicts[name] = Verdict(None, "", math.nan, math.nan)
                continue
            result = categorical_drift(reference, counted.counts, counted.nulls, self.rule)
            results[name] = result
            if result.error is not None:
                verdicts[name] = Verdict(None, "", math.nan, math.nan)
            elif counted.rows - counted.nulls <= config.small_sample_rows:
                small.append(name)
            else:
                js = result.statistics["js"]
                verdicts[name] = Verdict(bool(js >= config.js), "js", js, config.js)
        # Small windows: one Benjamini-Hochberg pool over the KS (numeric) and chi-squared
        # (categorical) p-values.
        tests = [_P_VALUE[results[n].kind] for n in small]
        adjusted = benjamini_hochberg(
            [results[n].statistics[t] for n, t in zip(small, tests, strict=True)]
        )
        for name, test, p in zip(small, tests, adjusted, strict=True):
            p = float(p)
            verdicts[name] = Verdict(p < config.p_value, f"{test}_bh", p, config.p_value)
        final: dict[str, FeatureDrift] = {}
        for name, result in results.items():
            verdict = verdicts[name]
            if verdict.breach is None:
                final[name] = result
                continue
            below = verdict.statistic.endswith("_p_value_bh")
            rule = f"{verdict.statistic} {'<' if below else '>='} {verdict.threshold:g}"
            final[name] = FeatureDrift(
                result.kind,
                result.statistics,
                verdict.breach,
                rule,
                result.reference_rows,
                result.current_rows,
                result.histogram,
            )
        decided = [v.breach for v in verdicts.values() if v.breach is not None]
        share = sum(decided) / len(decided) if decided else math.nan
        drifted = bool(decided) and share >= config.dataset_share
        rows = max(max((v.rows for v in views.values()), default=0), *category_rows)
        report = DriftReport(final, share, drifted, self.skipped)
        return Evaluation(report, verdicts, rows)


def _threshold_verdict(statistics: Mapping[str, float], config: DriftConfig) -> Verdict:
    first: Verdict | None = None
    for statistic in config.statistics:
        value = statistics[statistic]
        threshold = config.threshold(statistic)
        verdict = Verdict(bool(value >= threshold), statistic, value, threshold)
        if verdict.breach:
            return verdict
        first = first or verdict
    assert first is not None
    return first


def _feature_drift(profile: NumericProfile, view: WindowView) -> FeatureDrift:
    """The statistics ``numeric_drift`` computes, from the window's counts and sample."""
    shares = view.bins / view.finite
    sample = view.sorted_sample
    d, w1 = ks_wasserstein_sorted(profile.sample, sample)
    constant_normed = 0.0 if w1 == 0.0 else math.inf
    w1_normed = w1 / profile.std if profile.std > 0.0 else constant_normed
    stats = {
        "psi": psi(profile.proportions, shares, PSI_EPSILON),
        "js": js_distance(profile.proportions, shares),
        "ks": d,
        "ks_p_value": ks_p_value(d, profile.sample.shape[0], sample.shape[0]),
        "wasserstein_normed": w1_normed,
        "null_rate_delta": view.nulls / view.rows - profile.null_rate,
        "out_of_range_rate": (view.outside + view.nonfinite) / (view.finite + view.nonfinite),
    }
    histogram = Histogram(
        edge_labels(profile.edges), tuple(profile.proportions.tolist()), tuple(shares.tolist())
    )
    return FeatureDrift("numeric", stats, None, "", profile.rows, view.rows, histogram)


def _stacked(arrays: Sequence[np.ndarray]) -> np.ndarray:
    """Requests' ``[rows, ...]`` arrays as one ``[rows, values]`` array: one concatenation
    when their non-batch dims agree, a reshape per array otherwise."""
    try:
        joined = np.concatenate(arrays)
    except ValueError:  # scalars, or dims that differ between requests
        return np.concatenate([a.reshape(a.shape[0] if a.ndim else 1, -1) for a in arrays])
    return joined.reshape(joined.shape[0], -1)
