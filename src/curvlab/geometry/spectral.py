"""Hessian-vector products and extreme Hessian eigenvalues.

* Predictor Hessian spectral norm ||grad^2_theta f(theta; x)||_2 for fixed inputs x: RSC
  Theorem 4.1 (eq. 5) predicts <= c_H / sqrt(m); Theorem C.1 (eq. 44) for each output f_h.
* Loss Hessian extremes lambda_max and lambda_min of grad^2 L(theta) (Section 3's chain-rule form):
  lambda_max is the smoothness estimate beta of Theorem 5.2 (eq. 11) used in Lemma 5.2.

HVPs are reverse-over-reverse: ``torch.func.vjp(torch.func.grad(fun), theta)`` records the
gradient's graph once and each product is one backward pass through it (forward-over-reverse,
``torch.func.jvp(grad(fun))``, is the alternative; ``bench/bench_engine.py`` times both).

Eigen-solver choice: scipy's ``eigsh`` (ARPACK's implicitly restarted Lanczos) on a
``LinearOperator`` wrapping those HVPs, in float64 (the HVP itself runs in the model's dtype).
Why not power iteration: the predictor Hessian of these nets is indefinite with eigenvalues of
both signs and similar magnitude (its large blocks are the off-diagonal V–W^(L) cross terms), so
power iteration converges at rate |lambda_2 / lambda_1| ~ 1 or oscillates, and it needs a second
shifted run for lambda_min. Lanczos gets the extremes from a Krylov space at the square-root rate,
ARPACK's restarts keep memory at ``ncv`` vectors of size p whatever the iteration count (a fixed
unrestarted Lanczos with reorthogonalisation would keep every vector: p floats each), and its
convergence flags tell when an estimate is not converged. No curvature library (e.g. curvlinops) is
installed or needed: torch.func gives the HVP and scipy the solver.

lambda_min is computed as lambda_max - lambda_max(lambda_max I - H): the Krylov space (hence the
iterates) is the same as for ``which='SA'``, but ARPACK's stopping rule, relative to the eigenvalue
it converges to, then becomes relative to the spectral scale lambda_max - lambda_min instead of to
|lambda_min|, which is tiny for these nearly-PSD loss Hessians and would make 'SA' run to maxiter.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from scipy.sparse.linalg import ArpackNoConvergence, LinearOperator, eigsh
from torch import Tensor
from torch.func import grad, jvp, vjp

MatVec = Callable[[Tensor], Tensor]


HVP_MODES = ("reverse", "forward")


def hvp_operator(fun: Callable[[Tensor], Tensor], theta: Tensor, mode: str = "reverse") -> MatVec:
    """v -> grad^2 fun(theta) v: reverse-over-reverse (``vjp`` of the gradient, whose graph is built
    once) or forward-over-reverse (``jvp`` of the gradient, one forward-mode pass per product)."""
    theta = theta.detach()
    if mode == "reverse":
        _, vjp_fn = vjp(grad(fun), theta)
        return lambda v: vjp_fn(v)[0]
    if mode == "forward":
        g = grad(fun)
        return lambda v: jvp(g, (theta,), (v,))[1]
    raise ValueError(f"unknown HVP mode {mode!r}; choose one of {HVP_MODES}")


@dataclass
class EigResult:
    value: float  # the requested eigenvalue (NaN if ARPACK returned none)
    vector: Tensor | None  # its unit eigenvector (in the HVP's dtype), if any
    matvecs: int  # HVPs spent
    converged: bool


def _eigsh_one(
    matvec: MatVec,
    p: int,
    like: Tensor,
    which: str,
    tol: float,
    maxiter: int | None,
    ncv: int | None,
    seed: int,
    v0: Tensor | None = None,
) -> EigResult:
    """One eigenpair of a symmetric operator by ARPACK (``which`` in {'LA', 'SA', 'LM'}), started
    from ``v0`` (e.g. the eigenvector of the previous measurement: a warm start) or a seeded random
    vector."""
    count = [0]

    def mv(v: np.ndarray) -> np.ndarray:
        count[0] += 1
        t = torch.from_numpy(np.ascontiguousarray(v, dtype=np.float64).reshape(-1))
        return matvec(t.to(device=like.device, dtype=like.dtype)).detach().to("cpu", torch.float64).numpy()

    if p < 3:  # ARPACK needs k < p - 1: dense fallback
        eye = torch.eye(p, dtype=like.dtype, device=like.device)
        H = torch.stack([matvec(e) for e in eye]).to("cpu", torch.float64)
        count[0] = p
        w, U = torch.linalg.eigh(0.5 * (H + H.T))
        i = {"LA": -1, "SA": 0, "LM": int(torch.argmax(w.abs()))}[which]
        return EigResult(float(w[i]), U[:, i].to(like.device, like.dtype), count[0], True)
    op = LinearOperator((p, p), matvec=mv, dtype=np.float64)
    start = (np.random.default_rng(seed).standard_normal(p) if v0 is None
             else v0.detach().to("cpu", torch.float64).reshape(-1).numpy())
    ncv_ = None if ncv is None else max(3, min(int(ncv), p))
    try:
        w, U = eigsh(op, k=1, which=which, tol=tol, maxiter=maxiter, ncv=ncv_, v0=start)
        converged = True
    except ArpackNoConvergence as err:  # keep ARPACK's best Ritz pair, flagged
        w, U = err.eigenvalues, err.eigenvectors
        converged = False
    if len(w) == 0:
        return EigResult(float("nan"), None, count[0], False)
    return EigResult(float(w[0]), torch.from_numpy(U[:, 0].copy()).to(like.device, like.dtype), count[0], converged)


def operator_norm(
    matvec: MatVec, p: int, like: Tensor, tol: float = 1e-3, maxiter: int | None = 300, ncv: int | None = 12,
    seed: int = 0, v0: Tensor | None = None,
) -> EigResult:
    """||H||_2 = max |lambda(H)| of a symmetric operator (``value`` is the signed eigenvalue)."""
    return _eigsh_one(matvec, p, like, "LM", tol, maxiter, ncv, seed, v0)


def extreme_eigenvalues(
    matvec: MatVec, p: int, like: Tensor, tol: float = 1e-3, maxiter: int | None = 300, ncv: int | None = 12,
    seed: int = 0, with_min: bool = True, v0_max: Tensor | None = None, v0_min: Tensor | None = None,
) -> tuple[EigResult, EigResult | None]:
    """(lambda_max, lambda_min) of a symmetric operator; lambda_min via the shift lambda_max I - H.
    ``v0_max`` / ``v0_min`` warm-start each from a previous eigenvector."""
    top = _eigsh_one(matvec, p, like, "LA", tol, maxiter, ncv, seed, v0_max)
    if not with_min:
        return top, None
    shift = top.value
    if not np.isfinite(shift):
        return top, EigResult(float("nan"), None, 0, False)
    low = _eigsh_one(lambda v: shift * v - matvec(v), p, like, "LA", tol, maxiter, ncv, seed + 1, v0_min)
    return top, EigResult(shift - low.value, low.vector, low.matvecs, low.converged)


def predictor_hessian_norm(
    f: Callable[[Tensor], Tensor], theta: Tensor, hvp_mode: str = "reverse", **eig_options
) -> EigResult:
    """||grad^2_theta f(theta)||_2 of a scalar predictor output theta -> f_h(theta; x) at one input x
    (Theorem 4.1, eq. 5; Theorem C.1)."""
    return operator_norm(hvp_operator(f, theta, hvp_mode), theta.numel(), theta, **eig_options)


def loss_hessian_extremes(
    loss: Callable[[Tensor], Tensor], theta: Tensor, with_min: bool = True, hvp_mode: str = "reverse", **eig_options
) -> tuple[EigResult, EigResult | None]:
    """(lambda_max, lambda_min) of the Hessian of a loss theta -> L(theta); lambda_max is beta of
    Theorem 5.2."""
    op = hvp_operator(loss, theta, hvp_mode)
    return extreme_eigenvalues(op, theta.numel(), theta, with_min=with_min, **eig_options)
