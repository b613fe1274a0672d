import numpy as np
import pytest
from scipy.spatial.distance import jensenshannon
from scipy.stats import entropy

from kernels.divergence import js_distance, kl, linf, psi


def _pair(seed: int, k: int = 10) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    return rng.integers(0, 50, k).astype(np.float64), rng.integers(0, 50, k).astype(np.float64)


def _psi_oracle(p: np.ndarray, q: np.ndarray) -> float:
    p = np.where(p / p.sum() == 0, 1e-4, p / p.sum())
    q = np.where(q / q.sum() == 0, 1e-4, q / q.sum())
    return float(np.sum((q - p) * np.log(q / p)))


@pytest.mark.parametrize("seed", range(5))
def test_psi_matches_formula(seed: int) -> None:
    p, q = _pair(seed)
    p[0] = 0.0  # a zero proportion takes the epsilon
    assert psi(p, q, 1e-4) == pytest.approx(_psi_oracle(p, q), rel=1e-12)


@pytest.mark.parametrize("seed", range(5))
def test_js_matches_scipy(seed: int) -> None:
    p, q = _pair(seed)
    p[1] = 0.0
    assert js_distance(p, q) == pytest.approx(jensenshannon(p, q, base=2), rel=1e-12)


def test_js_of_identical_and_disjoint() -> None:
    p = np.array([1.0, 2.0, 0.0])
    assert js_distance(p, p) == pytest.approx(0.0, abs=1e-12)
    assert js_distance(np.array([1.0, 0.0]), np.array([0.0, 1.0])) == pytest.approx(1.0)


@pytest.mark.parametrize("seed", range(3))
def test_kl_matches_scipy_entropy(seed: int) -> None:
    p, q = _pair(seed)
    q += 1.0
    assert kl(p, q) == pytest.approx(entropy(p, q), rel=1e-12)


def test_kl_is_infinite_where_q_has_no_mass() -> None:
    assert np.isinf(kl(np.array([1.0, 1.0]), np.array([1.0, 0.0])))


def test_linf() -> None:
    p, q = _pair(9)
    assert linf(p, q) == pytest.approx(np.max(np.abs(p / p.sum() - q / q.sum())), rel=1e-15)
