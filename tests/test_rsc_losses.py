"""The RSC losses (Appendix B): closed-form l', l'' against autograd, values against torch's own
losses, Theorem B.1 / B.2's quantities and the Hessian's two parts against brute force in float64,
and the step size lr = auto against a dense Hessian."""

from __future__ import annotations

import math
import os

import pytest
import torch
from torch.func import hessian, jacrev, vmap
from torch.nn import functional as F

os.environ["WANDB_MODE"] = "disabled"

from curvlab.geometry.flat import flatten  # noqa: E402
from curvlab.geometry.functional import FunctionalModel  # noqa: E402
from curvlab.geometry.gradients import loss_grad_and_gbar as generic  # noqa: E402
from curvlab.geometry.spectral import gauss_newton_operator  # noqa: E402
from curvlab.rsc.checks import CHECKS, CheckContext  # noqa: E402
from curvlab.rsc.gbar import functional, loss_grad_and_gbar  # noqa: E402
from curvlab.rsc.losses import LOSSES  # noqa: E402
from curvlab.rsc.module import auto_lr  # noqa: E402
from geometry_helpers import tiny  # noqa: E402

K = {"square": 3, "cross_entropy": 4, "logistic": 1}


def _targets(name: str, n: int, gen: torch.Generator) -> torch.Tensor:
    if name == "cross_entropy":
        return F.one_hot(torch.randint(0, K[name], (n,), generator=gen), K[name]).double()
    if name == "logistic":
        return torch.randint(0, 2, (n, 1), generator=gen).double()
    return torch.randn(n, K[name], generator=gen, dtype=torch.float64)


def _problem(name: str, n: int = 7):
    model, x, _ = tiny(k=K[name], n=n)
    return model, x, _targets(name, n, torch.Generator().manual_seed(1))


@pytest.mark.parametrize("name", list(LOSSES))
def test_closed_form_derivatives_equal_autograd(name):
    gen = torch.Generator().manual_seed(0)
    out = 2.0 * torch.randn(9, K[name], generator=gen, dtype=torch.float64)
    y = _targets(name, 9, gen)
    loss = LOSSES[name]
    per_sample = lambda z, t: loss.value(z[None], t[None])[0]  # noqa: E731
    d1 = vmap(torch.func.grad(per_sample))(out, y)
    d2 = vmap(hessian(per_sample))(out, y)
    torch.testing.assert_close(loss.d1(out, y), d1, rtol=1e-12, atol=1e-14)
    torch.testing.assert_close(loss.d2(out, y), d2, rtol=1e-12, atol=1e-14)
    torch.testing.assert_close(loss.grad_out(out, y), torch.func.grad(loss)(out, y), rtol=1e-12, atol=1e-14)


def test_the_losses_are_torchs_own():
    gen = torch.Generator().manual_seed(2)
    z = torch.randn(11, 10, generator=gen, dtype=torch.float64)
    labels = torch.randint(0, 10, (11,), generator=gen)
    torch.testing.assert_close(LOSSES["cross_entropy"](z, F.one_hot(labels, 10).double()), F.cross_entropy(z, labels))
    b = torch.randint(0, 2, (11, 1), generator=gen).double()
    torch.testing.assert_close(LOSSES["logistic"](z[:, :1], b), F.binary_cross_entropy_with_logits(z[:, :1], b))
    torch.testing.assert_close(LOSSES["square"](z, z.flip(0)), F.mse_loss(z, z.flip(0), reduction="sum") / 11)


@pytest.mark.parametrize("name", list(LOSSES))
def test_the_closed_form_gbar_pass_takes_any_loss(name):
    model, x, y = _problem(name)
    loss = LOSSES[name]
    fused = loss_grad_and_gbar(model, x, y, loss)
    fm = functional(model)
    ref = generic(fm, fm.theta(), x, y, loss)
    torch.testing.assert_close(flatten(fused.grad), ref.grad, rtol=1e-10, atol=1e-13)
    torch.testing.assert_close(flatten(fused.gbar), ref.gbar, rtol=1e-10, atol=1e-13)
    auto = torch.autograd.grad(loss(model(x), y), model.params())
    torch.testing.assert_close(flatten(fused.grad), flatten(auto), rtol=1e-10, atol=1e-13)


@pytest.mark.parametrize("name", list(LOSSES))
def test_theorem_b1_quantities_and_the_two_hessian_parts_against_brute_force(name):
    """lambda_t = (1/n) sum_i ||dl_i/df_i||^2, a_t / b_t from the dense per-sample l'', and
    H = G + R with G = J^T (l''/n) J and R = (1/n) sum_i l'_i grad^2 f_i, all dense."""
    model, x, y = _problem(name)
    loss = LOSSES[name]
    fm = FunctionalModel.of(model, model.params())
    theta = fm.theta()
    n = x.shape[0]
    out = fm(theta, x).detach().requires_grad_()
    per = [torch.autograd.grad(loss.value(out[i:i + 1], y[i:i + 1])[0], out)[0][i] for i in range(n)]
    lam = sum(float(g.pow(2).sum()) for g in per) / n
    fused = loss_grad_and_gbar(model, x, y, loss)
    ctx = CheckContext(model, x, y, 0, fused, [p.detach().clone() for p in model.params()], 0.1, loss=loss)
    lc = CHECKS["loss_curvature"](ctx)
    assert lc["lambda_t"] == pytest.approx(lam, rel=1e-12)
    ev = torch.linalg.eigvalsh(vmap(hessian(lambda z, t: loss.value(z[None], t[None])[0]))(out.detach(), y))
    assert (lc["a_t"], lc["b_t"]) == (pytest.approx(float(ev.min()), abs=1e-12), pytest.approx(float(ev.max())))
    H = hessian(fm.loss_fn(loss, x, y))(theta)
    J = jacrev(lambda th: fm(th, x))(theta)  # (n, k, p)
    C = loss.d2(out.detach(), y) / n
    G = torch.einsum("nip,nij,njq->pq", J, C, J)
    gn = gauss_newton_operator(lambda th: fm(th, x), theta, C)
    v = torch.randn(theta.numel(), generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    torch.testing.assert_close(gn(v), G @ v, rtol=1e-10, atol=1e-12)
    R = sum(per[i][h] * hessian(lambda th: fm(th, x[i:i + 1])[0, h])(theta) for i in range(n) for h in range(K[name])) / n
    torch.testing.assert_close(G + R, H, rtol=1e-9, atol=1e-11)
    parts = CHECKS["hessian"](ctx, inputs=0, loss=False, parts=True, tol=1e-10, maxiter=3000, ncv=20)
    assert parts["gn_lambda_max"] == pytest.approx(float(torch.linalg.eigvalsh(G)[-1]), rel=1e-8)
    assert parts["residual_norm"] == pytest.approx(float(torch.linalg.matrix_norm(R, ord=2)), rel=1e-8)
    assert parts["residual_over_sqrt_lambda"] == pytest.approx(parts["residual_norm"] / math.sqrt(lam), rel=1e-12)


def test_cross_entropy_curvature_is_singular_along_a_shift_of_every_logit():
    """Assumption 3 (i) fails for cross-entropy: l'' 1 = 0, so a_t = 0 whatever the iterate."""
    out = torch.randn(5, 4, generator=torch.Generator().manual_seed(4), dtype=torch.float64)
    y = F.one_hot(torch.arange(5) % 4, 4).double()
    d2 = LOSSES["cross_entropy"].d2(out, y)
    torch.testing.assert_close(d2 @ torch.ones(4, dtype=torch.float64), torch.zeros(5, 4, dtype=torch.float64))
    assert LOSSES["cross_entropy"].curvature_range(out, y)[0] == pytest.approx(0.0, abs=1e-15)


@pytest.mark.parametrize("name", list(LOSSES))
def test_auto_lr_is_omega_over_the_dense_lambda_max_at_theta0(name):
    model, x, y = _problem(name)
    loss = LOSSES[name]
    fm = FunctionalModel.of(model, model.params())
    top = float(torch.linalg.eigvalsh(hessian(fm.loss_fn(loss, x, y))(fm.theta()))[-1])
    step = auto_lr(model, x, y, loss, omega=1.5)
    assert step["beta0"] == pytest.approx(top, rel=1e-4)
    assert step["lr"] == pytest.approx(1.5 / top, rel=1e-4)
