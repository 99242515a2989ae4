"""Gradient descent over many independent trials as one batched tensor program (Algorithm 1).

A *trial* is one (training set s, initial point l) pair; all S x L trials of one (kind, d, K, n) grid
point run together. The L points of one set share its data, so a GD step is, per set, two GEMMs and
one elementwise pass, with the neuron axis K outside the sample axis so every elementwise op runs on
contiguous rows:

    FCN: Z = [W_1 ... W_L]^T X^T      (L K x d)(d x n)  -> s = sigmoid(Z), H = mean_K s
         D = l'(H) s (1 - s) / (K n)                     -> G^T = D X        (L K x d)
    CNN: Z = [w_1 ... w_L]^T Xp^T     (L x m)(m x K n)   (Xp: the n K patches x^(k)_i, k-major)
         ...                                               G^T = D Xp       (L x m)

(the CNN gradient thereby sums over all K patches). The elementwise pass is one fused C++ loop
(:mod:`curvlab.recovery.fused`, built once with g++) or, where that is unavailable, eager ATen ops
(``CURVLAB_NO_FUSED=1`` forces them). The work is cut into *blocks* (a few sets x a
range of samples) whose intermediates fit in the L2 cache (~1 MB): a whole-batch elementwise op on
(S, n, L K) float64 buffers runs at memory bandwidth (and pays page faults on every fresh >32 MB
buffer), several times slower than the same op in cache. Blocks run single-threaded BLAS/ATen ops;
``workers`` Python threads (ops release the GIL) process disjoint set-blocks in parallel, which
scales better on 2 cores than OpenMP inside tiny ops.

Per-trial early stop: a trial stops at the first iterate whose gradient norm ||grad f_n||_F is
<= ``tol`` (converged), when it has taken ``max_iter`` steps (capped) or when its gradient becomes
NaN/inf (diverged). Stopped trials are frozen and, every ``compact_every`` steps, repacked away:
the batch keeps only sets with running trials and, per set, as many slots as its most-running count,
so converged trials stop costing. The iterates of a trial do not depend on the other trials in the
batch (up to BLAS summation order).

Step size: per training set, ``eta = eta_scale / lambda_max(hess f_n(W*))`` by default (the exact
empirical Hessian at the ground truth), or a constant.
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import torch
from torch import Tensor

from curvlab.data.teacher import TeacherData, check_kind, patch_size
from curvlab.recovery import fused, losses

STATUS_RUNNING, STATUS_CONVERGED, STATUS_CAPPED, STATUS_DIVERGED = 0, 1, 2, 3
STATUS_NAMES = {STATUS_RUNNING: "running", STATUS_CONVERGED: "converged", STATUS_CAPPED: "capped",
                STATUS_DIVERGED: "diverged"}
BLOCK_ELEMENTS = 1 << 17  # elements of one block's Z buffer: 1 MiB of float64


@dataclass
class GDResult:
    W: Tensor  # final iterates: (S, L, d, K) FCN or (S, L, m) CNN
    iters: Tensor  # (S, L) long: GD updates taken
    status: Tensor  # (S, L) int8: STATUS_*
    grad_norm: Tensor  # (S, L): ||grad f_n|| at the final iterate
    eta: Tensor  # (S,) step size used per training set
    history: Tensor | None  # (max_iter + 1, S, L) float32 grad norms (NaN after the trial stopped)
    steps: int  # batched steps executed
    trial_steps: int  # sum over steps of the trial slots computed (incl. frozen slots kept for packing)

    @property
    def converged(self) -> Tensor:
        return self.status == STATUS_CONVERGED


# --------------------------------------------------------------------------------------------------
# step size


def lambda_max_at_truth(data: TeacherData, eps: float = losses.DEFAULT_EPS) -> Tensor:
    """lambda_max of the exact empirical Hessian at W*, per training set: (S,)."""
    Hs = losses.hessian(data.kind, data.X, data.y, data.W_star.unsqueeze(1), data.K, eps)[:, 0]
    return torch.linalg.eigvalsh(Hs)[:, -1]


def step_sizes(data: TeacherData, eta: float | str | None = "auto", eta_scale: float = 1.0,
               eps: float = losses.DEFAULT_EPS) -> Tensor:
    """Per-set step size: ``eta_scale / lambda_max(hess f_n(W*))`` for ``"auto"``, else the constant."""
    if eta is None or eta == "auto":
        return eta_scale / lambda_max_at_truth(data, eps)
    eta = float(eta)
    if not eta > 0:
        raise ValueError(f"step size must be > 0 or 'auto', got {eta}")
    return torch.full((data.S,), eta, dtype=data.X.dtype)


# --------------------------------------------------------------------------------------------------
# one block of the batched step


def _block_grad(kind: str, K: int, n: int, W: Tensor, chunks: list[tuple[Tensor, Tensor]], eps: float,
                G: Tensor) -> None:
    """Gradient of the b sets of a block at all their slots, written into G (same shape as W).

    W: FCN (b, La K, d) / CNN (b, La, m). chunks: sample ranges (Xc, cc) with Xc (b, nc, d) [FCN] or
    (b, K nc, m) k-major patches [CNN] and cc = (1 - y) K n, shape (b, 1, 1, nc).

    With Hs = sum_k s_k = K H and y in {0, 1}: l'(H) / (K n) = 1 / ((1 - y) K n - n Hs), zero where
    H is clipped (outside [eps, 1 - eps])."""
    b = W.shape[0]
    La = W.shape[1] // K if kind == "fcn" else W.shape[1]
    fk = fused.kernel() if W.device.type == "cpu" else None  # the C++ kernel reads host memory
    for q, (Xc, cc) in enumerate(chunks):
        nc = cc.shape[-1]
        s = torch.bmm(W, Xc.transpose(1, 2))  # FCN (b, La K, nc) / CNN (b, La, K nc)
        if fk is not None:
            fk.fused_delta(s.view(b, La, K, nc), cc, K, float(n), eps)
        else:
            s.sigmoid_()
            s4 = s.view(b, La, K, nc)
            Hs = s4.sum(2, keepdim=True)  # (b, La, 1, nc)
            Hc = Hs.clamp(K * eps, K * (1.0 - eps))
            inside = Hc == Hs
            r = torch.sub(cc, Hc, alpha=float(n)).reciprocal_().mul_(inside)
            s.addcmul_(s, s, value=-1.0)  # s(1 - s)
            s4.mul_(r)
        if q == 0:
            torch.bmm(s, Xc, out=G)
        else:
            G.baddbmm_(s, Xc)


def _update(W: Tensor, G: Tensor, eta: Tensor, frozen: Tensor, tol: float, bound: Tensor) -> tuple[Tensor, Tensor]:
    """Masked GD update of the whole packed batch, in place on W; returns (grad norm, stepped), (B, La).

    A slot whose ||W||_F exceeds ``bound`` (or is NaN) gets a NaN gradient norm: diverged (far out,
    every sample saturates, the clipped gradient vanishes and would otherwise read as converged)."""
    B, La = frozen.shape
    Gv = G.view(B, La, -1)
    gn = Gv.square().sum(-1).sqrt_()
    gn.masked_fill_(~(W.view(B, La, -1).square().sum(-1) <= bound.square()), float("nan"))
    stepped = ~frozen & (gn > tol) & torch.isfinite(gn)
    Gv.mul_((-eta).view(B, 1, 1) * stepped.unsqueeze(-1))
    Gv.masked_fill_(~stepped.unsqueeze(-1), 0.0)  # a frozen non-finite gradient must not leak in
    W.add_(G)
    return gn, stepped


# --------------------------------------------------------------------------------------------------
# the packed batch


def _split_samples(kind: str, X: Tensor, y: Tensor, K: int, nc: int) -> list[tuple[Tensor, Tensor]]:
    """Contiguous sample chunks of X (b, n, d): FCN (b, nc, d); CNN k-major patches (b, K nc, m); with
    each chunk the label term (1 - y) K n of :func:`_block_grad`."""
    b, n, d = X.shape
    out = []
    for i0 in range(0, n, nc):
        i1 = min(n, i0 + nc)
        Xc = X[:, i0:i1]
        if kind == "cnn":
            m = d // K
            Xc = Xc.reshape(b, i1 - i0, K, m).transpose(1, 2).reshape(b, K * (i1 - i0), m)
        cc = ((1.0 - y[:, i0:i1]) * float(K * n)).reshape(b, 1, 1, i1 - i0)
        out.append((Xc.contiguous(), cc))
    return out


class _Packed:
    """The running part of the trial grid, packed for the batched step."""

    def __init__(self, data: TeacherData, eta: Tensor, W: Tensor, running: Tensor, block_elements: int,
                 bound: Tensor):
        kind, K = data.kind, data.K
        self.kind, self.K = kind, K
        S, L = running.shape
        n = data.n
        counts = running.sum(1)
        self.set_idx = torch.nonzero(counts > 0).flatten()
        B = self.set_idx.numel()
        La = int(counts.max()) if B else 0
        order = torch.argsort((~running).to(torch.int8), dim=1, stable=True)  # running trials first
        self.slot = order[self.set_idx, :La]  # (B, La): trial index l of each slot
        self.frozen = ~running[self.set_idx].gather(1, self.slot)
        self.flat = self.set_idx.unsqueeze(1) * L + self.slot  # (B, La) flat trial id
        self.eta = eta[self.set_idx]
        self.bound = bound[self.set_idx.unsqueeze(1), self.slot]
        Wg = W[self.set_idx.unsqueeze(1), self.slot]  # (B, La, ...)
        # FCN (B, La K, d): row l K + k is w_k of slot l; CNN (B, La, m)
        self.Wt = Wg.transpose(2, 3).reshape(B, La * K, -1).contiguous() if kind == "fcn" else Wg.contiguous()
        per_sample = La * K  # Z elements per sample and set
        nc = max(1, min(n, block_elements // max(per_sample, 1)))
        bs = max(1, block_elements // max(per_sample * n, 1)) if nc == n else 1
        self.blocks = []
        for b0 in range(0, B, bs):
            b1 = min(B, b0 + bs)
            idx = self.set_idx[b0:b1]
            self.blocks.append((b0, b1, _split_samples(kind, data.X[idx], data.y[idx], K, nc)))

    def unpacked(self) -> Tensor:
        B = self.Wt.shape[0]
        if self.kind == "fcn":
            La = self.slot.shape[1]
            return self.Wt.view(B, La, self.K, -1).transpose(2, 3)
        return self.Wt

    def write_back(self, W: Tensor) -> None:
        if self.set_idx.numel():
            W[self.set_idx.unsqueeze(1), self.slot] = self.unpacked()


def default_workers() -> int:
    """Python worker threads for the blocks: ``CURVLAB_GD_WORKERS`` or the torch thread count (<= 2 used
    by the benchmark machine)."""
    env = os.environ.get("CURVLAB_GD_WORKERS")
    return max(1, int(env)) if env else max(1, torch.get_num_threads())


class BatchedGD:
    """GD over all trials of one grid point, one batched iteration per :meth:`step` (so a Lightning
    ``training_step`` can drive it). :func:`run_gd` is the plain loop over it.

    ``step()`` at t < max_iter computes every running trial's gradient at W_t, stops the trials that
    meet a stopping rule and updates the others; at t = max_iter it only evaluates the final gradient
    norms (capped trials). Returns whether any trial is still running. Call :meth:`close` (or use it as
    a context manager) to restore the torch thread count and stop the worker threads."""

    def __init__(
        self,
        data: TeacherData,
        W0: Tensor,
        eta: Tensor,
        max_iter: int = 3500,
        tol: float = 1e-10,
        eps: float = losses.DEFAULT_EPS,
        record_history: bool = True,
        compact_every: int = 25,
        compact_below: float = 0.85,
        workers: int | None = None,
        block_elements: int = BLOCK_ELEMENTS,
        diverge_ratio: float = 1e3,
        stall_patience: int = 0,
        stall_tol: float = 0.0,
    ):
        kind, K = check_kind(data.kind), data.K
        S, n, d = data.X.shape
        if kind == "cnn":
            patch_size(d, K)
        if W0.shape[0] != S:
            raise ValueError(f"W0 has {W0.shape[0]} sets, data has {S}")
        if max_iter < 0:
            raise ValueError(f"max_iter must be >= 0, got {max_iter}")
        L = W0.shape[1]
        if tuple(eta.shape) != (S,):
            raise ValueError(f"eta must have shape ({S},), got {tuple(eta.shape)}")
        self.data, self.eta, self.max_iter, self.tol, self.eps = data, eta, max_iter, tol, eps
        self.compact_every, self.compact_below, self.block_elements = compact_every, compact_below, block_elements
        self.workers = default_workers() if workers is None else max(1, int(workers))
        self.W = W0.detach().to(data.X.dtype).clone()
        self.status = torch.zeros(S, L, dtype=torch.int8)
        self.iters = torch.zeros(S, L, dtype=torch.long)
        self.gnorm = torch.full((S, L), float("nan"), dtype=data.X.dtype)
        self.hist = torch.full((max_iter + 1, S * L), float("nan"), dtype=torch.float32) if record_history else None
        self.running = torch.ones(S, L, dtype=torch.bool)
        self.bound = diverge_ratio * self.W.reshape(S, L, -1).norm(dim=-1).clamp_min(1.0)
        self.stall_patience, self.stall_tol = int(stall_patience), float(stall_tol)
        self.best = torch.full((S * L,), float("inf"), dtype=data.X.dtype)
        self.stale = torch.zeros(S * L, dtype=torch.long)
        self.t = 0
        self.steps = self.trial_steps = 0
        self.last_live_gn = torch.empty(0, dtype=data.X.dtype)  # gradient norms of the trials live at the last step
        fused.kernel()  # build / load the fused elementwise kernel here, not inside a timed step
        self._prev_threads = torch.get_num_threads()
        torch.set_num_threads(1)
        self._pool = ThreadPoolExecutor(self.workers) if self.workers > 1 else None
        self._pk: _Packed | None = _Packed(data, eta, self.W, self.running, block_elements, self.bound)

    @property
    def done(self) -> bool:
        return self._pk is None

    def step(self) -> bool:
        if self._pk is None:
            return False
        pk, t, data = self._pk, self.t, self.data
        B, La = pk.frozen.shape
        frozen = pk.frozen
        if t == self.max_iter:  # the last iterate: gradient norms only, no update
            frozen = torch.ones_like(frozen)
        G = torch.empty_like(pk.Wt)
        jobs = [(data.kind, data.K, data.n, pk.Wt[b0:b1], ch, self.eps, G[b0:b1]) for b0, b1, ch in pk.blocks]
        if self._pool is None or len(jobs) == 1:
            for job in jobs:
                _block_grad(*job)
        else:
            for f in [self._pool.submit(_block_grad, *job) for job in jobs]:
                f.result()
        gn, stepped = _update(pk.Wt, G, pk.eta, frozen, self.tol, pk.bound)
        self.steps += 1
        self.trial_steps += B * La
        live = ~pk.frozen
        ids = pk.flat[live]
        self.last_live_gn = gn[live]
        if self.hist is not None:
            self.hist[t].index_put_((ids,), self.last_live_gn.float())
        self.gnorm.view(-1).index_put_((ids,), self.last_live_gn)
        stopped = live & ~stepped
        if bool(stopped.any()):
            sid = pk.flat[stopped]
            g = gn[stopped]
            st = torch.where(g <= self.tol, STATUS_CONVERGED,
                             torch.where(torch.isfinite(g), STATUS_CAPPED, STATUS_DIVERGED))
            self.status.view(-1)[sid] = st.to(torch.int8)
            self.iters.view(-1)[sid] = t
            self.running.view(-1)[sid] = False
            pk.frozen = pk.frozen | stopped
        if self.stall_patience > 0:
            self._stall_stop(pk, live & stepped, gn)
        self.t += 1
        if not bool(self.running.any()):
            pk.write_back(self.W)
            self._pk = None
            return False
        if self.t % self.compact_every == 0 and float(pk.frozen.float().mean()) > 1.0 - self.compact_below:
            pk.write_back(self.W)
            self._pk = _Packed(data, self.eta, self.W, self.running, self.block_elements, self.bound)
        return True

    def _stall_stop(self, pk: "_Packed", moved: Tensor, gn: Tensor) -> None:
        """Stop trials whose gradient norm has reached the round-off floor: not below its running
        minimum for ``stall_patience`` steps, that minimum <= ``stall_tol``. They count as converged
        (iters = updates taken, grad_norm = the last one evaluated)."""
        ids = pk.flat[moved]
        g = gn[moved]
        improved = g < self.best[ids]
        self.best[ids] = torch.minimum(self.best[ids], g)
        self.stale[ids] = torch.where(improved, 0, self.stale[ids] + 1)
        stall = (self.stale[ids] >= self.stall_patience) & (self.best[ids] <= self.stall_tol)
        if bool(stall.any()):
            sid = ids[stall]
            self.status.view(-1)[sid] = STATUS_CONVERGED
            self.iters.view(-1)[sid] = self.t + 1
            self.running.view(-1)[sid] = False
            mask = torch.zeros_like(moved)
            mask[moved] = stall
            pk.frozen = pk.frozen | mask

    def run(self) -> "GDResult":
        while self.step():
            pass
        return self.result()

    def result(self) -> GDResult:
        if self._pk is not None:
            self._pk.write_back(self.W)
        S, L = self.running.shape
        hist = None if self.hist is None else self.hist.view(self.max_iter + 1, S, L)
        return GDResult(self.W, self.iters, self.status, self.gnorm, self.eta, hist, self.steps, self.trial_steps)

    def close(self) -> None:
        torch.set_num_threads(self._prev_threads)
        if self._pool is not None:
            self._pool.shutdown()
            self._pool = None

    def __enter__(self) -> "BatchedGD":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def run_gd(data: TeacherData, W0: Tensor, eta: Tensor, **options) -> GDResult:
    """GD from W0 ((S, L, d, K) FCN / (S, L, m) CNN) on the S training sets of ``data``; options as in
    :class:`BatchedGD` (max_iter, tol, eps, record_history, compact_every, compact_below, workers,
    block_elements, diverge_ratio, stall_patience, stall_tol). Repacks when fewer than ``compact_below`` of the computed slots are
    still running; a trial whose ||W_t||_F exceeds ``diverge_ratio`` x max(||W_0||_F, 1) is stopped as
    diverged."""
    with BatchedGD(data, W0, eta, **options) as gd:
        return gd.run()
