"""Fused loss gradient and g_bar against brute force (per-sample gradients, dense NTK), float64."""

import pytest
import torch
from torch.func import functional_call, jacrev, vmap

from curvlab.geometry.flat import flatten
from curvlab.rsc.gbar import loss_grad_and_gbar
from curvlab.rsc.init import rsc_init
from curvlab.rsc.losses import square_loss
from curvlab.rsc.model import DeepMLP


def _setup(k: int, activation: str, n: int = 9):
    model = DeepMLP(6, 5, 3, out_dim=k, activation=activation).double()
    rsc_init(model, 1.0, torch.Generator().manual_seed(3))
    g = torch.Generator().manual_seed(4)
    x = torch.randn(n, 6, generator=g, dtype=torch.float64)
    y = torch.randn(n, k, generator=g, dtype=torch.float64)
    return model, x, y


def _per_sample_jacobians(model: DeepMLP, x: torch.Tensor) -> torch.Tensor:
    """J[i, h, :] = d f_h(theta; x_i) / d theta, flattened in model.params() order."""
    names = [n for n, _ in model.named_parameters()]
    order = [names.index(n) for n in ("weights.%d" % l for l in range(model.depth))] + [names.index("head")]
    params = {n: p.detach() for n, p in model.named_parameters()}

    def f(p, xi):
        return functional_call(model, p, (xi[None],))[0]

    jac = vmap(jacrev(f), in_dims=(None, 0))(params, x)  # dict name -> (n, k, *shape)
    flat = [jac[names[i]].reshape(x.shape[0], model.out_dim, -1) for i in order]
    return torch.cat(flat, dim=2)


@pytest.mark.parametrize("k", [1, 3])
@pytest.mark.parametrize("activation", ["tanh", "sigmoid", "softplus", "gelu", "silu", "relu"])
def test_fused_matches_brute_force(k, activation):
    model, x, y = _setup(k, activation)
    fused = loss_grad_and_gbar(model, x, y)
    J = _per_sample_jacobians(model, x)  # (n, k, p)
    n = x.shape[0]
    residual = (model(x) - y).detach()
    grad_ref = (2.0 / n) * torch.einsum("nk,nkp->p", residual, J)
    gbar_ref = J.mean(dim=(0, 1))
    torch.testing.assert_close(flatten(fused.grad), grad_ref, rtol=1e-12, atol=1e-14)
    torch.testing.assert_close(flatten(fused.gbar), gbar_ref, rtol=1e-12, atol=1e-14)
    torch.testing.assert_close(fused.loss, square_loss(model(x), y).detach(), rtol=1e-14, atol=0)
    # autograd of the loss as a second, independent reference
    auto = torch.autograd.grad(square_loss(model(x), y), model.params())
    torch.testing.assert_close(flatten(fused.grad), flatten(auto), rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("k", [1, 4])
def test_gbar_norm_is_ntk_quadratic_form(k):
    """||g_bar||^2 = 1^T K 1 / (nk)^2 with K the (nk x nk) empirical NTK (Remark 5.5)."""
    model, x, y = _setup(k, "tanh", n=7)
    J = _per_sample_jacobians(model, x).reshape(7 * k, -1)
    K = J @ J.T
    ones = torch.ones(7 * k, dtype=torch.float64)
    gbar = loss_grad_and_gbar(model, x, y).gbar
    sq = sum(g.pow(2).sum() for g in gbar)
    torch.testing.assert_close(sq, ones @ K @ ones / (7 * k) ** 2, rtol=1e-12, atol=0)
