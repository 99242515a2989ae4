"""Hessian-vector products and Lanczos extremes vs dense torch.func.hessian and closed forms."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy.sparse.linalg import LinearOperator, eigsh
from torch.func import hessian

from curvlab.geometry.flat import flatten
from curvlab.geometry.functional import FunctionalModel
from curvlab.geometry.spectral import (
    extreme_eigenvalues,
    hvp_operator,
    loss_hessian_extremes,
    predictor_hessian_norm,
    operator_norm,
)
from curvlab.rsc.gbar import loss_grad_and_gbar
from curvlab.rsc.losses import square_loss
from geometry_helpers import tiny

TIGHT = dict(tol=1e-10, maxiter=2000, ncv=20)


def test_flat_view_matches_model_and_fused_gradient():
    model, x, y = tiny(k=3)
    fl = FunctionalModel.of(model, model.params())
    theta = flatten(model.params())
    assert theta.numel() == sum(p.numel() for p in model.params())
    torch.testing.assert_close(fl(theta, x), model(x))
    fused = loss_grad_and_gbar(model, x, y)
    torch.testing.assert_close(square_loss(fl(theta, x), y), fused.loss)
    g = torch.func.grad(fl.loss_fn(square_loss, x, y))(theta)
    torch.testing.assert_close(g, torch.cat([t.reshape(-1) for t in fused.grad]))
    for a, b in zip(fl.unflatten(theta), model.params()):
        assert torch.equal(a, b.detach())


def test_hvp_matches_dense_hessian():
    model, x, y = tiny()
    fl = FunctionalModel.of(model, model.params())
    theta = flatten(model.params())
    H = hessian(fl.loss_fn(square_loss, x, y))(theta)
    op = hvp_operator(fl.loss_fn(square_loss, x, y), theta)
    for s in range(3):
        v = torch.randn(theta.shape, generator=torch.Generator().manual_seed(s), dtype=theta.dtype)
        torch.testing.assert_close(op(v), H @ v)


@pytest.mark.parametrize("k,depth", [(1, 2), (2, 3)])
def test_loss_hessian_extremes_match_dense(k, depth):
    model, x, y = tiny(k=k, depth=depth)
    fl = FunctionalModel.of(model, model.params())
    theta = flatten(model.params())
    ev = torch.linalg.eigvalsh(hessian(fl.loss_fn(square_loss, x, y))(theta))
    top, low = loss_hessian_extremes(fl.loss_fn(square_loss, x, y), theta, **TIGHT)
    assert top.converged and low.converged
    assert top.value == pytest.approx(float(ev[-1]), rel=1e-8)
    assert low.value == pytest.approx(float(ev[0]), rel=1e-6, abs=1e-9 * float(ev[-1]))
    assert ev[0] < 0 < ev[-1]  # the test model is off init: an indefinite loss Hessian


@pytest.mark.parametrize("k,output", [(1, 0), (3, 2)])
def test_predictor_hessian_norm_matches_dense(k, output):
    model, x, y = tiny(k=k)
    fl = FunctionalModel.of(model, model.params())
    theta = flatten(model.params())
    for i in range(2):
        H = hessian(lambda th: fl(th, x[i][None])[0, output])(theta)
        ref = float(torch.linalg.matrix_norm(H, ord=2))
        r = predictor_hessian_norm(lambda th: fl(th, x[i][None])[0, output], theta, **TIGHT)
        assert abs(r.value) == pytest.approx(ref, rel=1e-8)


def test_depth1_predictor_hessian_closed_form():
    """f = v^T tanh(W x / sqrt(d)) / sqrt(m): d2f/dW_j dW_j = v_j phi''(z_j) x x^T / (d sqrt m),
    d2f/dW_j dv_j = phi'(z_j) x / sqrt(d m), d2f/dv2 = 0 (all other blocks vanish)."""
    model, x, _ = tiny(d=4, m=5, depth=1)
    fl = FunctionalModel.of(model, model.params())
    theta = flatten(model.params())
    W, v = model.weights[0].detach(), model.head.detach()[0]
    m, d = W.shape
    xi = x[0]
    z = W @ xi / math.sqrt(d)
    t = torch.tanh(z)
    d1, d2 = 1 - t**2, -2 * t * (1 - t**2)
    p = m * d + m
    H = torch.zeros(p, p, dtype=torch.float64)
    for j in range(m):
        blk = slice(j * d, (j + 1) * d)
        H[blk, blk] = v[j] * d2[j] * torch.outer(xi, xi) / (d * math.sqrt(m))
        H[blk, m * d + j] = d1[j] * xi / math.sqrt(d * m)
        H[m * d + j, blk] = d1[j] * xi / math.sqrt(d * m)
    torch.testing.assert_close(hessian(lambda th: fl(th, xi[None])[0, 0])(theta), H)
    r = predictor_hessian_norm(lambda th: fl(th, xi[None])[0, 0], theta, **TIGHT)
    assert abs(r.value) == pytest.approx(float(torch.linalg.matrix_norm(H, ord=2)), rel=1e-8)


def test_linear_regression_closed_form():
    """L(w) = ||X w - y||^2 / n: grad^2 L = 2 X^T X / n, whatever w."""
    gen = torch.Generator().manual_seed(1)
    n, p = 30, 12
    X = torch.randn(n, p, generator=gen, dtype=torch.float64) * torch.linspace(0.1, 3.0, p, dtype=torch.float64)
    y = torch.randn(n, generator=gen, dtype=torch.float64)
    w = torch.randn(p, generator=gen, dtype=torch.float64)
    ev = np.linalg.eigvalsh(2 * (X.T @ X).numpy() / n)
    op = hvp_operator(lambda th: (X @ th - y).pow(2).sum() / n, w)
    top, low = extreme_eigenvalues(op, p, w, **TIGHT)
    assert top.value == pytest.approx(ev[-1], rel=1e-9)
    assert low.value == pytest.approx(ev[0], rel=1e-7)
    assert operator_norm(op, p, w, **TIGHT).value == pytest.approx(ev[-1], rel=1e-9)
    # the eigenvector is one: H u = lambda u
    u = top.vector
    torch.testing.assert_close(op(u), top.value * u)


def test_logistic_regression_closed_form():
    """L(w) = mean log(1 + exp(-y_i x_i^T w)): grad^2 L = X^T diag(s_i (1 - s_i)) X / n."""
    gen = torch.Generator().manual_seed(2)
    n, p = 40, 9
    X = torch.randn(n, p, generator=gen, dtype=torch.float64)
    y = torch.randint(0, 2, (n,), generator=gen).to(torch.float64) * 2 - 1
    w = torch.randn(p, generator=gen, dtype=torch.float64)
    s = torch.sigmoid(y * (X @ w))
    ev = np.linalg.eigvalsh((X.T * (s * (1 - s))) @ X / n)
    op = hvp_operator(lambda th: torch.nn.functional.softplus(-y * (X @ th)).mean(), w)
    top, low = extreme_eigenvalues(op, p, w, **TIGHT)
    assert top.value == pytest.approx(ev[-1], rel=1e-9)
    assert low.value == pytest.approx(ev[0], rel=1e-7)


def test_indefinite_operator_spectral_norm_and_tiny_dense_fallback():
    gen = torch.Generator().manual_seed(3)
    Q, _ = torch.linalg.qr(torch.randn(20, 20, generator=gen, dtype=torch.float64))
    lam = torch.linspace(-1.0, 0.7, 20, dtype=torch.float64)
    A = Q @ torch.diag(lam) @ Q.T
    like = torch.zeros(20, dtype=torch.float64)
    r = operator_norm(lambda v: A @ v, 20, like, **TIGHT)
    assert r.value == pytest.approx(-1.0, rel=1e-9)
    top, low = extreme_eigenvalues(lambda v: A @ v, 20, like, **TIGHT)
    assert (top.value, low.value) == (pytest.approx(0.7, rel=1e-9), pytest.approx(-1.0, rel=1e-9))
    B = torch.tensor([[2.0, 1.0], [1.0, -3.0]], dtype=torch.float64)
    top, low = extreme_eigenvalues(lambda v: B @ v, 2, like[:2])
    ev = torch.linalg.eigvalsh(B)
    assert (top.value, low.value) == (pytest.approx(float(ev[1])), pytest.approx(float(ev[0])))


def test_loose_tolerance_reports_nonconvergence_honestly():
    gen = torch.Generator().manual_seed(4)
    Q, _ = torch.linalg.qr(torch.randn(200, 200, generator=gen, dtype=torch.float64))
    lam = torch.linspace(0.0, 1.0, 200, dtype=torch.float64) ** 0.05  # clustered top: slow
    A = Q @ torch.diag(lam) @ Q.T
    r = operator_norm(lambda v: A @ v, 200, torch.zeros(200, dtype=torch.float64), tol=1e-14, maxiter=2, ncv=4)
    assert not r.converged
    assert r.matvecs > 0


def _spectrum(lam: torch.Tensor, seed: int) -> torch.Tensor:
    Q, _ = torch.linalg.qr(torch.randn(len(lam), len(lam), generator=torch.Generator().manual_seed(seed),
                                       dtype=torch.float64))
    return Q @ torch.diag(lam) @ Q.T


def test_an_isolated_top_eigenvalue_takes_fewer_products_than_arpack_at_the_same_tolerance():
    lam = torch.cat([torch.linspace(0.0, 1.0, 299, dtype=torch.float64), torch.tensor([10.0], dtype=torch.float64)])
    A = _spectrum(lam, 5)
    like = torch.zeros(300, dtype=torch.float64)
    r = operator_norm(lambda v: A @ v, 300, like, tol=1e-6, ncv=12, maxiter=300)
    count = [0]

    def mv(v):
        count[0] += 1
        return A.numpy() @ v

    eigsh(LinearOperator((300, 300), matvec=mv, dtype=np.float64), k=1, which="LM", tol=1e-6, ncv=12,
          v0=np.random.default_rng(0).standard_normal(300))
    assert r.converged and r.value == pytest.approx(10.0, rel=1e-6)
    assert r.matvecs < count[0]
    assert torch.linalg.norm(A @ r.vector - r.value * r.vector) <= 1e-6 * 10.0


def test_a_clustered_spectrum_goes_on_in_arpack_from_the_lanczos_ritz_vector():
    lam = torch.linspace(0.0, 1.0, 400, dtype=torch.float64) ** 0.2  # clustered top: ncv steps are not enough
    A = _spectrum(lam, 6)
    top, low = extreme_eigenvalues(lambda v: A @ v, 400, torch.zeros(400, dtype=torch.float64),
                                   tol=1e-10, ncv=8, maxiter=5000)
    assert top.converged and top.matvecs > 8
    assert (top.value, low.value) == (pytest.approx(1.0, rel=1e-9), pytest.approx(0.0, abs=1e-9))


def test_a_nan_product_gives_a_nan_eigenvalue_flagged_not_converged():
    like = torch.zeros(10, dtype=torch.float64)
    r = operator_norm(lambda v: torch.full_like(v, float("nan")), 10, like)
    assert math.isnan(r.value) and not r.converged and r.vector is None
