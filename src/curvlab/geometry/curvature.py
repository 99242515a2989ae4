"""Restricted strong convexity measured: the RSC constant alpha_t on Q_kappa^t ∩ B^Euc_rho2(theta_t).

RSC paper, Definition 5.1 and Theorem 5.1 (eq. 10): L satisfies alpha_t-RSC w.r.t.
(Q_kappa^t ∩ B^Spec ∩ B^Euc_rho2(theta_t), theta_t) if for every theta' in the set

    L(theta') >= L(theta_t) + <theta' - theta_t, grad L(theta_t)> + (alpha_t / 2) ||theta' - theta_t||^2,

with Q_kappa^t = {theta : |cos(theta - theta_t, g_bar_t)| >= kappa} (Definition 5.2; Definition C.1's
g_bar for k outputs). So alpha_t is the infimum over u = theta' - theta_t of the secant curvature

    c(u) = 2 (L(theta_t + u) - L(theta_t) - <u, grad L(theta_t)>) / ||u||^2.

:func:`restricted_curvature` estimates it by the minimum of c(u) over sampled u in the cone and
ball: an *upper* estimate of the infimum (more directions can only lower it). The GD step
u = -eta grad L gives :func:`step_curvature`, the curvature GD actually meets. Remark 5.2 bounds the
theoretical constant: alpha_t < 2 kappa^2 ||g_bar_t||^2 (times k for k outputs, Theorem C.2).

:func:`contraction` compares the observed per-step ratio (L_{t+1} - L_min) / (L_t - L_min) with
Lemma 5.2's factor 1 - alpha_t omega (2 - omega) / beta, omega = eta beta (eq. 13), with beta the
local smoothness estimate lambda_max(grad^2 L(theta_t)) (the paper's beta of Theorem 5.2 is a
supremum over the ball, so this local beta is smaller and the bound tighter than the paper's).
Lemma 5.2 measures the gap to L(theta_bar_{t+1}) = inf over B_t, which is unknown; L_min (a config
value, 0 for an interpolating square loss) is a lower bound of it, as in Theorem 5.3 with gamma_t = 0.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

LossFn = Callable[[Tensor], Tensor]


def secant_curvature(loss: LossFn, theta: Tensor, loss0: Tensor, grad: Tensor, u: Tensor) -> tuple[Tensor, Tensor]:
    """(c(u), L(theta + u)): the secant curvature 2 (L(theta + u) - L(theta) - <u, grad L>) / ||u||^2
    (the RSC inequality of Definition 5.1 solved for alpha) and the loss it evaluated."""
    with torch.no_grad():
        lu = loss(theta + u)
        return 2.0 * (lu - loss0 - torch.dot(u, grad)) / torch.dot(u, u), lu


def cone_directions(
    gbar: Tensor, kappa: float, n_dirs: int, generator: torch.Generator, extra: Sequence[Tensor] = ()
) -> list[tuple[Tensor, float, bool]]:
    """Unit directions u with |cos(u, g_bar)| >= kappa, as (u, |cos|, is_random) triples.

    The cosines of the ``n_dirs`` random directions form an even grid from kappa (the cone's
    boundary, where curvature is smallest for a Gauss-Newton-dominated Hessian) to 1 (u = ±g_bar),
    with random signs and random orthogonal parts z ~ N(0, I) projected off g_bar. Each ``extra``
    vector (e.g. a lambda_min eigenvector of the Hessian) is projected off g_bar and placed on the
    cone's boundary with both signs: the hardest directions a cheap search can offer.
    """
    if not 0 < kappa <= 1:
        raise ValueError(f"kappa must be in (0, 1], got {kappa}")
    if n_dirs < 1:
        raise ValueError(f"n_dirs must be >= 1, got {n_dirs}")
    gnorm = gbar.norm()
    if not gnorm > 0:
        raise ValueError("g_bar is zero: the cone Q_kappa is undefined")
    ghat = gbar / gnorm

    def on_cone(z: Tensor, c: float, sign: float) -> Tensor | None:
        z = z - torch.dot(z, ghat) * ghat
        zn = z.norm()
        if not zn > 0:
            return None
        return sign * c * ghat + math.sqrt(max(0.0, 1.0 - c * c)) * z / zn

    out: list[tuple[Tensor, float, bool]] = []
    cs = [kappa] if n_dirs == 1 else [kappa + (1.0 - kappa) * j / (n_dirs - 1) for j in range(n_dirs)]
    for c in cs:
        z = torch.randn(gbar.shape, generator=generator, dtype=gbar.dtype).to(gbar.device)
        sign = 1.0 if torch.rand((), generator=generator) < 0.5 else -1.0
        u = on_cone(z, c, sign) if c < 1.0 else sign * ghat
        if u is not None:
            out.append((u, c, True))
    for e in extra:
        for sign in (1.0, -1.0):
            u = on_cone(e.to(gbar.dtype), kappa, sign)
            if u is not None:
                out.append((u, kappa, False))
    return out


@dataclass
class RestrictedCurvature:
    alpha: float  # min over all sampled u in Q_kappa ∩ ball of the secant curvature
    alpha_random: float  # min over the random cone directions only
    alpha_hard: float  # min over the ``extra`` directions placed on the cone's boundary (NaN: none)
    alpha_mean: float  # mean over the random directions
    alpha_axis: float  # min over u = ±rho g_bar / ||g_bar|| (cos = 1)
    n_dirs: int
    loss_sampled_min: float  # min of L(theta + u) over the sampled points: an upper estimate of inf_{B_t} L

    def as_dict(self) -> dict[str, float]:
        return dict(self.__dict__)


def restricted_curvature(
    loss: LossFn,
    theta: Tensor,
    grad: Tensor,
    gbar: Tensor,
    kappa: float,
    rho2: float,
    n_dirs: int = 16,
    radii: Sequence[float] = (1.0,),
    seed: int = 0,
    extra: Sequence[Tensor] = (),
) -> RestrictedCurvature:
    """Estimate alpha_t (Theorem 5.1) over u in Q_kappa^t with ||u|| = r rho2, r in ``radii`` (0, 1].

    Every direction of :func:`cone_directions` is tried at every radius; the secant curvature is
    exact (no Taylor truncation), so the estimate covers the whole ball segment, not just theta_t.
    """
    if not rho2 > 0:
        raise ValueError(f"rho2 must be > 0, got {rho2}")
    if not radii or any(not 0 < r <= 1 for r in radii):
        raise ValueError(f"radii must be fractions in (0, 1], got {list(radii)}")
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        loss0 = loss(theta)
    rand, hard, axis = [], [], []
    lowest = math.inf
    for u, c, is_random in cone_directions(gbar, kappa, n_dirs, gen, extra):
        for r in radii:
            c_u, lu = secant_curvature(loss, theta, loss0, grad, (r * rho2) * u)
            v = float(c_u)
            lowest = min(lowest, float(lu))
            (rand if is_random else hard).append(v)
            if c >= 1.0 and is_random:
                axis.append(v)
    values = rand + hard
    return RestrictedCurvature(
        alpha=min(values),
        alpha_random=min(rand) if rand else math.nan,
        alpha_hard=min(hard) if hard else math.nan,
        alpha_mean=sum(rand) / len(rand) if rand else math.nan,
        alpha_axis=min(axis) if axis else math.nan,
        n_dirs=len(values),
        loss_sampled_min=lowest,
    )


@dataclass
class StepCurvature:
    alpha_step: float  # secant curvature along u = -eta grad L
    loss_t: float  # L(theta)
    loss_next: float  # L(theta - eta grad L)
    step_norm: float  # eta ||grad L||: the smallest rho2 whose ball holds theta_{t+1} (Remark 5.4)
    cos_step: float  # |cos(-grad L, g_bar)|: theta_{t+1} in Q_kappa iff >= kappa

    def as_dict(self) -> dict[str, float]:
        return dict(self.__dict__)


def step_curvature(loss: LossFn, theta: Tensor, grad: Tensor, gbar: Tensor, lr: float) -> StepCurvature:
    """The secant curvature of L along the GD step theta_{t+1} = theta_t - eta grad L(theta_t)."""
    with torch.no_grad():
        u = -lr * grad
        loss0 = loss(theta)
        alpha, loss1 = secant_curvature(loss, theta, loss0, grad, u)
        cos = torch.dot(grad, gbar).abs() / (grad.norm() * gbar.norm())
    return StepCurvature(float(alpha), float(loss0), float(loss1), float(torch.dot(u, u).sqrt()), float(cos))


def descent_in_cone(grad: Tensor, gbar: Tensor, kappa: float) -> Tensor:
    """The unit direction of Q_kappa (Definition 5.2) closest to -grad L: -grad L itself when
    |cos(grad L, g_bar)| >= kappa, else the cone-boundary direction in the plane of g_bar and grad L."""
    d = -grad / grad.norm()
    ghat = gbar / gbar.norm()
    c = float(torch.dot(d, ghat))
    if abs(c) >= kappa:
        return d
    z = d - c * ghat
    sign = 1.0 if c >= 0 else -1.0
    return sign * kappa * ghat + math.sqrt(1.0 - kappa * kappa) * z / z.norm()


def cone_line_search(
    loss: LossFn, theta: Tensor, grad: Tensor, gbar: Tensor, kappa: float, rho2: float, points: int = 8
) -> float:
    """min_j L(theta + s_j d), d = :func:`descent_in_cone`, s_j = rho2 2^-j (j < ``points``): a cheap
    estimate of inf over B_t = Q_kappa ∩ B_rho2(theta_t) of L, the minimiser theta_bar_{t+1} of
    Lemma 5.2 (for a small ball it lies near the steepest descent direction allowed by the cone)."""
    d = descent_in_cone(grad, gbar, kappa)
    with torch.no_grad():
        return min(float(loss(theta + (rho2 * 2.0**-j) * d)) for j in range(points))


def cone_minimum(
    rc: RestrictedCurvature, st: StepCurvature, kappa: float, rho2: float, line_min: float = math.inf
) -> float:
    """Estimate of L(theta_bar_{t+1}) = inf over B_t = Q_kappa ∩ B_rho2(theta_t) of L (Lemma 5.2):
    the lowest of the sampled losses, the line-search losses (``line_min``, from
    :func:`cone_line_search`) and L(theta_{t+1}) when the GD step itself lies in B_t. An upper
    estimate of the infimum, like alpha."""
    inside = st.cos_step >= kappa and st.step_norm <= rho2
    best = min(rc.loss_sampled_min, line_min)
    return min(best, st.loss_next) if inside else best


def contraction(
    loss_t: float, loss_next: float, loss_min: float, alpha: float, beta: float, lr: float
) -> dict[str, float]:
    """Observed (L_{t+1} - L_min) / (L_t - L_min) and Lemma 5.2's 1 - alpha omega (2 - omega) / beta.

    With ``loss_min`` = L(theta_bar_{t+1}) (e.g. :func:`cone_minimum`) the observed ratio is the
    left side of eq. (13) itself; with a global L_min it is Theorem 5.3's ratio, whose factor also
    carries (1 - gamma_t), so it may exceed the Lemma 5.2 factor without contradicting it."""
    omega = lr * beta
    gap = loss_t - loss_min
    observed = (loss_next - loss_min) / gap if gap > 0 else math.nan
    bound = 1.0 - alpha * omega * (2.0 - omega) / beta if beta > 0 else math.nan
    return {"contraction": observed, "bound": bound, "omega": omega}
