"""rho_FCN, rho_CNN and the link functions against an independent high-precision quadrature (mpmath)."""

import math

import mpmath as mp
import numpy as np
import pytest

from curvlab.recovery import gaussian_integrals as link

mp.mp.dps = 30


def _sig(u):
    return 1 / (1 + mp.exp(-u))


def _dsig(u):
    s = _sig(u)
    return s * (1 - s)


def _E(f, sigma):
    """E_{z ~ N(0,1)}[f(z)] with breakpoints at the sigmoid's scale."""
    pts = sorted({-mp.inf, -4 / mp.mpf(sigma), -1 / mp.mpf(sigma), 0, 1 / mp.mpf(sigma), 4 / mp.mpf(sigma), mp.inf})
    return mp.quad(lambda z: f(z) * mp.npdf(z), pts)


SIGMAS = [0.1, 0.7, 2.0, 5.0, 15.0]


@pytest.mark.parametrize("sigma", SIGMAS)
def test_rho_against_mpmath(sigma):
    s = mp.mpf(sigma)
    a = {q: _E(lambda z: _dsig(s * z) * z**q, sigma) for q in (0, 1, 2)}
    b = {q: _E(lambda z: _dsig(s * z) ** 2 * z**q, sigma) for q in (0, 2)}
    rho_f = min(b[0] - a[0] ** 2, b[2] - a[2] ** 2) - a[1] ** 2
    rho_c = min(_E(lambda z: (_dsig(s * z) * s * z) ** 2, sigma), _E(lambda z: _dsig(s * z) ** 2, sigma))
    assert math.isclose(link.rho_fcn(sigma), float(rho_f), rel_tol=1e-8)
    assert math.isclose(link.rho_cnn(sigma), float(rho_c), rel_tol=1e-8)
    assert abs(float(a[1])) < 1e-20 and link.alpha(sigma, 1) == 0.0  # phi' even => alpha_1 = 0
    for q in (0, 2):
        assert math.isclose(link.alpha(sigma, q), float(a[q]), rel_tol=1e-9)


@pytest.mark.parametrize("sigma", [0.3, 1.5, 6.0])
def test_link_functions_against_mpmath(sigma):
    s = mp.mpf(sigma)
    he = {1: lambda z: z, 2: lambda z: z**2 - 1, 3: lambda z: z**3 - 3 * z, 4: lambda z: z**4 - 6 * z**2 + 3}
    for j, h in he.items():
        ref = float(_E(lambda z: _sig(s * z) * h(z), sigma))
        assert abs(link.link(sigma, j) - ref) < 1e-11
    # sigmoid: m_2 = m_4 = 0 (by the independent quadrature too), m_1 > 0 > m_3
    assert abs(float(_E(lambda z: _sig(s * z) * he[2](z), sigma))) < 1e-20
    assert abs(float(_E(lambda z: _sig(s * z) * he[4](z), sigma))) < 1e-20
    assert link.link(sigma, 2) == 0.0 and link.link(sigma, 4) == 0.0
    assert link.link(sigma, 1) > 0 > link.link(sigma, 3)


def test_vectorized_and_gauss_hermite_would_be_wrong_at_large_sigma():
    sig = np.array([0.5, 20.0])
    out = link.rho_fcn(sig)
    assert out.shape == (2,) and math.isclose(out[1], link.rho_fcn(20.0))
    # a 20-point Gauss-Hermite rule misses the spike of phi'(sigma z) at sigma = 20 by a wide margin
    x, w = np.polynomial.hermite_e.hermegauss(20)
    gh = float(np.sum(w * link.dsigmoid(20.0 * x)) / math.sqrt(2 * math.pi))
    assert abs(gh - link.alpha(20.0, 0)) > 0.1 * link.alpha(20.0, 0)


def test_invert_link_roundtrip():
    for j in (1, 3):
        for sigma in (0.2, 1.0, 3.0, 7.0):
            assert math.isclose(link.invert_link(link.link(sigma, j), j=j), sigma, rel_tol=1e-6)
    assert link.invert_link(0.45, j=1) == pytest.approx(30.0)  # beyond sup m_1 = 1/sqrt(2 pi): the end point
    with pytest.raises(ValueError):
        link.rho_fcn(-1.0)
