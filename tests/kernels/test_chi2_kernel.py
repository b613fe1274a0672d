import numpy as np
import pytest
from scipy.special import gammaincc as scipy_gammaincc
from scipy.stats import chi2, chi2_contingency

from kernels.chi2 import chi2_homogeneity, chi2_sf, gammaincc


@pytest.mark.parametrize("a", [0.5, 1.0, 2.5, 10.0, 100.0, 2500.0])
def test_gammaincc_matches_scipy(a: float) -> None:
    for x in np.concatenate([[0.0, 1e-8], np.geomspace(1e-3, 10 * a + 50, 40)]):
        want = scipy_gammaincc(a, x)
        if want > 1e-280:
            assert gammaincc(a, x) == pytest.approx(want, rel=1e-9, abs=1e-300)


@pytest.mark.parametrize("dof", [1, 2, 9, 50, 999])
def test_chi2_sf_matches_scipy(dof: int) -> None:
    for x in np.linspace(0.0, 3.0 * dof + 30, 25):
        assert chi2_sf(x, dof) == pytest.approx(chi2.sf(x, dof), rel=1e-9, abs=1e-300)


@pytest.mark.parametrize("seed", range(4))
def test_homogeneity_matches_chi2_contingency(seed: int) -> None:
    rng = np.random.default_rng(seed)
    ref = rng.integers(0, 100, 8).astype(np.float64)
    cur = rng.integers(0, 100, 8).astype(np.float64)
    ref[2] = 0.0  # a category new in current
    ref[5] = cur[5] = 0.0  # a category in neither: not part of the table
    statistic, dof = chi2_homogeneity(ref, cur)
    keep = (ref + cur) > 0
    want = chi2_contingency(np.stack([ref[keep], cur[keep]]), correction=False)
    assert statistic == pytest.approx(want.statistic, rel=1e-10)
    assert dof == want.dof
    assert chi2_sf(statistic, dof) == pytest.approx(want.pvalue, rel=1e-9, abs=1e-300)


def test_homogeneity_of_empty_sample_is_nan() -> None:
    statistic, dof = chi2_homogeneity(np.array([1.0, 2.0]), np.zeros(2))
    assert np.isnan(statistic)
    assert dof == 0
