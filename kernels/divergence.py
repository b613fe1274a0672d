"""Distances between two discrete distributions given as counts or proportions.

Every function normalizes its inputs to proportions first, so counts and proportions give the
same answer. Logarithms are natural unless stated.
"""

from __future__ import annotations

import math

import numpy as np
import numpy.typing as npt

from kernels._numba import jit

FloatArray = npt.NDArray[np.float64]


@jit()
def _normalized(weights: FloatArray) -> FloatArray:
    proportions: FloatArray = weights / weights.sum()
    return proportions


@jit()
def psi(reference: FloatArray, current: FloatArray, epsilon: float) -> float:
    """Population stability index: sum of ``(cur - ref) * ln(cur / ref)`` over bins, with
    proportions of exactly 0 replaced by ``epsilon``."""
    p = _normalized(reference)
    q = _normalized(current)
    total = 0.0
    for k in range(p.shape[0]):
        r = p[k] if p[k] != 0.0 else epsilon
        c = q[k] if q[k] != 0.0 else epsilon
        total += (c - r) * math.log(c / r)
    return total


@jit()
def _rel_entr(x: float, y: float) -> float:
    if x > 0.0 and y > 0.0:
        return x * math.log(x / y)
    if x == 0.0 and y >= 0.0:
        return 0.0
    return np.inf


@jit()
def kl(p_weights: FloatArray, q_weights: FloatArray) -> float:
    """Kullback-Leibler divergence D(p || q) in nats (``scipy.stats.entropy(p, q)``)."""
    p = _normalized(p_weights)
    q = _normalized(q_weights)
    total = 0.0
    for k in range(p.shape[0]):
        total += _rel_entr(p[k], q[k])
    return total


@jit()
def js_distance(p_weights: FloatArray, q_weights: FloatArray) -> float:
    """Jensen-Shannon distance in base 2, in [0, 1]
    (``scipy.spatial.distance.jensenshannon(p, q, base=2)``)."""
    p = _normalized(p_weights)
    q = _normalized(q_weights)
    total = 0.0
    for k in range(p.shape[0]):
        m = (p[k] + q[k]) / 2.0
        total += _rel_entr(p[k], m) + _rel_entr(q[k], m)
    total /= math.log(2.0)
    return math.sqrt(total / 2.0)


@jit()
def linf(p_weights: FloatArray, q_weights: FloatArray) -> float:
    """L-infinity distance: the largest absolute difference between proportions."""
    p = _normalized(p_weights)
    q = _normalized(q_weights)
    return float(np.max(np.abs(p - q))) if p.shape[0] > 0 else 0.0
