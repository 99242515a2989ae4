"""Structured NTK and predictor gradient norms vs brute-force per-sample Jacobians (jacrev + vmap)."""

from __future__ import annotations

import pytest
import torch
from torch.func import jacrev, vmap

from curvlab.geometry.flat import flatten
from curvlab.geometry.functional import FunctionalModel
from curvlab.geometry.ntk import ntk_stats
from curvlab.rsc.data import duplicate_rows
from curvlab.rsc.gbar import loss_grad_and_gbar
from curvlab.rsc.lipschitz import predictor_gradient_norms
from curvlab.rsc.ntk import empirical_ntk
from geometry_helpers import tiny


def per_sample_jacobian(model, x):
    """J[i, h, :] = grad_theta f_h(theta; x_i), shape (n, k, p)."""
    fl = FunctionalModel.of(model, model.params())
    theta = flatten(model.params())
    return vmap(lambda xi: jacrev(lambda th: fl(th, xi[None])[0])(theta))(x)


@pytest.mark.parametrize("k,depth", [(1, 2), (1, 3), (3, 2)])
def test_ntk_matches_jacobian(k, depth):
    model, x, y = tiny(k=k, depth=depth, n=9)
    J = per_sample_jacobian(model, x)
    n = x.shape[0]
    Jm = J.mean(1)  # gradient of the output-averaged predictor (1/k) sum_h f_h
    torch.testing.assert_close(empirical_ntk(model, x, "mean"), Jm @ Jm.T)
    Jf = J.transpose(0, 1).reshape(k * n, -1)  # row h * n + i
    torch.testing.assert_close(empirical_ntk(model, x, "full"), Jf @ Jf.T)


@pytest.mark.parametrize("k", [1, 4])
def test_gbar_identity_and_lambda_min(k):
    """||g_bar||^2 = 1^T K 1 / n^2 (Remark 5.5; Definition C.1 for k outputs) for both kernels."""
    model, x, y = tiny(k=k, n=8)
    gbar_sq = float(flatten(loss_grad_and_gbar(model, x, y).gbar).pow(2).sum())
    for kind in ("mean", "full"):
        K = empirical_ntk(model, x, kind)
        st = ntk_stats(K)
        assert st.gbar_sq == pytest.approx(gbar_sq, rel=1e-10)
        ev = torch.linalg.eigvalsh(K)
        assert st.lambda_min == pytest.approx(float(ev[0]), rel=1e-10, abs=1e-14)
        assert st.lambda_max == pytest.approx(float(ev[-1]), rel=1e-10)
        assert st.lambda_min <= st.quad_rsc <= st.lambda_max  # Rayleigh quotient at v = 1/sqrt(N)
        assert st.trace_mean == pytest.approx(float(torch.diagonal(K).mean()))


def test_duplicated_inputs_make_the_ntk_singular_but_not_gbar():
    """Remark 5.6: x_i = x_j gives lambda_min(K) = 0 while ||g_bar|| stays positive."""
    model, x, y = tiny(d=6, m=12, n=10)
    labels = torch.arange(10)
    xd, lab, _ = duplicate_rows(x, labels, torch.arange(10), 0.3, 0.0, seed=0)
    st = ntk_stats(empirical_ntk(model, xd))
    assert abs(st.lambda_min) < 1e-12 * st.lambda_max
    assert st.n_small >= 3
    assert st.gbar_sq > 1e-6
    base = ntk_stats(empirical_ntk(model, x))
    assert base.lambda_min > 1e-8 * base.lambda_max  # the undisturbed inputs are not degenerate


def test_ntk_float32_model_accumulates_in_float64():
    model, x, _ = tiny(n=6)
    K64 = empirical_ntk(model, x)
    K32 = empirical_ntk(model.float(), x.float())
    assert K32.dtype == torch.float64
    torch.testing.assert_close(K32, K64, rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("k", [1, 3])
def test_predictor_gradient_norms_match_jacobians(k):
    model, x, _ = tiny(k=k, depth=3, n=6)
    gt, gx = predictor_gradient_norms(model, x)
    J = per_sample_jacobian(model, x)  # (n, k, p)
    torch.testing.assert_close(gt, J.norm(dim=2).T)
    fl = FunctionalModel.of(model, model.params())
    theta = flatten(model.params())
    Jx = vmap(jacrev(lambda xi: fl(theta, xi[None])[0]))(x)  # (n, k, d)
    torch.testing.assert_close(gx, Jx.norm(dim=2).T)
