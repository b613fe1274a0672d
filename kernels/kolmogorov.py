"""P-values for the two-sample KS statistic D.

``ks_p_value(d, n, m)`` follows ``scipy.stats.ks_2samp(method="auto")``: exact when both
samples have at most ``EXACT_TWO_SAMPLE_MAX_N`` values, otherwise the one-sample Kolmogorov
distribution at ``round(n*m/(n+m))`` (``scipy.stats.kstwo.sf``). That distribution is computed
exactly for ``round(n*m/(n+m)) <= EXACT_KOLMOGOROV_MAX_N`` (Durbin's matrix method, or twice the
exact one-sided Smirnov tail where scipy uses it); there it equals scipy to 1e-9 except where
scipy itself approximates (Pelz-Good, up to 2e-5 relative off the exact value). Beyond, the
exact sums cost tens of milliseconds per feature, so Kolmogorov's limit
``kstwobign.sf(sqrt(en) * d)`` is used: about 1/sqrt(en) relative off near p = 0.05, more in the
far tail. Sluice's drift rule reads p-values only for windows of at most 1000 rows.
"""

from __future__ import annotations

import math

import numpy as np
import numpy.typing as npt

from kernels._numba import jit

FloatArray = npt.NDArray[np.float64]

EXACT_TWO_SAMPLE_MAX_N = 10_000
EXACT_KOLMOGOROV_MAX_N = 2_000
_SCALE = 1e140
_LOG_SCALE = math.log(1e140)


@jit()
def kolmogorov_sf(x: float) -> float:
    """Survival function of Kolmogorov's limiting distribution (``scipy.stats.kstwobign.sf``)."""
    if x <= 0.0:
        return 1.0
    if x < 1.0:
        # Jacobi's theta form of the CDF converges fast for small x.
        total = 0.0
        for k in range(1, 100):
            term = math.exp(-((2 * k - 1) ** 2) * math.pi**2 / (8.0 * x * x))
            total += term
            if term < 1e-17 * total:
                break
        return 1.0 - math.sqrt(2.0 * math.pi) / x * total
    total = 0.0
    sign = 1.0
    for k in range(1, 100):
        term = math.exp(-2.0 * k * k * x * x)
        total += sign * term
        if term < 1e-17:
            break
        sign = -sign
    return max(0.0, min(1.0, 2.0 * total))


@jit()
def smirnov_sf(n: int, d: float) -> float:
    """Exact one-sided tail P(D+_n >= d) by the Birnbaum-Tingey sum (``scipy.special.smirnov``)."""
    if d <= 0.0:
        return 1.0
    if d >= 1.0:
        return 0.0
    if n * d * d >= 370.0:
        return 0.0  # below 1e-300, as scipy rounds it
    log_n_factorial = math.lgamma(n + 1.0)
    total = 0.0
    previous = 0.0
    for j in range(math.floor(n * (1.0 - d)) + 1):
        rest = 1.0 - d - j / n
        if rest <= 0.0:
            continue
        log_term = (
            log_n_factorial
            - math.lgamma(j + 1.0)
            - math.lgamma(n - j + 1.0)
            + (j - 1) * math.log(d + j / n)
            + (n - j) * math.log(rest)
        )
        term = math.exp(log_term)
        total += term
        # The terms rise to one peak and fall; stop once they no longer move the sum.
        if term < previous and term < 1e-17 * total:
            break
        previous = term
    return min(1.0, d * total)


@jit()
def _matmul_scaled(a: FloatArray, b: FloatArray) -> tuple[FloatArray, int]:
    product = a @ b
    scale = 0
    centre = product.shape[0] // 2
    while abs(product[centre, centre]) > _SCALE:
        product /= _SCALE
        scale += 1
    return product, scale


@jit()
def _durbin_cdf(n: int, d: float) -> float:
    """Exact P(D_n < d) by Durbin's matrix formula (Marsaglia, Tsang and Wang, 2003)."""
    k = math.floor(n * d) + 1
    size = 2 * k - 1
    h = k - n * d
    matrix = np.zeros((size, size))
    factorials = np.empty(size + 1)
    factorials[0] = 1.0
    for i in range(1, size + 1):
        factorials[i] = factorials[i - 1] * i
    for i in range(size):
        for j in range(size):
            if i - j + 1 >= 0:
                matrix[i, j] = 1.0 / factorials[i - j + 1]
    for i in range(size):
        matrix[i, 0] -= h ** (i + 1) / factorials[i + 1]
        matrix[size - 1, i] -= h ** (size - i) / factorials[size - i]
    if 2.0 * h - 1.0 > 0.0:
        matrix[size - 1, 0] += (2.0 * h - 1.0) ** size / factorials[size]
    # matrix ** n by squaring, tracking powers of _SCALE so nothing overflows.
    result = np.eye(size)
    result_scale = 0
    power = matrix.copy()
    power_scale = 0
    exponent = n
    while exponent > 0:
        if exponent & 1:
            result, extra = _matmul_scaled(result, power)
            result_scale += power_scale + extra
        exponent >>= 1
        if exponent > 0:
            power, extra = _matmul_scaled(power, power)
            power_scale = 2 * power_scale + extra
    centre = result[k - 1, k - 1]
    if centre <= 0.0:
        return 0.0
    log_cdf = math.lgamma(n + 1.0) - n * math.log(n) + math.log(centre) + result_scale * _LOG_SCALE
    return min(1.0, math.exp(log_cdf))


@jit()
def kstwo_sf(d: float, n: int) -> float:
    """P(D_n >= d) for the one-sample two-sided statistic (``scipy.stats.kstwo.sf``)."""
    if n <= 0 or np.isnan(d):
        return np.nan
    if d >= 1.0:
        return 0.0
    t = n * d
    if t <= 0.5:
        return 1.0
    if t <= 1.0:
        # Ruben and Gambino: P(D_n < d) = n!/n^n (2nd - 1)^n for 1/(2n) <= d <= 1/n.
        log_cdf = math.lgamma(n + 1.0) - n * math.log(n) + n * math.log(2.0 * t - 1.0)
        return 1.0 - math.exp(log_cdf)
    if t >= n - 1:
        return 2.0 * (1.0 - d) ** n
    if n > EXACT_KOLMOGOROV_MAX_N:
        return kolmogorov_sf(math.sqrt(n) * d)
    nd2 = t * d
    # Where the two one-sided tails barely overlap, the two-sided tail is twice the one-sided
    # one (scipy switches at the same points, so the answers agree to rounding).
    if d >= 0.5 or (n <= 140 and nd2 > 4.0) or (n > 140 and nd2 >= 2.2):
        return min(1.0, 2.0 * smirnov_sf(n, d))
    return max(0.0, 1.0 - _durbin_cdf(n, d))


@jit()
def ks_two_sample_exact_sf(d: float, n: int, m: int) -> float:
    """Exact P(D_{n,m} >= d) for continuous data: one minus the share of the C(n+m, n)
    monotone lattice paths that keep ``|i/n - j/m| < d``, counted as probabilities (each step
    goes right with probability (n-i)/(n-i+m-j)) so nothing overflows. Only the band of
    points inside the bounds is visited: O(n * m * d) work."""
    g = math.gcd(n, m)
    lcm = (n // g) * m
    h = round(d * lcm)
    if h == 0:
        return 1.0
    # 1 - P(inside) cannot resolve tails below ~1e-16 anyway; where even a loosened
    # Kolmogorov limit puts the tail far below that, skip the O(n*m) count.
    if kolmogorov_sf(0.8 * d * math.sqrt(n * m / (n + m))) < 1e-20:
        return 0.0
    # In units of 1/lcm the gap at lattice point (i, j) is |i*(m/g) - j*(n/g)|.
    step_i = m // g
    step_j = n // g
    inverse = np.empty(n + m + 1)  # 1/k: multiplications in the inner loop, not divisions
    inverse[0] = 0.0
    for k in range(1, n + m + 1):
        inverse[k] = 1.0 / k
    row = np.zeros(m + 1)
    row[0] = 1.0
    for j in range(1, m + 1):
        if j * step_j >= h:
            break
        row[j] = row[j - 1] * (m - j + 1) * inverse[n + m - j + 1]
    previous_low = 0
    for i in range(1, n + 1):
        # Inside: i*step_i - h < j*step_j < i*step_i + h. The band only moves right.
        low = max(0, (i * step_i - h) // step_j + 1)
        high = min(m, (i * step_i + h - 1) // step_j)
        for j in range(previous_low, min(low, m + 1)):
            row[j] = 0.0
        for j in range(low, high + 1):
            total = row[j] * (n - i + 1) * inverse[(n - i + 1) + (m - j)]
            if j > 0:
                total += row[j - 1] * (m - j + 1) * inverse[(n - i) + (m - j + 1)]
            row[j] = total
        previous_low = low
    inside: float = row[m]
    return max(0.0, min(1.0, 1.0 - inside))


@jit()
def ks_p_value(d: float, n: int, m: int) -> float:
    """Two-sided p-value of the two-sample statistic ``d`` for sample sizes ``n`` and ``m``,
    as ``scipy.stats.ks_2samp(method="auto")`` chooses it (see the module docstring)."""
    if n <= 0 or m <= 0 or np.isnan(d):
        return np.nan
    if max(n, m) <= EXACT_TWO_SAMPLE_MAX_N:
        return ks_two_sample_exact_sf(d, n, m)
    big = float(max(n, m))
    small = float(min(n, m))
    en = big * small / (big + small)
    return kstwo_sf(d, round(en))
