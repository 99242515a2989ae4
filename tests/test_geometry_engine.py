"""The model-agnostic engine (curvlab.geometry on torch.func) against independent references in
float64: the DeepMLP closed forms, autograd, dense ``torch.func.hessian``, brute-force Jacobian Grams
and dense eigendecompositions; on the paper's MLP and on a small conv net."""

from __future__ import annotations

import math

import pytest
import torch
from geometry_helpers import tiny
from torch import nn
from torch.func import hessian, jacrev

from curvlab.geometry.flat import flatten
from curvlab.geometry.functional import FunctionalModel
from curvlab.geometry.gradients import loss_grad_and_gbar
from curvlab.geometry.ntk import ntk_gram, ntk_matvec, ntk_stats_matrix_free
from curvlab.geometry.spectral import HVP_MODES, extreme_eigenvalues, hvp_operator, loss_hessian_extremes
from curvlab.geometry.trace import density, hutchpp_trace, slq
from curvlab.rsc import gbar as closed_form
from curvlab.rsc.losses import square_loss
from curvlab.rsc.ntk import empirical_ntk

TIGHT = {"tol": 1e-12, "maxiter": 3000, "ncv": 20}


def convnet(k: int = 2, seed: int = 0) -> tuple[nn.Module, torch.Tensor, torch.Tensor]:
    """A tiny float64 conv net (conv, tanh, conv, softplus, linear) and data: 5 images of 1 x 6 x 6."""
    torch.manual_seed(seed)
    net = nn.Sequential(nn.Conv2d(1, 3, 3), nn.Tanh(), nn.Conv2d(3, 2, 3, padding=1), nn.Softplus(),
                        nn.Flatten(), nn.Linear(2 * 4 * 4, k)).to(torch.float64)
    x = torch.randn(5, 1, 6, 6, dtype=torch.float64)
    return net, x, torch.randn(5, k, dtype=torch.float64)


def test_a_module_as_a_function_of_flat_theta():
    model, x, _ = tiny(k=3)
    fm = FunctionalModel.of(model, model.params())
    theta = fm.theta()
    torch.testing.assert_close(theta, flatten(model.params()), rtol=0, atol=0)  # the paper's order
    torch.testing.assert_close(fm(theta, x), model(x), rtol=0, atol=0)
    moved = fm(theta + 0.1, x)  # the module's own parameters are untouched
    assert not torch.allclose(moved, model(x)) and torch.equal(fm.theta(), theta)


@pytest.mark.parametrize("k", [1, 3])
def test_generic_gradient_and_gbar_equal_the_mlp_closed_form(k):
    model, x, y = tiny(k=k, depth=3)
    fm = FunctionalModel.of(model, model.params())
    got = loss_grad_and_gbar(fm, fm.theta(), x, y, square_loss)
    ref = closed_form.loss_grad_and_gbar(model, x, y)
    torch.testing.assert_close(got.loss, ref.loss, rtol=1e-10, atol=0)
    torch.testing.assert_close(got.grad, flatten(ref.grad), rtol=1e-10, atol=1e-14)
    torch.testing.assert_close(got.gbar, flatten(ref.gbar), rtol=1e-10, atol=1e-14)


def test_generic_gradient_and_gbar_on_a_conv_net_equal_autograd_and_the_jacobian_mean():
    net, x, y = convnet(k=2)
    fm = FunctionalModel.of(net)
    theta = fm.theta()
    got = loss_grad_and_gbar(fm, theta, x, y, square_loss)
    auto = torch.autograd.grad(square_loss(net(x), y), list(net.parameters()))
    torch.testing.assert_close(got.grad, flatten(auto), rtol=1e-12, atol=1e-15)
    J = jacrev(lambda th: fm(th, x))(theta)  # (n, k, p), the whole Jacobian: the reference
    torch.testing.assert_close(got.gbar, J.mean((0, 1)), rtol=1e-12, atol=1e-15)


@pytest.mark.parametrize("mode", HVP_MODES)
def test_every_hvp_mode_equals_the_dense_hessian_of_a_conv_net(mode):
    net, x, y = convnet()
    fm = FunctionalModel.of(net)
    theta, loss = fm.theta(), fm.loss_fn(square_loss, x, y)
    H = hessian(loss)(theta)
    op = hvp_operator(loss, theta, mode)
    V = torch.randn(3, theta.numel(), dtype=torch.float64)
    for v in V:
        torch.testing.assert_close(op(v), H @ v, rtol=1e-10, atol=1e-12)


def test_loss_hessian_extremes_of_a_conv_net_and_a_warm_start():
    net, x, y = convnet()
    fm = FunctionalModel.of(net)
    theta, loss = fm.theta(), fm.loss_fn(square_loss, x, y)
    ev = torch.linalg.eigvalsh(hessian(loss)(theta))
    top, low = loss_hessian_extremes(loss, theta, **TIGHT)
    assert top.value == pytest.approx(float(ev[-1]), rel=1e-9) and low.value == pytest.approx(float(ev[0]), rel=1e-8)
    # warm start: at a nearby iterate (the next check of a run), from the last eigenvector, fewer HVPs
    near = theta + 1e-3 * torch.randn(theta.shape, generator=torch.Generator().manual_seed(1), dtype=theta.dtype)
    opts = {"tol": 1e-10, "maxiter": 3000, "ncv": 6}
    cold, _ = loss_hessian_extremes(loss, near, with_min=False, **opts)
    warm, _ = loss_hessian_extremes(loss, near, with_min=False, v0_max=top.vector, **opts)
    assert warm.value == pytest.approx(cold.value, rel=1e-9) and warm.matvecs < cold.matvecs


def _spd(p: int, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    Q, _ = torch.linalg.qr(torch.randn(p, p, generator=g, dtype=torch.float64))
    ev = torch.cat([torch.tensor([40.0, 25.0, 10.0], dtype=torch.float64), torch.rand(p - 3, generator=g,
                                                                                       dtype=torch.float64)])
    return (Q * ev) @ Q.T


def test_hutchpp_is_exact_once_its_sketch_spans_the_space_and_close_with_fewer_products():
    A = _spd(30)
    like = torch.zeros(30, dtype=torch.float64)
    assert hutchpp_trace(lambda v: A @ v, 30, like, matvecs=90) == pytest.approx(float(A.trace()), rel=1e-12)
    estimates = [hutchpp_trace(lambda v: A @ v, 30, like, matvecs=24, seed=s) for s in range(20)]
    err = abs(sum(estimates) / 20 - float(A.trace())) / float(A.trace())
    assert err < 0.02  # the top three eigenvalues (75 of ~90) are sketched exactly; the rest is sampled


def test_slq_recovers_the_spectrum_with_full_lanczos_and_its_trace_and_density_with_fewer_steps():
    p = 25
    A = _spd(p, seed=1)
    like = torch.zeros(p, dtype=torch.float64)
    ev = torch.linalg.eigvalsh(A)
    full = slq(lambda v: A @ v, p, like, steps=p, probes=2)
    for nodes, w in zip(full.nodes, full.weights):
        keep = w > 1e-10
        torch.testing.assert_close(nodes[keep].sort().values, ev, rtol=1e-8, atol=1e-8)
    few = slq(lambda v: A @ v, p, like, steps=8, probes=40, seed=3)
    assert few.trace(p) == pytest.approx(float(ev.sum()), rel=0.1)
    grid = torch.linspace(-2.0, 45.0, 4001, dtype=torch.float64)
    rho = density(few, grid, sigma=0.3)
    assert float(rho.sum() * (grid[1] - grid[0])) == pytest.approx(1.0, abs=1e-3)


@pytest.mark.parametrize("kind,k", [("mean", 1), ("mean", 3), ("full", 3)])
def test_chunked_ntk_gram_equals_the_mlp_closed_form(kind, k):
    model, x, _ = tiny(k=k, n=7, depth=3)
    fm = FunctionalModel.of(model, model.params())
    got = ntk_gram(fm, fm.theta(), x, kind=kind, chunk=3)  # three chunks of 3, 3, 1 inputs
    torch.testing.assert_close(got, empirical_ntk(model, x, kind=kind), rtol=1e-10, atol=1e-13)


@pytest.mark.parametrize("kind", ["mean", "full"])
def test_ntk_of_a_conv_net_chunked_and_matrix_free_equal_the_brute_force_jacobian_gram(kind):
    net, x, y = convnet(k=2)
    fm = FunctionalModel.of(net)
    theta = fm.theta()
    J = jacrev(lambda th: fm(th, x))(theta)  # (n, k, p)
    J = J.mean(1) if kind == "mean" else J.permute(1, 0, 2).reshape(-1, theta.numel())
    K = J @ J.T
    torch.testing.assert_close(ntk_gram(fm, theta, x, kind=kind, chunk=2), K, rtol=1e-12, atol=1e-14)
    mv = ntk_matvec(fm, theta, x, kind)
    v = torch.randn(K.shape[0], dtype=torch.float64)
    torch.testing.assert_close(mv(v), K @ v, rtol=1e-12, atol=1e-14)
    stats = ntk_stats_matrix_free(fm, theta, x, kind, **TIGHT)
    ev = torch.linalg.eigvalsh(K)
    assert stats["lambda_max"] == pytest.approx(float(ev[-1]), rel=1e-9)
    assert stats["lambda_min"] == pytest.approx(float(ev[0]), rel=1e-6, abs=1e-12 * float(ev[-1]))
    if kind == "mean":  # the identity ||g_bar||^2 = 1^T K 1 / n^2, against the fused gradient pass
        gbar = loss_grad_and_gbar(fm, theta, x, y, square_loss).gbar
        assert stats["gbar_sq"] == pytest.approx(float(gbar.pow(2).sum()), rel=1e-12)
    assert math.isfinite(stats["matvecs"])


def test_generic_lipschitz_norms_equal_the_mlp_closed_form_and_a_conv_nets_jacobians():
    from curvlab.geometry.gradients import predictor_gradient_norms
    from curvlab.rsc.lipschitz import predictor_gradient_norms as closed

    model, x, _ = tiny(k=3, n=7, depth=3)
    fm = FunctionalModel.of(model, model.params())
    for got, ref in zip(predictor_gradient_norms(fm, fm.theta(), x, chunk=3), closed(model, x)):
        torch.testing.assert_close(got, ref, rtol=1e-10, atol=1e-14)
    net, xc, _ = convnet(k=2)
    fm = FunctionalModel.of(net)
    theta = fm.theta()
    gt, gx = predictor_gradient_norms(fm, theta, xc, chunk=2)
    J = jacrev(lambda th: fm(th, xc))(theta)  # (n, k, p)
    torch.testing.assert_close(gt, J.norm(dim=-1).T, rtol=1e-12, atol=1e-15)
    Jx = torch.stack([jacrev(lambda xi: fm(theta, xi[None])[0])(xi) for xi in xc])  # (n, k, 1, 6, 6)
    torch.testing.assert_close(gx, Jx.flatten(2).norm(dim=-1).T, rtol=1e-12, atol=1e-15)


def test_layer_distances_read_a_conv_kernel_as_its_matrix():
    from curvlab.geometry.distances import layer_distances

    net, _, _ = convnet()
    fm = FunctionalModel.of(net)
    p0 = [p.detach().clone() for p in fm.params()]
    moved = [p + 0.01 * torch.randn_like(p) for p in p0]
    d = layer_distances(fm.names, moved, p0)
    conv = (moved[0] - p0[0]).reshape(3, -1)  # (out, in kh kw) = (3, 9)
    assert d["spec/0.weight"] == pytest.approx(float(torch.linalg.svdvals(conv)[0]), rel=1e-12)
    assert "spec/0.bias" not in d and d["euclid"] == pytest.approx(float(flatten(moved).sub(flatten(p0)).norm()))
    assert d["spec_max"] == max(v for k, v in d.items() if k.startswith("spec/"))
