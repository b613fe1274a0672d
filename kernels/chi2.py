"""Chi-square test of homogeneity and its p-value (regularized upper incomplete gamma)."""

from __future__ import annotations

import math

import numpy as np
import numpy.typing as npt

from kernels._numba import jit

FloatArray = npt.NDArray[np.float64]

_EPS = 1e-16
_TINY = 1e-300
_MAX_ITERATIONS = 100_000


@jit()
def _log_prefactor(a: float, x: float) -> float:
    """log of x**a * exp(-x) / Gamma(a)."""
    return a * math.log(x) - x - math.lgamma(a)


@jit()
def gammaincc(a: float, x: float) -> float:
    """Regularized upper incomplete gamma Q(a, x) = Gamma(a, x) / Gamma(a), for a > 0.

    Below ``x = a + 1`` the series for P converges fast and Q = 1 - P stays above ~0.3, so the
    subtraction loses nothing; above it, the continued fraction for Q (modified Lentz) does.
    """
    if np.isnan(a) or np.isnan(x) or a <= 0.0:
        return np.nan
    if x <= 0.0:
        return 1.0
    if np.isinf(x):
        return 0.0
    if x < a + 1.0:
        term = 1.0 / a
        total = term
        denominator = a
        for _ in range(_MAX_ITERATIONS):
            denominator += 1.0
            term *= x / denominator
            total += term
            if abs(term) < abs(total) * _EPS:
                break
        return 1.0 - total * math.exp(_log_prefactor(a, x))
    b = x + 1.0 - a
    c = 1.0 / _TINY
    d = 1.0 / b
    fraction = d
    for i in range(1, _MAX_ITERATIONS):
        an = -i * (i - a)
        b += 2.0
        d = an * d + b
        if abs(d) < _TINY:
            d = _TINY
        c = b + an / c
        if abs(c) < _TINY:
            c = _TINY
        d = 1.0 / d
        step = d * c
        fraction *= step
        if abs(step - 1.0) < _EPS:
            break
    return math.exp(_log_prefactor(a, x)) * fraction


@jit()
def chi2_sf(x: float, dof: float) -> float:
    """Survival function of the chi-square distribution (``scipy.stats.chi2.sf``)."""
    if dof <= 0.0:
        return np.nan
    return gammaincc(dof / 2.0, x / 2.0)


@jit()
def chi2_homogeneity(reference: FloatArray, current: FloatArray) -> tuple[float, int]:
    """Pearson chi-square of the 2 x K table of counts, over the categories seen in either
    sample (``scipy.stats.chi2_contingency(table, correction=False)``). Returns
    ``(statistic, dof)``; ``(nan, 0)`` when either sample is empty."""
    total_ref = reference.sum()
    total_cur = current.sum()
    total = total_ref + total_cur
    if total_ref <= 0.0 or total_cur <= 0.0:
        return np.nan, 0
    statistic = 0.0
    columns = 0
    for k in range(reference.shape[0]):
        column = reference[k] + current[k]
        if column <= 0.0:
            continue
        columns += 1
        expected_ref = total_ref * column / total
        expected_cur = total_cur * column / total
        statistic += (reference[k] - expected_ref) ** 2 / expected_ref
        statistic += (current[k] - expected_cur) ** 2 / expected_cur
    return statistic, columns - 1
