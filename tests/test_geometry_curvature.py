"""Restricted curvature, GD-step curvature, Lemma 5.2's contraction and ball distances against
closed forms (quadratics), dense Hessians / finite differences, and SVDs."""

from __future__ import annotations

import math

import pytest
import torch
from torch.func import grad, hessian

from curvlab.geometry.curvature import (
    cone_directions,
    cone_line_search,
    cone_minimum,
    descent_in_cone,
    contraction,
    restricted_curvature,
    secant_curvature,
    step_curvature,
)
from curvlab.geometry.distances import ball_distances
from curvlab.geometry.flat import flatten
from curvlab.geometry.functional import FunctionalModel
from curvlab.rsc.gbar import loss_grad_and_gbar
from curvlab.rsc.losses import square_loss
from geometry_helpers import tiny

F64 = dict(dtype=torch.float64)


def _spd(p: int, lo: float, hi: float, seed: int) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    Q, _ = torch.linalg.qr(torch.randn(p, p, generator=gen, **F64))
    return Q @ torch.diag(torch.linspace(lo, hi, p, **F64)) @ Q.T


def test_cone_directions_lie_in_the_cone():
    gen = torch.Generator().manual_seed(0)
    g = torch.randn(50, generator=gen, **F64)
    e = torch.randn(50, generator=gen, **F64)
    kappa = 0.3
    dirs = cone_directions(g, kappa, 9, torch.Generator().manual_seed(1), extra=[e])
    assert len(dirs) == 9 + 2
    cos = [float(torch.dot(u, g) / (u.norm() * g.norm())) for u, _, _ in dirs]
    for (u, c, _), cs in zip(dirs, cos):
        assert float(u.norm()) == pytest.approx(1.0)
        assert abs(cs) == pytest.approx(c, abs=1e-12)
        assert abs(cs) >= kappa - 1e-12
    cs_random = sorted(c for _, c, r in dirs if r)
    assert cs_random[0] == pytest.approx(kappa) and cs_random[-1] == pytest.approx(1.0)
    assert [r for *_, r in dirs] == [True] * 9 + [False] * 2
    with pytest.raises(ValueError):
        cone_directions(torch.zeros(5, **F64), kappa, 3, gen)
    with pytest.raises(ValueError):
        cone_directions(g, 0.0, 3, gen)


def test_quadratic_secant_is_the_quadratic_form():
    """L = 1/2 (t - t*)^T A (t - t*): the secant curvature along u is u^T A u / ||u||^2 at any radius."""
    p = 30
    A = _spd(p, -0.5, 3.0, seed=2)
    ts = torch.randn(p, generator=torch.Generator().manual_seed(3), **F64)
    loss = lambda t: 0.5 * (t - ts) @ A @ (t - ts)  # noqa: E731
    theta = torch.zeros(p, **F64)
    g = grad(loss)(theta)
    gbar = torch.randn(p, generator=torch.Generator().manual_seed(4), **F64)
    kappa = 0.4
    ev, U = torch.linalg.eigh(A)
    rc = restricted_curvature(loss, theta, g, gbar, kappa, rho2=2.0, n_dirs=12, radii=(1.0, 0.01), seed=5,
                              extra=[U[:, 0]])
    vals = [float(u @ A @ u) for u, _, r in cone_directions(gbar, kappa, 12, torch.Generator().manual_seed(5)) if r]
    assert rc.alpha_random == pytest.approx(min(vals), rel=1e-9)
    assert rc.alpha_mean == pytest.approx(sum(vals) / len(vals), rel=1e-9)
    gh = gbar / gbar.norm()
    assert rc.alpha_axis == pytest.approx(float(gh @ A @ gh), rel=1e-9)
    e = U[:, 0] - (U[:, 0] @ gh) * gh
    e = e / e.norm()
    hard = [float(u @ A @ u) for u in (s * kappa * gh + math.sqrt(1 - kappa**2) * e for s in (1, -1))]
    assert rc.alpha_hard == pytest.approx(min(hard), rel=1e-9)
    assert rc.alpha == pytest.approx(min(min(vals), min(hard)))
    assert float(ev[0]) <= rc.alpha <= float(ev[-1])
    assert rc.n_dirs == (12 + 2) * 2
    # kappa = 1: the cone is the line through g_bar
    rc1 = restricted_curvature(loss, theta, g, gbar, 1.0, rho2=1.0, n_dirs=3, seed=0)
    assert rc1.alpha == pytest.approx(float(gh @ A @ gh), rel=1e-9)


def test_mlp_secant_curvature_matches_dense_hessian_for_small_radius():
    """Finite differences: for ||u|| -> 0 the secant curvature tends to u^T grad^2 L u / ||u||^2."""
    model, x, y = tiny(k=2, depth=2, n=8)
    fl = FunctionalModel.of(model, model.params())
    theta = flatten(model.params())
    loss = fl.loss_fn(square_loss, x, y)
    fused = loss_grad_and_gbar(model, x, y)
    g, gbar = flatten(fused.grad), flatten(fused.gbar)
    H = hessian(loss)(theta)
    dirs = cone_directions(gbar, 0.5, 6, torch.Generator().manual_seed(0))
    loss0 = loss(theta)
    for u, _, _ in dirs:
        quad = float(u @ H @ u)
        errs = [abs(float(secant_curvature(loss, theta, loss0, g, r * u)[0]) - quad) for r in (1e-2, 1e-3)]
        assert errs[1] < 0.2 * errs[0] + 1e-9  # error is O(r): third-order Taylor term
        assert errs[1] < 1e-3 * max(1.0, abs(quad))
    rc = restricted_curvature(loss, theta, g, gbar, 0.5, rho2=1e-4, n_dirs=6, seed=0)
    assert rc.alpha == pytest.approx(min(float(u @ H @ u) for u, _, _ in dirs), abs=1e-4)


def test_step_curvature_and_contraction_on_isotropic_quadratic():
    """L = a/2 ||t - t*||^2: alpha = beta = a everywhere, GD contracts by exactly (1 - eta a)^2 and
    Lemma 5.2's factor 1 - alpha omega (2 - omega) / beta equals it."""
    p, a, lr = 25, 3.0, 0.2
    ts = torch.randn(p, generator=torch.Generator().manual_seed(0), **F64)
    loss = lambda t: 0.5 * a * (t - ts).pow(2).sum()  # noqa: E731
    theta = torch.zeros(p, **F64)
    g = grad(loss)(theta)
    gbar = torch.randn(p, generator=torch.Generator().manual_seed(1), **F64)
    st = step_curvature(loss, theta, g, gbar, lr)
    assert st.alpha_step == pytest.approx(a, rel=1e-12)
    assert st.loss_next == pytest.approx(float(loss(theta - lr * g)), rel=1e-12)
    assert st.step_norm == pytest.approx(lr * float(g.norm()))
    assert st.cos_step == pytest.approx(abs(float(g @ gbar / (g.norm() * gbar.norm()))))
    rc = restricted_curvature(loss, theta, g, gbar, 0.3, rho2=1.0, n_dirs=5)
    assert rc.alpha == pytest.approx(a, rel=1e-12)
    c = contraction(float(loss(theta)), st.loss_next, 0.0, rc.alpha, a, lr)
    assert c["omega"] == pytest.approx(lr * a)
    assert c["contraction"] == pytest.approx((1 - lr * a) ** 2, rel=1e-10)
    assert c["bound"] == pytest.approx((1 - lr * a) ** 2, rel=1e-10)


def test_contraction_formula_and_bound_on_strongly_convex_quadratic():
    """For a convex quadratic with alpha = lambda_min(A) (the unrestricted RSC constant) and
    beta = lambda_max(A), GD with omega in (0, 2) contracts at least as fast as Lemma 5.2 says."""
    c = contraction(1.0, 0.5, 0.0, alpha=1.0, beta=4.0, lr=0.25)
    assert c == {"contraction": 0.5, "bound": 0.75, "omega": 1.0}
    p = 20
    A = _spd(p, 0.5, 4.0, seed=7)
    ts = torch.randn(p, generator=torch.Generator().manual_seed(8), **F64)
    loss = lambda t: 0.5 * (t - ts) @ A @ (t - ts)  # noqa: E731
    theta = torch.zeros(p, **F64)
    for lr in (0.1, 0.25, 0.45):
        g = grad(loss)(theta)
        st = step_curvature(loss, theta, g, g, lr)
        c = contraction(float(loss(theta)), st.loss_next, 0.0, 0.5, 4.0, lr)
        assert c["contraction"] <= c["bound"] + 1e-12
        theta = theta - lr * g


def test_ball_distances_against_svd_and_rank_one_perturbations():
    gen = torch.Generator().manual_seed(0)
    shapes = [(20, 7), (20, 20), (3, 20)]
    p0 = [torch.randn(s, generator=gen, **F64) for s in shapes]
    scales = [0.7, 2.5]
    p1 = []
    for (w, c) in zip(p0[:2], scales):
        u = torch.randn(w.shape[0], generator=gen, **F64)
        v = torch.randn(w.shape[1], generator=gen, **F64)
        p1.append(w + c * torch.outer(u / u.norm(), v / v.norm()))
    dv = torch.randn(3, 20, generator=gen, **F64)
    p1.append(p0[2] + dv)
    d = ball_distances(p1, p0)
    for l, c in enumerate(scales, start=1):
        assert d[f"spec_l{l}"] == pytest.approx(c, rel=1e-10)
        assert d[f"frob_l{l}"] == pytest.approx(c, rel=1e-10)
    assert d["head"] == pytest.approx(float(dv.norm(dim=1).max()))
    assert d["spec_max"] == pytest.approx(2.5)
    assert d["euclid"] == pytest.approx(math.sqrt(0.7**2 + 2.5**2 + float(dv.pow(2).sum())))
    assert d["spec_over_sqrt_m"] == pytest.approx(2.5 / math.sqrt(20))
    # a generic (full-rank) difference through the ARPACK path vs a full SVD
    q = [torch.randn(s, generator=gen, **F64) for s in shapes]
    d2 = ball_distances(q, p0)
    assert d2["spec_l2"] == pytest.approx(float(torch.linalg.svdvals(q[1] - p0[1])[0]), rel=1e-10)
    assert ball_distances(p0, p0)["spec_max"] == 0.0


def test_sampled_cone_minimum_and_lemma_52_left_side():
    """loss_sampled_min is the lowest L(theta + u) over the sampled cone points; the GD point joins
    the estimate of inf_{B_t} L only when it lies in B_t (|cos| >= kappa and ||step|| <= rho2)."""
    p = 15
    A = _spd(p, 0.2, 2.0, seed=9)
    ts = torch.randn(p, generator=torch.Generator().manual_seed(10), **F64)
    loss = lambda t: 0.5 * (t - ts) @ A @ (t - ts)  # noqa: E731
    theta = torch.zeros(p, **F64)
    g = grad(loss)(theta)
    rho2, kappa = 0.5, 0.6
    rc = restricted_curvature(loss, theta, g, g, kappa, rho2, n_dirs=7, radii=(1.0, 0.5), seed=2)
    pts = [float(loss(theta + r * rho2 * u)) for u, _, _ in cone_directions(g, kappa, 7, torch.Generator().manual_seed(2))
           for r in (1.0, 0.5)]
    assert rc.loss_sampled_min == pytest.approx(min(pts), rel=1e-12)
    st = step_curvature(loss, theta, g, g, lr=0.5 * rho2 / float(g.norm()))  # inside: cos = 1, half the radius
    assert cone_minimum(rc, st, kappa, rho2) == pytest.approx(min(min(pts), st.loss_next))
    far = step_curvature(loss, theta, g, g, lr=2.0 * rho2 / float(g.norm()))  # outside the ball
    assert cone_minimum(rc, far, kappa, rho2) == rc.loss_sampled_min


def test_descent_direction_in_cone_and_line_search():
    gen = torch.Generator().manual_seed(11)
    g = torch.randn(12, generator=gen, **F64)
    gbar = torch.randn(12, generator=gen, **F64)
    cos = abs(float(g @ gbar / (g.norm() * gbar.norm())))
    for kappa in (0.5 * cos, min(1.0, 2 * cos + 0.1)):
        d = descent_in_cone(g, gbar, kappa)
        c = abs(float(d @ gbar / gbar.norm()))
        assert float(d.norm()) == pytest.approx(1.0) and c >= kappa - 1e-12
        if kappa <= cos:
            torch.testing.assert_close(d, -g / g.norm())
        else:  # on the boundary, and still a descent direction
            assert c == pytest.approx(kappa) and float(d @ g) < 0
    # isotropic quadratic with the minimiser along -grad at distance 0.25: the 2^-j grid hits it exactly
    ts = torch.zeros(12, **F64)
    ts[0] = 0.25
    loss = lambda t: (t - ts).pow(2).sum()  # noqa: E731
    theta = torch.zeros(12, **F64)
    val = cone_line_search(loss, theta, grad(loss)(theta), ts, kappa=0.9, rho2=1.0, points=4)
    assert val == pytest.approx(0.0, abs=1e-15)
    assert cone_line_search(loss, theta, grad(loss)(theta), ts, 0.9, 1.0, points=1) == pytest.approx(0.75**2)
