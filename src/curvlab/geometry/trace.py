"""Hessian trace and spectral density from matrix-vector products only (PyHessian, curvlinops).

* :func:`hutchpp_trace`: Hutch++ (Meyer, Musco, Musco, Woodruff 2021). A third of the ``matvecs``
  sketch the top of the spectrum, whose trace is taken exactly; Hutchinson's estimator with
  Rademacher probes covers the rest, deflated. The variance is O(1/m^2) against Hutchinson's O(1/m).
* :func:`slq`: stochastic Lanczos quadrature (Ubaru, Chen, Saad 2017; PyHessian's density). Per
  random unit probe v, ``steps`` Lanczos iterations (fully reorthogonalised) give the tridiagonal T
  whose eigenpairs (theta_j, u_j) are the nodes and weights tau_j = u_j[0]^2 of a Gauss quadrature
  for v^T g(H) v = sum_j tau_j g(theta_j), exact for polynomials g of degree < 2 ``steps``. Averaged
  over probes, the weighted nodes estimate the eigenvalue density; :func:`density` smooths them.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from curvlab.geometry.spectral import MatVec


def _rademacher(p: int, m: int, gen: torch.Generator, like: Tensor) -> Tensor:
    r = torch.randint(0, 2, (m, p), generator=gen).to(dtype=like.dtype, device=like.device)
    return 2.0 * r - 1.0


def _apply(matvec: MatVec, V: Tensor) -> Tensor:
    """matvec applied to each row of V."""
    return torch.stack([matvec(v) for v in V]) if len(V) else V


def hutchpp_trace(matvec: MatVec, p: int, like: Tensor, matvecs: int = 99, seed: int = 0) -> float:
    """tr(H) of a symmetric p x p operator from ``matvecs`` products (rounded down to a multiple of 3)."""
    k = max(1, matvecs // 3)
    gen = torch.Generator().manual_seed(seed)
    S, G = _rademacher(p, k, gen, like), _rademacher(p, k, gen, like)
    Q, _ = torch.linalg.qr(_apply(matvec, S).T)  # (p, k): an orthonormal basis of H S
    top = torch.sum(Q * _apply(matvec, Q.T).T)  # tr(Q^T H Q)
    G = G - (G @ Q) @ Q.T  # (I - Q Q^T) G, row by row
    rest = torch.sum(G * _apply(matvec, G)) / k
    return float(top + rest)


@dataclass
class SLQResult:
    nodes: Tensor  # (probes, steps) Ritz values theta_j per probe
    weights: Tensor  # (probes, steps) tau_j = u_j[0]^2 per probe (each row sums to 1)
    matvecs: int

    def trace(self, p: int) -> float:
        """tr(H) = p E[v^T H v] for unit v: the quadrature estimate."""
        return float(p * (self.nodes * self.weights).sum(1).mean())


def _lanczos(matvec: MatVec, v: Tensor, steps: int) -> Tensor:
    """The tridiagonal T (steps x steps, fewer on an invariant subspace) of Lanczos from unit v."""
    basis, alphas, betas = [v], [], []
    for j in range(steps):
        w = matvec(basis[j])
        alphas.append(torch.dot(w, basis[j]))
        V = torch.stack(basis)
        w = w - V.T @ (V @ w)
        w = w - V.T @ (V @ w)  # twice: full reorthogonalisation
        beta = w.norm()
        if j == steps - 1 or beta <= 1e-12 * alphas[0].abs().clamp_min(1.0):
            break
        betas.append(beta)
        basis.append(w / beta)
    a, b = torch.stack(alphas), torch.stack(betas) if betas else alphas[0].new_zeros(0)
    return torch.diag(a) + torch.diag(b, 1) + torch.diag(b, -1)


def slq(matvec: MatVec, p: int, like: Tensor, steps: int = 30, probes: int = 4, seed: int = 0) -> SLQResult:
    """Gauss-quadrature nodes and weights of the spectrum of a symmetric operator, ``probes`` Rademacher
    probes of ``steps`` Lanczos iterations each."""
    steps = min(steps, p)
    gen = torch.Generator().manual_seed(seed)
    nodes = torch.zeros(probes, steps, dtype=torch.float64)
    weights = torch.zeros(probes, steps, dtype=torch.float64)
    count = 0
    for i, v in enumerate(_rademacher(p, probes, gen, like)):
        T = _lanczos(matvec, v / v.norm(), steps).to("cpu", torch.float64)
        count += T.shape[0]
        theta, U = torch.linalg.eigh(T)
        nodes[i, : len(theta)], weights[i, : len(theta)] = theta, U[0] ** 2
    return SLQResult(nodes, weights, count)


def density(result: SLQResult, grid: Tensor, sigma: float) -> Tensor:
    """The eigenvalue density on ``grid``: the weighted nodes smoothed by a Gaussian of width ``sigma``,
    averaged over probes (integrates to 1)."""
    g = grid.to(torch.float64)[:, None, None]
    kernel = torch.exp(-0.5 * ((g - result.nodes) / sigma) ** 2) / (sigma * (2 * torch.pi) ** 0.5)
    return (kernel * result.weights).sum(-1).mean(-1)
