"""The RSC paper's geometry measurements (:mod:`curvlab.geometry`) as checks, listed in :data:`CHECKS`.

Each check is ``fn(ctx: CheckContext, **options) -> {metric: float}``;
:class:`curvlab.rsc.callback.GeometryCallback` runs them as ``check/<name>/<metric>`` with their
wall time and isolates failures. Options come from the ``checks/`` config group
(``conf/checks/default.yaml`` sets and explains every option) and are checked against the
functions' signatures by :func:`check_specs`:

* ``hessian``              predictor Hessian spectral norm at fixed inputs (Theorem 4.1) and the
                           loss Hessian's lambda_max (= beta, Theorem 5.2) and lambda_min, with its
                           Gauss-Newton and residual parts apart (Theorems B.1, B.2)
* ``ntk``                  empirical NTK lambda_min next to the RSC quantity ||g_bar||^2 (Remark 5.5)
* ``restricted_curvature`` alpha_t on Q_kappa ∩ B_rho2 (Theorem 5.1), along the GD step, and the
                           contraction vs Lemma 5.2's bound
* ``distance``             layerwise spectral distance to theta_0 (Definition 3.1, Remark 5.4)
* ``lipschitz``            ||grad_theta f|| and ||grad_x f|| (Lemma 4.1)
* ``loss_curvature``       lambda_t of Theorems B.1 / B.2 and Assumption 3's a_t, b_t (any loss)

Within one step, ``hessian`` leaves lambda_max and the lambda_min eigenvector in the context's
``cache``; ``restricted_curvature`` reuses them (beta, and a hard direction for its cone search)
instead of running Lanczos again when both are due at the same iterate.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor, nn

from curvlab.geometry import gradients
from curvlab.geometry.curvature import (
    cone_line_search,
    cone_minimum,
    contraction,
    restricted_curvature,
    step_curvature,
)
from curvlab.geometry.distances import ball_distances, layer_distances
from curvlab.geometry.flat import flatten
from curvlab.geometry.functional import FunctionalModel
from curvlab.geometry.ntk import ntk_gram, ntk_stats
from curvlab.geometry.spectral import (
    HVP_MODES,
    EigResult,
    extreme_eigenvalues,
    gauss_newton_operator,
    hvp_operator,
    loss_hessian_extremes,
    operator_norm,
    predictor_hessian_norm,
)
from curvlab.rsc import lipschitz
from curvlab.rsc.gbar import FusedGrads, functional, fused_grads
from curvlab.rsc.losses import Loss, square_loss
from curvlab.rsc.model import DeepMLP
from curvlab.rsc.ntk import empirical_ntk
from curvlab.run.errors import ConfigError
from curvlab.run.values import DTYPES, check_options, require_int, resolve_dtype


@dataclass
class CheckContext:
    """Everything a check may look at, at iterate theta_t (before the GD update of step t). Any
    ``nn.Module`` works through the model-agnostic engine; a DeepMLP takes its closed forms."""

    model: nn.Module
    x: Tensor
    y: Tensor
    step: int
    fused: FusedGrads  # loss, gradient and g_bar at theta_t
    theta0: list[Tensor]  # a copy of the initial parameters, in curvlab.rsc.gbar.functional's order
    lr: float
    final: bool = False
    loss: Loss = square_loss  # the training loss L = (1/n) sum_i l(y_i, f(theta; x_i))
    cache: dict[str, Any] = field(default_factory=dict)  # results shared by the checks of this iterate


    @classmethod
    def at(cls, model: nn.Module, x: Tensor, y: Tensor, step: int, theta0: list[Tensor], lr: float,
           final: bool = False, loss: Loss = square_loss) -> CheckContext:
        """The context of ``model``'s current iterate on (x, y), its loss, gradient and g_bar computed
        here (what a user's own LightningModule returns from ``check_context``)."""
        return cls(model, x, y, step, fused_grads(model, x, y, loss), theta0, lr, final, loss)

    @property
    def width(self) -> float:
        """The model's width knob m (``width`` attribute; NaN for a model without one)."""
        return float(getattr(self.model, "width", math.nan))


CheckFn = Callable[..., Mapping[str, float]]


def _dtype(name: str | None) -> torch.dtype | None:
    """A check's ``dtype`` option: a name of :data:`~curvlab.run.values.DTYPES`, or None (the model's)."""
    return None if name is None else resolve_dtype(name)


def _loss_hessian(ctx: CheckContext, with_min: bool, eig: dict[str, Any]) -> tuple[EigResult, EigResult | None]:
    """(lambda_max, lambda_min or None) of the loss Hessian at ``ctx``, computed once per context."""
    cache = ctx.cache
    if "lambda_max" in cache and (not with_min or "lambda_min" in cache):
        return cache["lambda_max"], cache.get("lambda_min")
    fm = functional(ctx.model)
    top, low = loss_hessian_extremes(fm.loss_fn(ctx.loss, ctx.x, ctx.y), fm.theta(), with_min=with_min, **eig)
    cache["lambda_max"] = top
    if low is not None:
        cache["lambda_min"] = low
    return top, low


def hessian_check(
    ctx: CheckContext,
    *,
    inputs: int = 2,
    outputs: Sequence[int] | None = None,
    loss: bool = True,
    loss_min: bool = True,
    tol: float = 1e-2,
    maxiter: int = 300,
    ncv: int = 12,
    seed: int = 0,
    hvp_mode: str = "reverse",
    parts: bool = False,
) -> dict[str, float]:
    """||grad^2 f_h(theta; x_i)||_2 for the first ``inputs`` training points and outputs h in
    ``outputs`` (default: all k), and loss-Hessian extremes with ``lr_times_lambda_max`` (GD is
    stable while it stays below 2). ``pred_norm_sqrt_m`` = max norm * sqrt(m) estimates c_H of
    eq. (5); it should stay flat in m if Theorem 4.1's rate is right. ``parts``: the Hessian's two
    terms apart (:func:`_hessian_parts`). ``hvp_mode``: one of
    :data:`~curvlab.geometry.spectral.HVP_MODES` (``linearize`` for conv nets)."""
    eig = {"tol": tol, "maxiter": maxiter, "ncv": ncv, "seed": seed, "hvp_mode": hvp_mode}
    fm = functional(ctx.model)
    theta = fm.theta()
    outs = list(range(ctx.fused.out.shape[1])) if outputs is None else [int(h) for h in outputs]
    out: dict[str, float] = {}
    converged = True
    matvecs = 0
    if inputs > 0:
        norms = []
        for i in range(min(inputs, ctx.x.shape[0])):
            for h in outs:
                r = predictor_hessian_norm(lambda th: fm(th, ctx.x[i:i + 1])[0, h], theta, **eig)
                norms.append(abs(r.value))
                converged &= r.converged
                matvecs += r.matvecs
        out["pred_norm_max"] = max(norms)
        out["pred_norm_mean"] = sum(norms) / len(norms)
        out["pred_norm_sqrt_m"] = max(norms) * math.sqrt(ctx.width)
    if loss:
        top, low = _loss_hessian(ctx, loss_min, eig)
        out["loss_lambda_max"] = top.value
        out["lr_times_lambda_max"] = ctx.lr * top.value
        converged &= top.converged
        matvecs += top.matvecs
        if low is not None:
            out["loss_lambda_min"] = low.value
            out["loss_lambda_min_rel"] = low.value / top.value if top.value > 0 else math.nan
            converged &= low.converged
            matvecs += low.matvecs
    if parts:
        values, parts_converged, parts_matvecs = _hessian_parts(ctx, fm, theta, eig)
        out.update(values)
        converged &= parts_converged
        matvecs += parts_matvecs
    out["converged"] = float(converged)
    out["matvecs"] = float(matvecs)
    return out


def _hessian_parts(
    ctx: CheckContext, fm: FunctionalModel, theta: Tensor, eig: dict[str, Any]
) -> tuple[dict[str, float], bool, int]:
    """The loss Hessian's Gauss-Newton part G = (1/n) sum_i J_i^T l''_i J_i (I_1 in the proof of
    Theorem B.1: lambda_max(G) <= b rho^2 by Lemma 4.1) and residual R = (1/n) sum_i l'_i grad^2 f_i
    (I_2: ||R|| <= c_H sqrt(lambda_t) / sqrt(m) by Theorem 4.1 and Cauchy-Schwarz, the second term of
    Theorem B.2's beta). ``residual_over_sqrt_lambda`` = ||R|| / sqrt(lambda_t) estimates c_H / sqrt(m).
    Returns (values, converged, HVPs spent)."""
    opts = {k: v for k, v in eig.items() if k != "hvp_mode"}
    out_t = ctx.fused.out.detach()
    gn = gauss_newton_operator(lambda th: fm(th, ctx.x), theta, ctx.loss.d2(out_t, ctx.y) / out_t.shape[0])
    hvp = hvp_operator(fm.loss_fn(ctx.loss, ctx.x, ctx.y), theta, eig["hvp_mode"])
    top, _ = extreme_eigenvalues(gn, theta.numel(), theta, with_min=False, **opts)
    res = operator_norm(lambda v: hvp(v) - gn(v), theta.numel(), theta, **opts)
    lam = float(ctx.loss.lambda_t(out_t, ctx.y))
    values = {"gn_lambda_max": top.value, "residual_norm": abs(res.value),
              "residual_over_sqrt_lambda": abs(res.value) / math.sqrt(lam) if lam > 0 else math.nan}
    return values, top.converged and res.converged, top.matvecs + res.matvecs


def loss_curvature_check(ctx: CheckContext) -> dict[str, float]:
    """The loss derivatives where the iterate is (output space only, no pass through the network):
    Theorems B.1 / B.2's lambda_t = (1/n) sum_i ||l'_i||^2 and Assumption 3's a_t, b_t (extreme
    eigenvalues of l''_i over the samples)."""
    out = ctx.fused.out.detach()
    a_t, b_t = ctx.loss.curvature_range(out, ctx.y)
    return {"lambda_t": float(ctx.loss.lambda_t(out, ctx.y)), "a_t": a_t, "b_t": b_t}


def ntk_check(ctx: CheckContext, *, kind: str = "mean", dtype: str = "float64") -> dict[str, float]:
    """lambda_min(K_ntk) vs ||g_bar||^2; ``identity_rel_err`` compares 1^T K 1 / N^2 with the
    g_bar of the fused gradient pass (two independent computations of the same number)."""
    dt = _dtype(dtype) or torch.float64
    if isinstance(ctx.model, DeepMLP):
        K = empirical_ntk(ctx.model, ctx.x, kind=kind, dtype=dt)
    else:
        fm = functional(ctx.model)
        K = ntk_gram(fm, fm.theta(), ctx.x, kind=kind, dtype=dt)
    stats = ntk_stats(K).as_dict()
    gbar_sq = float(flatten(ctx.fused.gbar).to(torch.float64).pow(2).sum())
    stats["gbar_sq_fused"] = gbar_sq
    stats["identity_rel_err"] = abs(stats["gbar_sq"] - gbar_sq) / max(gbar_sq, 1e-300)
    return stats


def restricted_curvature_check(
    ctx: CheckContext,
    *,
    kappa: float = 0.5,
    rho2: float = 1.0,
    n_dirs: int = 16,
    radii: Sequence[float] = (1.0,),
    seed: int = 0,
    dtype: str | None = "float64",
    loss_min: float = 0.0,
    beta: float | str = "lanczos",
    hard_direction: bool = True,
    line_points: int = 8,
    tol: float = 1e-2,
    maxiter: int = 300,
    ncv: int = 12,
) -> dict[str, float]:
    """alpha_t estimate (min over sampled cone directions), alpha along the GD step, Remark 5.2's
    2 kappa^2 k ||g_bar||^2, and the observed contraction next to Lemma 5.2's bound: ``contraction``
    is the gap ratio to ``loss_min`` (Theorem 5.3's left side), ``contraction_cone`` the ratio to the
    estimate ``loss_cone_min`` of inf_{B_t} L (sampled points and a ``line_points``-point line search
    along the cone's steepest descent direction; eq. 13's left side). ``beta`` is a
    number or ``lanczos`` (lambda_max of the loss Hessian, shared with ``hessian`` through the context's cache).
    ``seed`` is offset by the step so the sampled directions differ from step to step."""
    dt = _dtype(dtype) or ctx.x.dtype
    fm = functional(ctx.model)
    theta = fm.theta().to(dt)
    grad, gbar = flatten(ctx.fused.grad).to(dt), flatten(ctx.fused.gbar).to(dt)
    loss = fm.loss_fn(ctx.loss, ctx.x.to(dt), ctx.y.to(dt))
    extra = []
    low = ctx.cache.get("lambda_min")
    if hard_direction and low is not None and low.vector is not None:
        extra.append(low.vector)
    rc = restricted_curvature(loss, theta, grad, gbar, kappa, rho2, n_dirs, radii, seed + ctx.step, extra)
    st = step_curvature(loss, theta, grad, gbar, ctx.lr)
    if isinstance(beta, str):
        if beta != "lanczos":
            raise ValueError(f"beta must be a number or 'lanczos', got {beta!r}")
        beta_value = _loss_hessian(ctx, False, {"tol": tol, "maxiter": maxiter, "ncv": ncv, "seed": seed})[0].value
    else:
        beta_value = float(beta)
    loss_t = st.loss_t
    out = {**rc.as_dict(), **st.as_dict()}
    a_t = ctx.loss.curvature_range(ctx.fused.out, ctx.y)[0]  # Assumption 3's a (2 for the square loss)
    out["alpha_upper"] = a_t * kappa**2 * ctx.fused.out.shape[1] * float(gbar.pow(2).sum())
    out["in_cone_step"] = float(st.cos_step >= kappa)
    out["beta"] = beta_value
    c = contraction(loss_t, st.loss_next, loss_min, rc.alpha, beta_value, ctx.lr)
    out.update(c)
    out["bound_step"] = contraction(loss_t, st.loss_next, loss_min, st.alpha_step, beta_value, ctx.lr)["bound"]
    # Lemma 5.2's own left side: the gap to (an estimate of) L(theta_bar_{t+1}) = inf over B_t
    lbar = cone_minimum(rc, st, kappa, rho2, cone_line_search(loss, theta, grad, gbar, kappa, rho2, line_points))
    out["loss_cone_min"] = lbar
    out["contraction_cone"] = contraction(loss_t, st.loss_next, lbar, rc.alpha, beta_value, ctx.lr)["contraction"]
    return out


def distance_check(ctx: CheckContext) -> dict[str, float]:
    """Layerwise spectral / Frobenius distances to theta_0 and the last layer's (eq. 3, eq. 43); for
    any other model, each weight tensor's spectral distance."""
    fm = functional(ctx.model)
    params = [p.detach() for p in fm.params()]
    if isinstance(ctx.model, DeepMLP):
        return ball_distances(params, ctx.theta0)
    return layer_distances(fm.names, params, ctx.theta0)


def lipschitz_check(ctx: CheckContext) -> dict[str, float]:
    """max/mean over training inputs (and outputs) of ||grad_theta f|| and ||grad_x f|| (eq. 9)."""
    if isinstance(ctx.model, DeepMLP):
        gt, gx = lipschitz.predictor_gradient_norms(ctx.model, ctx.x)
    else:
        fm = functional(ctx.model)
        gt, gx = gradients.predictor_gradient_norms(fm, fm.theta(), ctx.x)
    sqm = math.sqrt(ctx.width)
    return {
        "grad_theta_max": float(gt.max()),
        "grad_theta_mean": float(gt.mean()),
        "grad_x_max": float(gx.max()),
        "grad_x_mean": float(gx.mean()),
        "grad_x_sqrt_m": float(gx.max()) * sqm,
    }


# check name (a key of the ``checks`` config group) -> its function
CHECKS: dict[str, CheckFn] = {
    "hessian": hessian_check,
    "ntk": ntk_check,
    "restricted_curvature": restricted_curvature_check,
    "distance": distance_check,
    "lipschitz": lipschitz_check,
    "loss_curvature": loss_curvature_check,
}


TIMING = ("every", "at_init", "at_end")
OPTION_VALUES: dict[str, tuple[Any, ...]] = {"hvp_mode": HVP_MODES, "dtype": (None, *DTYPES)}


@dataclass
class CheckSpec:
    """When a check runs and with which options (one entry of the ``checks`` config)."""

    name: str
    every: int = 0  # run at steps t with t % every == 0 (0: not on a schedule)
    at_init: bool = True
    at_end: bool = True
    options: dict[str, Any] = field(default_factory=dict)

    def due(self, step: int, final: bool) -> bool:
        if final:
            return self.at_end
        return (step == 0 and self.at_init) or (self.every > 0 and step > 0 and step % self.every == 0)


def _spec(name: str, opts: Mapping[str, Any]) -> CheckSpec:
    check_options(f"checks.{name}", "check", CHECKS, name, opts, skip=1, extra=TIMING)
    require_int(opts.get("every", 0), f"checks.{name}.every", low=0)
    for key, allowed in OPTION_VALUES.items():
        if key in opts and opts[key] not in allowed:
            raise ConfigError(f"checks.{name}.{key} must be one of {', '.join(map(str, allowed))}, got {opts[key]!r}")
    for key in ("at_init", "at_end"):
        if not isinstance(opts.get(key, True), bool):
            raise ConfigError(f"checks.{name}.{key} must be true or false, got {opts[key]!r}")
    options = {k: v for k, v in opts.items() if k not in TIMING}
    return CheckSpec(name=name, options=options, **{k: opts[k] for k in TIMING if k in opts})


def check_specs(cfg: Mapping[str, Any] | None) -> list[CheckSpec]:
    """The checks of a ``checks`` config ({name: {every, at_init, at_end, **options}}), each option
    checked against the check's parameters: a misspelt one fails here, before training."""
    return [_spec(str(name), dict(opts or {})) for name, opts in (cfg or {}).items()]
