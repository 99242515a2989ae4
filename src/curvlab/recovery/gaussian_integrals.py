"""Gaussian expectations of the sigmoid that the recovery paper needs, by adaptive quadrature.

* Definition 1:  alpha_q(sigma) = E[phi'(sigma z) z^q],  beta_q(sigma) = E[phi'(sigma z)^2 z^q],  z ~ N(0, 1),
  rho_FCN(sigma) = min{beta_0 - alpha_0^2, beta_2 - alpha_2^2} - alpha_1^2.
* Definition 2:  rho_CNN(sigma) = min{E[(phi'(z) z)^2], E[phi'(z)^2]},  z ~ N(0, sigma^2).
* Definition 3:  gamma_j(sigma) = E[phi(sigma z) z^j] and the link functions m_j = E[phi(sigma z) He_j(z)]:
  m_1 = gamma_1, m_2 = gamma_2 - gamma_0, m_3 = gamma_3 - 3 gamma_1, m_4 = gamma_4 + 3 gamma_0 - 6 gamma_2.
  For the sigmoid, phi - 1/2 is odd, so m_2 = m_4 = 0 and (phi' even) alpha_1 = 0.

Quadrature: scipy.integrate.quad on [0, inf) after folding z -> -z (every integrand here is even or
odd in z), with breakpoints at the sigmoid's scale 1/sigma. phi'(sigma z) is a spike of width 1/sigma,
which low-order Gauss-Hermite rules miss for large sigma; adaptive quadrature with the breakpoints does not.
Odd integrands use phi(sigma z) - 1/2 so the integrand decays and no cancellation is left to quad.
"""

from __future__ import annotations

import math
from functools import lru_cache

import numpy as np

_INV_SQRT_2PI = 1.0 / math.sqrt(2.0 * math.pi)
_HERMITE = {0: (1,), 1: (0, 1), 2: (-1, 0, 1), 3: (0, -3, 0, 1), 4: (3, 0, -6, 0, 1)}  # He_j coefficients


def sigmoid(u):
    return 0.5 * (1.0 + np.tanh(0.5 * u))


def dsigmoid(u):
    e = np.exp(-np.abs(u))
    return e / ((1.0 + e) * (1.0 + e))


def _half_line(f, sigma: float) -> float:
    """int_0^inf f(z) N(z) dz with breakpoints at multiples of 1/sigma."""
    from scipy.integrate import quad  # scipy.integrate costs ~0.5 s to import: only where a value is computed

    g = lambda z: f(z) * _INV_SQRT_2PI * math.exp(-0.5 * z * z)  # noqa: E731
    top = 40.0
    pts = sorted({p for p in (1.0 / sigma, 4.0 / sigma, 16.0 / sigma, 1.0, 4.0) if 0.0 < p < top})
    edges = [0.0, *pts, top]
    total = 0.0
    for a, b in zip(edges[:-1], edges[1:]):
        val, _ = quad(g, a, b, epsabs=1e-15, epsrel=1e-12, limit=200)
        total += val
    return total


def _check_sigma(sigma: float) -> float:
    sigma = float(sigma)
    if not sigma > 0 or not math.isfinite(sigma):
        raise ValueError(f"sigma must be a positive finite number, got {sigma}")
    return sigma


def _vectorize(fn):
    def wrapper(sigma, *args):
        if np.ndim(sigma) == 0:
            return fn(float(sigma), *args)
        return np.vectorize(lambda s: fn(float(s), *args), otypes=[float])(sigma)

    wrapper.__name__ = fn.__name__
    wrapper.__doc__ = fn.__doc__
    return wrapper


@_vectorize
@lru_cache(maxsize=65536)
def alpha(sigma: float, q: int) -> float:
    """alpha_q(sigma) = E[phi'(sigma z) z^q]."""
    sigma = _check_sigma(sigma)
    if q % 2:
        return 0.0  # phi' is even
    return 2.0 * _half_line(lambda z: dsigmoid(sigma * z) * z**q, sigma)


@_vectorize
@lru_cache(maxsize=65536)
def beta(sigma: float, q: int) -> float:
    """beta_q(sigma) = E[phi'(sigma z)^2 z^q]."""
    sigma = _check_sigma(sigma)
    if q % 2:
        return 0.0
    return 2.0 * _half_line(lambda z: dsigmoid(sigma * z) ** 2 * z**q, sigma)


@_vectorize
@lru_cache(maxsize=65536)
def gamma(sigma: float, j: int) -> float:
    """gamma_j(sigma) = E[phi(sigma z) z^j]."""
    sigma = _check_sigma(sigma)
    if j % 2 == 0:  # phi = 1/2 + odd part: only the constant survives
        return 0.5 * _gaussian_moment(j)
    return 2.0 * _half_line(lambda z: (sigmoid(sigma * z) - 0.5) * z**j, sigma)


def _gaussian_moment(j: int) -> float:
    return 0.0 if j % 2 else float(np.prod(np.arange(j - 1, 0, -2))) if j else 1.0


@_vectorize
def link(sigma: float, j: int) -> float:
    """m_j(sigma) = E[phi(sigma z) He_j(z)] (Definition 3's g_j)."""
    if j not in _HERMITE:
        raise ValueError(f"link functions are defined for j in 0..4, got {j}")
    return float(sum(c * gamma(sigma, i) for i, c in enumerate(_HERMITE[j]) if c))


@_vectorize
def rho_fcn(sigma: float) -> float:
    """rho_FCN(sigma) of Definition 1."""
    a0, a1, a2 = alpha(sigma, 0), alpha(sigma, 1), alpha(sigma, 2)
    return min(beta(sigma, 0) - a0**2, beta(sigma, 2) - a2**2) - a1**2


@_vectorize
def rho_cnn(sigma: float) -> float:
    """rho_CNN(sigma) of Definition 2 (z ~ N(0, sigma^2): E[(phi'(z) z)^2] = sigma^2 beta_2(sigma))."""
    return min(sigma**2 * beta(sigma, 2), beta(sigma, 0))


# --------------------------------------------------------------------------------------------------
# inverting a link function (magnitude recovery of the tensor method)


@lru_cache(maxsize=8)
def _table(j: int, sigma_max: float, points: int) -> tuple[np.ndarray, np.ndarray]:
    s = np.concatenate([np.linspace(1e-4, 1.0, points // 4, endpoint=False),
                        np.geomspace(1.0, sigma_max, points - points // 4)])
    return s, np.asarray(link(s, j))


def invert_link(values, j: int = 1, sigma_max: float = 30.0, points: int = 1200) -> np.ndarray:
    """sigma >= 0 with m_j(sigma) = value, for a monotone m_j on (0, sigma_max] (m_1 increases, m_3
    decreases). Values beyond the range reached on (0, sigma_max] map to the end points. Table lookup
    (monotone interpolation) then a few secant/bisection steps on the exact m_j (scipy brentq)."""
    from scipy.optimize import brentq

    s, v = _table(j, float(sigma_max), int(points))
    sign = 1.0 if v[-1] > v[0] else -1.0
    vs = sign * v
    if np.any(np.diff(vs) <= 0):
        raise ValueError(f"m_{j} is not monotone on (0, {sigma_max}]; cannot invert it")
    vals = np.atleast_1d(np.asarray(values, dtype=float))
    out = np.empty_like(vals)
    for i, val in enumerate(sign * vals):
        if not np.isfinite(val):
            out[i] = np.nan
        elif val <= vs[0]:
            out[i] = 0.0 if val <= 0 else s[0]
        elif val >= vs[-1]:
            out[i] = s[-1]
        else:
            k = int(np.searchsorted(vs, val))
            out[i] = brentq(lambda x: sign * link(x, j) - val, s[k - 1], s[k], xtol=1e-12, rtol=1e-10)
    return out.reshape(np.shape(values)) if np.ndim(values) else out[0]
