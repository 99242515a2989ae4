"""Hessian-vector products and extreme Hessian eigenvalues.

* Predictor Hessian spectral norm ||grad^2_theta f(theta; x)||_2 for fixed inputs x: RSC
  Theorem 4.1 (eq. 5) predicts <= c_H / sqrt(m); Theorem C.1 (eq. 44) for each output f_h.
* Loss Hessian extremes lambda_max and lambda_min of grad^2 L(theta) (Section 3's chain-rule form):
  lambda_max is the smoothness estimate beta of Theorem 5.2 (eq. 11) used in Lemma 5.2.

HVP modes (``bench/bench_engine.py`` times them): ``reverse`` (default), reverse-over-reverse:
``torch.func.vjp(torch.func.grad(fun), theta)`` records the gradient's graph once and each product
is one backward pass through it; ``forward``, forward-over-reverse (``jvp`` of the gradient), 2.2x
slower on the RSC MLP; ``linearize``: ``torch.func.linearize`` traces the gradient once (~1 s for
the conv net, ~18 s for the ResNet) into a graph whose JVP is each product, 1.5-1.7x faster per
product than ``reverse`` on the conv net (the conv double backward is its slow path), equal on MLPs.

Eigen-solver: Lanczos with full reorthogonalisation (at most ``ncv`` vectors of size p) that stops
as soon as the wanted Ritz pair meets ARPACK's criterion ||H u - theta u|| <= tol |theta| (the
residual is beta_k |s_k|: no extra product), then, only if ``ncv`` steps did not reach it, scipy's
``eigsh`` (ARPACK's implicitly restarted Lanczos) started from that Ritz vector. The first phase
saves HVPs: ARPACK builds all ``ncv`` vectors before its first convergence test, so an isolated top
eigenvalue that Lanczos resolves in 5 products (the conv net's loss Hessian at tol 1e-3) costs it
13. Both phases run in the HVP's dtype: a float32 HVP carries no more digits than a float32 basis
keeps, and the basis passes (memory-bound at p ~ 1e6) cost half. Why not power iteration: the
predictor Hessian of these nets is indefinite with eigenvalues of both signs and similar magnitude
(its large blocks are the off-diagonal V–W^(L) cross terms), so power iteration converges at rate
|lambda_2 / lambda_1| ~ 1 or oscillates, and it needs a second shifted run for lambda_min. ARPACK's
restarts keep memory at ``ncv`` vectors whatever the iteration count, and its convergence flags tell
when an estimate is not converged. No curvature library is needed: torch.func gives the HVP and
scipy the solver (curvlinops serves as the reference in the tests and ``bench/``).

lambda_min is computed as lambda_max - lambda_max(lambda_max I - H): the Krylov space (hence the
iterates) is the same as for ``which='SA'``, but ARPACK's stopping rule, relative to the eigenvalue
it converges to, then becomes relative to the spectral scale lambda_max - lambda_min instead of to
|lambda_min|, which is tiny for these nearly-PSD loss Hessians and would make 'SA' run to maxiter.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import warnings

import numpy as np
import torch
from scipy.sparse.linalg import ArpackNoConvergence, LinearOperator, eigsh
from torch import Tensor
from torch.func import grad, jvp, linearize, vjp

MatVec = Callable[[Tensor], Tensor]


HVP_MODES = ("reverse", "forward", "linearize")


def hvp_operator(fun: Callable[[Tensor], Tensor], theta: Tensor, mode: str = "reverse") -> MatVec:
    """v -> grad^2 fun(theta) v: reverse-over-reverse (``vjp`` of the gradient, whose graph is built
    once), forward-over-reverse (``jvp`` of the gradient, one forward-mode pass per product) or the
    JVP of the gradient's traced linearization (``linearize``, traced once)."""
    theta = theta.detach()
    if mode == "reverse":
        _, vjp_fn = vjp(grad(fun), theta)
        return lambda v: vjp_fn(v)[0]
    if mode == "forward":
        g = grad(fun)
        return lambda v: jvp(g, (theta,), (v,))[1]
    if mode == "linearize":
        with warnings.catch_warnings():  # torch.fx's constant folding inside linearize warns on every trace
            warnings.filterwarnings("ignore", message="Attempted to insert a get_attr Node", category=UserWarning)
            _, jvp_fn = linearize(grad(fun), theta)
        return jvp_fn
    raise ValueError(f"unknown HVP mode {mode!r}; choose one of {HVP_MODES}")


def gauss_newton_operator(fn: Callable[[Tensor], Tensor], theta: Tensor, curvature: Tensor) -> MatVec:
    """v -> sum_i J_i^T C_i J_i v, with J_i the (k x p) Jacobian of row i of ``fn(theta)`` (n, k) and
    C_i = ``curvature[i]`` (k x k): with C_i = l''_i / n the Gauss-Newton part of the loss Hessian,
    the I_1 term of the proofs of Theorems 5.1 and B.1. J v is the VJP of the linear map u -> J^T u
    (whose graph is recorded once), so a product is two backward passes and no forward one."""
    theta = theta.detach()
    out, vjp_fn = vjp(fn, theta)
    _, j_fn = vjp(lambda u: vjp_fn(u)[0], torch.zeros_like(out))

    def matvec(v: Tensor) -> Tensor:
        (jv,) = j_fn(v)
        return vjp_fn(torch.einsum("nij,nj->ni", curvature, jv))[0]

    return matvec


@dataclass
class EigResult:
    value: float  # the requested eigenvalue (NaN if ARPACK returned none)
    vector: Tensor | None  # its unit eigenvector (in the HVP's dtype), if any
    matvecs: int  # HVPs spent
    converged: bool


def _pick(theta: np.ndarray, which: str) -> int:
    return {"LA": len(theta) - 1, "SA": 0, "LM": int(np.argmax(np.abs(theta)))}[which]


def _lanczos(matvec: MatVec, like: Tensor, which: str, tol: float, steps: int, start: Tensor) -> EigResult:
    """Up to ``steps`` Lanczos steps from ``start`` with full reorthogonalisation (twice, in the HVP's
    dtype), stopping at the first step whose wanted Ritz pair has residual beta_k |s_k| <= tol |theta|."""
    Q = torch.empty(steps, start.numel(), dtype=like.dtype, device=like.device)
    q = start.to(Q)
    Q[0] = q / q.norm()
    alphas: list[float] = []
    betas: list[float] = []
    for k in range(steps):
        w = matvec(Q[k])
        alphas.append(float(Q[k] @ w))
        for _ in range(2):
            w = w - Q[:k + 1].T @ (Q[:k + 1] @ w)
        beta = float(w.norm())
        if not (np.isfinite(beta) and np.isfinite(alphas[-1])):
            return EigResult(float("nan"), None, k + 1, False)
        theta, S = np.linalg.eigh(np.diag(alphas) + np.diag(betas, 1) + np.diag(betas, -1))
        i = _pick(theta, which)
        converged = beta * abs(S[-1, i]) <= tol * abs(theta[i])
        if converged or k == steps - 1:
            u = Q[:k + 1].T @ torch.from_numpy(S[:, i]).to(Q)
            return EigResult(float(theta[i]), u / u.norm(), k + 1, bool(converged))
        betas.append(beta)
        Q[k + 1] = w / beta
    raise ValueError("steps must be positive")


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
    """One eigenpair of a symmetric operator (``which`` in {'LA', 'SA', 'LM'}): Lanczos for up to
    ``ncv`` steps, then ARPACK from its Ritz vector if that did not converge; started from ``v0``
    (e.g. the eigenvector of the previous measurement: a warm start) or a seeded random vector."""
    if p < 3:  # ARPACK needs k < p - 1: dense
        eye = torch.eye(p, dtype=like.dtype, device=like.device)
        H = torch.stack([matvec(e) for e in eye]).to("cpu", torch.float64)
        w, U = torch.linalg.eigh(0.5 * (H + H.T))
        i = _pick(w.numpy(), which)
        return EigResult(float(w[i]), U[:, i].to(like.device, like.dtype), p, True)
    steps = min(p, 20 if ncv is None else max(3, int(ncv)))  # ARPACK's default ncv is 20 for k = 1
    start = (torch.from_numpy(np.random.default_rng(seed).standard_normal(p)) if v0 is None
             else v0.detach().reshape(-1))
    first = _lanczos(matvec, like, which, tol, steps, start)
    if first.converged or first.vector is None or not np.isfinite(first.value):
        return first
    count = [0]
    dtype = np.float64 if like.dtype == torch.float64 else np.float32

    def mv(v: np.ndarray) -> np.ndarray:
        count[0] += 1
        t = torch.from_numpy(np.ascontiguousarray(v, dtype=dtype).reshape(-1))
        return matvec(t.to(device=like.device, dtype=like.dtype)).detach().cpu().numpy().astype(dtype, copy=False)

    op = LinearOperator((p, p), matvec=mv, dtype=dtype)
    try:
        w, U = eigsh(op, k=1, which=which, tol=tol, maxiter=maxiter, ncv=steps,
                     v0=first.vector.detach().cpu().numpy().astype(dtype))
        converged = True
    except ArpackNoConvergence as err:  # keep ARPACK's best Ritz pair, flagged
        w, U = err.eigenvalues, err.eigenvectors
        converged = False
    matvecs = first.matvecs + count[0]
    if len(w) == 0:
        return EigResult(first.value, first.vector, matvecs, False)
    return EigResult(float(w[0]), torch.from_numpy(U[:, 0].copy()).to(like.device, like.dtype), matvecs, converged)


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
