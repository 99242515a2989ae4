"""Gradient descent over many independent trials as one batched tensor program (Algorithm 1).

A *trial* is one (training set s, initial point l) pair; all S x L trials of one (kind, d, K, n) grid
point run together. The L points of one set share its data, so one GD step is two batched GEMMs over
the sets plus one elementwise pass:

    FCN: Z = X_s [W_1 ... W_L]   (n x d)(d x L K)     -> s = sigmoid(Z), H = mean_K s
         D = l'(H) s (1 - s) / (K n)                 -> G_s = X_s^T D   (d x L K)
    CNN: Z = X_s^patches [w_1 ... w_L]  (n K x m)(m x L)  ...   G_s = X_s^patchesT D   (m x L)

(the CNN gradient thereby sums over all K patches). The elementwise pass is fused with
``torch.compile`` where that works offline on this CPU (``compile="auto"``: tried once per process,
eager fallback on any failure); the eager path is the same math with in-place ops.

Per-trial early stop: a trial stops at the first iterate whose gradient norm ||grad f_n||_F is
<= ``tol`` (converged), when it has taken ``max_iter`` steps (capped) or when its gradient becomes
NaN/inf (diverged). Stopped trials are frozen and, every ``compact_every`` steps, repacked away:
the batch keeps only sets with running trials and, per set, as many slots as its most-running count,
so converged trials stop costing. Iterates of a trial do not depend on the other trials in the batch
(up to BLAS summation order).

Step size: per training set, ``eta = eta_scale / lambda_max(hess f_n(W*))`` by default (the exact
empirical Hessian at the ground truth), or a constant.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass

import torch
from torch import Tensor

from curvlab.data.teacher import TeacherData, check_kind, patch_size
from curvlab.recovery import losses

log = logging.getLogger(__name__)

STATUS_RUNNING, STATUS_CONVERGED, STATUS_CAPPED, STATUS_DIVERGED = 0, 1, 2, 3


@dataclass
class GDResult:
    W: Tensor  # final iterates: (S, L, d, K) FCN or (S, L, m) CNN
    iters: Tensor  # (S, L) long: GD updates taken
    status: Tensor  # (S, L) int8: STATUS_*
    grad_norm: Tensor  # (S, L): ||grad f_n|| at the final iterate
    eta: Tensor  # (S,) step size used per training set
    history: Tensor | None  # (max_iter + 1, S, L) float32 grad norms (NaN after the trial stopped)
    steps: int  # batched steps executed
    trial_steps: int  # sum over steps of the slots computed (incl. frozen slots kept for packing)

    @property
    def converged(self) -> Tensor:
        return self.status == STATUS_CONVERGED


# --------------------------------------------------------------------------------------------------
# one step: gradient + norm + masked update, for a packed batch


def _fcn_step(X: Tensor, y: Tensor, Wp: Tensor, eta: Tensor, frozen: Tensor, tol: float, eps: float, K: int):
    """X (B, n, d), y (B, n), Wp (B, d, L K), eta (B,), frozen (B, L) -> new Wp, grad norm (B, L), stepped (B, L)."""
    B, n, d = X.shape
    L = Wp.shape[-1] // K
    s = torch.sigmoid(torch.bmm(X, Wp).view(B, n, L, K))
    H = s.mean(-1, keepdim=True)
    Hc = H.clamp(eps, 1.0 - eps)
    yy = y.view(B, n, 1, 1)
    r = torch.where((H >= eps) & (H <= 1.0 - eps), (Hc - yy) / (Hc * (1.0 - Hc)), 0.0) * (1.0 / (K * n))
    D = (r * (s - s * s)).view(B, n, L * K)
    G = torch.bmm(X.transpose(1, 2), D)  # (B, d, L K)
    gn = G.view(B, d, L, K).square().sum((1, 3)).sqrt()
    stepped = ~frozen & (gn > tol) & torch.isfinite(gn)
    upd = Wp.view(B, d, L, K) - eta.view(B, 1, 1, 1) * G.view(B, d, L, K)
    Wp = torch.where(stepped.view(B, 1, L, 1), upd, Wp.view(B, d, L, K)).view(B, d, L * K)
    return Wp, gn, stepped


def _cnn_step(X: Tensor, y: Tensor, Wp: Tensor, eta: Tensor, frozen: Tensor, tol: float, eps: float, K: int):
    """X (B, n K, m) patches, y (B, n), Wp (B, m, L) -> new Wp, grad norm (B, L), stepped (B, L)."""
    B, nK, m = X.shape
    n = nK // K
    L = Wp.shape[-1]
    s = torch.sigmoid(torch.bmm(X, Wp).view(B, n, K, L))
    H = s.mean(2, keepdim=True)
    Hc = H.clamp(eps, 1.0 - eps)
    yy = y.view(B, n, 1, 1)
    r = torch.where((H >= eps) & (H <= 1.0 - eps), (Hc - yy) / (Hc * (1.0 - Hc)), 0.0) * (1.0 / (K * n))
    D = (r * (s - s * s)).view(B, nK, L)
    G = torch.bmm(X.transpose(1, 2), D)  # (B, m, L)
    gn = G.square().sum(1).sqrt()
    stepped = ~frozen & (gn > tol) & torch.isfinite(gn)
    Wp = torch.where(stepped.view(B, 1, L), Wp - eta.view(B, 1, 1) * G, Wp)
    return Wp, gn, stepped


def _fcn_step_eager(X, y, Wp, eta, frozen, tol, eps, K):
    """Same as :func:`_fcn_step` with fewer passes over the (B, n, L K) buffers (in-place ops)."""
    B, n, d = X.shape
    L = Wp.shape[-1] // K
    s = torch.bmm(X, Wp)
    s.sigmoid_()
    s4 = s.view(B, n, L, K)
    H = s4.mean(-1, keepdim=True)
    Hc = H.clamp(eps, 1.0 - eps)
    yy = y.view(B, n, 1, 1)
    r = torch.where((H >= eps) & (H <= 1.0 - eps), (Hc - yy) / (Hc * (1.0 - Hc)), 0.0) * (1.0 / (K * n))
    ds = torch.addcmul(s, s, s, value=-1.0)  # s - s^2
    ds.view(B, n, L, K).mul_(r)
    G = torch.bmm(X.transpose(1, 2), ds)
    gn = G.view(B, d, L, K).square().sum((1, 3)).sqrt()
    stepped = ~frozen & (gn > tol) & torch.isfinite(gn)
    G.mul_(-eta.view(B, 1, 1)).add_(Wp)
    return torch.where(stepped.view(B, 1, L, 1), G.view(B, d, L, K), Wp.view(B, d, L, K)).view(B, d, L * K), gn, stepped


def _cnn_step_eager(X, y, Wp, eta, frozen, tol, eps, K):
    B, nK, m = X.shape
    n = nK // K
    L = Wp.shape[-1]
    s = torch.bmm(X, Wp)
    s.sigmoid_()
    s4 = s.view(B, n, K, L)
    H = s4.mean(2, keepdim=True)
    Hc = H.clamp(eps, 1.0 - eps)
    yy = y.view(B, n, 1, 1)
    r = torch.where((H >= eps) & (H <= 1.0 - eps), (Hc - yy) / (Hc * (1.0 - Hc)), 0.0) * (1.0 / (K * n))
    ds = torch.addcmul(s, s, s, value=-1.0)
    ds.view(B, n, K, L).mul_(r)
    G = torch.bmm(X.transpose(1, 2), ds)
    gn = G.square().sum(1).sqrt()
    stepped = ~frozen & (gn > tol) & torch.isfinite(gn)
    G.mul_(-eta.view(B, 1, 1)).add_(Wp)
    return torch.where(stepped.view(B, 1, L), G, Wp), gn, stepped


_COMPILED: dict[str, object] = {}
_COMPILE_FAILED: set[str] = set()


def _compiled(kind: str):
    if kind not in _COMPILED:
        fn = _fcn_step if kind == "fcn" else _cnn_step
        _COMPILED[kind] = torch.compile(fn, dynamic=True)
    return _COMPILED[kind]


def step_function(kind: str, compile: bool | str = "auto"):
    """The batched step: compiled (``True``), eager (``False``) or compiled with eager fallback (``"auto"``).

    ``CURVLAB_NO_COMPILE=1`` in the environment forces eager.
    """
    eager = _fcn_step_eager if kind == "fcn" else _cnn_step_eager
    if compile is False or os.environ.get("CURVLAB_NO_COMPILE") == "1" or (compile == "auto" and kind in _COMPILE_FAILED):
        return eager
    compiled = _compiled(kind)
    if compile is True:
        return compiled

    def guarded(*args):
        if kind in _COMPILE_FAILED:
            return eager(*args)
        try:
            return compiled(*args)
        except Exception as exc:  # no compiler, inductor error, ...: fall back for the whole process
            log.warning("torch.compile of the %s GD step failed (%s: %s); using the eager step",
                        kind, type(exc).__name__, str(exc).splitlines()[0] if str(exc) else "")
            _COMPILE_FAILED.add(kind)
            return eager(*args)

    return guarded


# --------------------------------------------------------------------------------------------------
# step size


def lambda_max_at_truth(data: TeacherData, eps: float = losses.DEFAULT_EPS) -> Tensor:
    """lambda_max of the exact empirical Hessian at W*, per training set: (S,)."""
    Hs = losses.hessian(data.kind, data.X, data.y, data.W_star.unsqueeze(1), data.K, eps)[:, 0]
    return torch.linalg.eigvalsh(Hs)[:, -1]


def step_sizes(data: TeacherData, eta: float | str = "auto", eta_scale: float = 1.0,
               eps: float = losses.DEFAULT_EPS) -> Tensor:
    """Per-set step size: ``eta_scale / lambda_max(hess f_n(W*))`` for ``"auto"``, else the constant."""
    if eta == "auto" or eta is None:
        return eta_scale / lambda_max_at_truth(data, eps)
    eta = float(eta)
    if not eta > 0:
        raise ValueError(f"step size must be > 0 or 'auto', got {eta}")
    return torch.full((data.S,), eta, dtype=data.X.dtype)


# --------------------------------------------------------------------------------------------------
# the driver


class _Packed:
    """The running part of the trial grid, packed for the batched step."""

    def __init__(self, kind: str, K: int, X: Tensor, y: Tensor, eta: Tensor, W: Tensor, running: Tensor):
        self.kind, self.K = kind, K
        S, L = running.shape
        counts = running.sum(1)
        self.set_idx = torch.nonzero(counts > 0).flatten()
        La = int(counts.max()) if self.set_idx.numel() else 0
        order = torch.argsort((~running).to(torch.int8), dim=1, stable=True)  # running trials first
        self.slot = order[self.set_idx, :La]  # (B, La) trial index l
        self.frozen = ~running[self.set_idx].gather(1, self.slot)
        full = self.set_idx.numel() == S
        self.X = X if full else X[self.set_idx]
        self.y = y if full else y[self.set_idx]
        self.eta = eta if full else eta[self.set_idx]
        Wg = W[self.set_idx.unsqueeze(1), self.slot]  # (B, La, ...)
        self.Wp = losses.pack_fcn(Wg) if kind == "fcn" else Wg.transpose(1, 2).contiguous()
        self.flat = self.set_idx.unsqueeze(1) * L + self.slot  # (B, La) flat trial id

    def unpacked(self) -> Tensor:
        return losses.unpack_fcn(self.Wp, self.K) if self.kind == "fcn" else self.Wp.transpose(1, 2)

    def write_back(self, W: Tensor) -> None:
        W[self.set_idx.unsqueeze(1), self.slot] = self.unpacked()


def run_gd(
    data: TeacherData,
    W0: Tensor,
    eta: Tensor,
    max_iter: int = 3500,
    tol: float = 1e-10,
    eps: float = losses.DEFAULT_EPS,
    record_history: bool = True,
    compile: bool | str = "auto",
    compact_every: int = 25,
    compact_below: float = 0.85,
) -> GDResult:
    """GD from W0 ((S, L, d, K) FCN / (S, L, m) CNN) on the S training sets of ``data``."""
    kind, K = check_kind(data.kind), data.K
    S, n, d = data.X.shape
    if W0.shape[0] != S:
        raise ValueError(f"W0 has {W0.shape[0]} sets, data has {S}")
    L = W0.shape[1]
    if eta.shape != (S,):
        raise ValueError(f"eta must have shape ({S},), got {tuple(eta.shape)}")
    X = data.X if kind == "fcn" else data.X.reshape(S, n * K, patch_size(d, K))
    y = data.y
    step = step_function(kind, compile)

    W = W0.detach().clone()
    status = torch.zeros(S, L, dtype=torch.int8)
    iters = torch.zeros(S, L, dtype=torch.long)
    gnorm = torch.full((S, L), float("nan"), dtype=X.dtype)
    hist = torch.full((max_iter + 1, S * L), float("nan"), dtype=torch.float32) if record_history else None
    running = torch.ones(S, L, dtype=torch.bool)
    pk = _Packed(kind, K, X, y, eta, W, running)
    steps = trial_steps = 0
    for t in range(max_iter + 1):
        Wp, gn, stepped = step(pk.X, pk.y, pk.Wp, pk.eta, pk.frozen, tol, eps, K)
        live = ~pk.frozen
        if hist is not None:
            hist[t].index_put_((pk.flat[live],), gn[live].float())
        gnorm.view(-1).index_put_((pk.flat[live],), gn[live])
        trial_steps += pk.flat.numel()
        steps += 1
        cap = t == max_iter
        if cap:
            stepped = torch.zeros_like(stepped)
        stopped = live & ~stepped
        if bool(stopped.any()):
            ids = pk.flat[stopped]
            g = gn[stopped]
            st = torch.where(g <= tol, STATUS_CONVERGED, torch.where(torch.isfinite(g), STATUS_CAPPED, STATUS_DIVERGED))
            status.view(-1)[ids] = st.to(torch.int8)
            iters.view(-1)[ids] = t
            running.view(-1)[ids] = False
            pk.frozen = pk.frozen | stopped
        if cap:
            break
        pk.Wp = Wp
        if not bool(stepped.any()):
            break
        if (t + 1) % compact_every == 0 and bool((pk.frozen.float().mean() > 1.0 - compact_below)):
            pk.write_back(W)
            pk = _Packed(kind, K, X, y, eta, W, running)
    pk.write_back(W)
    return GDResult(W, iters, status, gnorm, eta, None if hist is None else hist.view(max_iter + 1, S, L),
                    steps, trial_steps)
