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
range of samples) whose intermediates fit in the L2 cache (:data:`BLOCK_ELEMENTS`): a whole-batch
elementwise op on (S, n, L K) float64 buffers runs at memory bandwidth (and pays page faults on every
fresh large buffer) instead of at cache speed. Blocks run single-threaded BLAS/ATen ops; ``workers``
Python threads (ops release the GIL) process disjoint set-blocks in parallel, which scales better on
few cores than OpenMP inside tiny ops (``bench/bench_recovery_gd.py`` measures it).

Device: everything runs on the device of the data (W0 and eta are moved there). The fused kernel and
the worker threads serve CPU float64 tensors only; elsewhere (a GPU) the eager ops run on a few large
blocks. A step waits on the device once (did any trial stop?; if so, does any still run?), and once
more every ``compact_every`` steps (repack?).

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

from curvlab.recovery import fused, losses
from curvlab.recovery.teacher import TeacherData, check_kind, patch_size

STATUS_RUNNING, STATUS_CONVERGED, STATUS_CAPPED, STATUS_DIVERGED = 0, 1, 2, 3  # a trial's status codes
BLOCK_ELEMENTS = 1 << 17  # elements of one block's Z buffer on the CPU: 1 MiB of float64
DEVICE_BLOCK_ELEMENTS = 1 << 24  # ... on other devices (GPU): few blocks, few kernel launches


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
    return torch.full((data.S,), eta, dtype=data.X.dtype, device=data.X.device)


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
    # the C++ kernel reads host memory, float64 only
    fk = fused.kernel() if W.device.type == "cpu" and W.dtype == torch.float64 else None
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


def _tiled(kind: str, K: int, X: Tensor) -> bool:
    """Whether the step runs the fused FCN kernel (``fused.fcn_step``): FCN, CPU float64, K within
    what it was compiled for, not disabled by ``CURVLAB_NO_TILED=1`` (BLAS GEMMs around the fused
    elementwise pass, or eager ops, instead)."""
    if kind != "fcn" or X.device.type != "cpu" or X.dtype != torch.float64 or os.environ.get("CURVLAB_NO_TILED") == "1":
        return False
    return K <= fused.tiled_max_k()


def _panels(X: Tensor, y: Tensor, K: int) -> tuple[Tensor, Tensor]:
    """X (b, n, d) as 8-sample panels (b, n8 / 8, d, 8), zero-padded to n8 = 8 ceil(n / 8), and the
    label term (1 - y) K n of :func:`_block_grad`, (b, n8), 0 in the padding."""
    b, n, d = X.shape
    full, rem = divmod(n, 8)
    Xp = X.new_empty(b, full + (rem > 0), d, 8)  # written once, in place: no zeroed or transposed copy of X
    Xp[:, :full] = X[:, : full * 8].view(b, full, 8, d).transpose(2, 3)
    if rem:
        Xp[:, full, :, :rem] = X[:, full * 8 :].transpose(1, 2)
        Xp[:, full, :, rem:] = 0.0
    cc = X.new_zeros(b, Xp.shape[1] * 8)
    cc[:, :n] = (1.0 - y) * float(K * n)
    return Xp, cc


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
        self.blocks = []
        # the fused FCN kernel: X in 8-sample panels, all sets in one call per worker thread
        self.panels = self.fcn_step = None
        if _tiled(kind, K, data.X):
            self.panels, self.fcn_step = _panels(data.X[self.set_idx], data.y[self.set_idx], K), fused.kernel().fcn_step
            return
        per_sample = La * K  # Z elements per sample and set
        nc = max(1, min(n, block_elements // max(per_sample, 1)))
        bs = max(1, block_elements // max(per_sample * n, 1)) if nc == n else 1
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
    a context manager) to restore the torch thread count and stop the worker threads.

    ``eta`` is the per-set step size (S,), or ``"auto"`` / a number for :func:`step_sizes`."""

    def __init__(
        self,
        data: TeacherData,
        W0: Tensor,
        eta: Tensor | float | str = "auto",
        max_iter: int = 3500,
        tol: float = 1e-10,
        eps: float = losses.DEFAULT_EPS,
        record_history: bool = True,
        compact_every: int = 25,
        compact_below: float = 0.85,
        workers: int | None = None,
        block_elements: int | None = None,
        diverge_ratio: float = 1e3,
        stall_patience: int = 0,
        stall_tol: float = 0.0,
        eta_scale: float = 1.0,
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
        if not isinstance(eta, Tensor):
            eta = step_sizes(data, eta, eta_scale, eps)
        if tuple(eta.shape) != (S,):
            raise ValueError(f"eta must have shape ({S},), got {tuple(eta.shape)}")
        dev, dtype = data.X.device, data.X.dtype
        on_cpu = dev.type == "cpu"
        if block_elements is None:
            block_elements = BLOCK_ELEMENTS if on_cpu else DEVICE_BLOCK_ELEMENTS
        self.data, self.eta, self.max_iter, self.tol, self.eps = data, eta.to(dev, dtype), max_iter, tol, eps
        self.compact_every, self.compact_below, self.block_elements = compact_every, compact_below, block_elements
        self.workers = default_workers() if workers is None else max(1, int(workers))
        self.W = W0.detach().to(dev, dtype).clone()
        self.status = torch.zeros(S, L, dtype=torch.int8, device=dev)
        self.iters = torch.zeros(S, L, dtype=torch.long, device=dev)
        self.gnorm = torch.full((S, L), float("nan"), dtype=dtype, device=dev)
        self.hist = (torch.full((max_iter + 1, S * L), float("nan"), dtype=torch.float32, device=dev)
                     if record_history else None)
        self.running = torch.ones(S, L, dtype=torch.bool, device=dev)
        self.bound = diverge_ratio * self.W.reshape(S, L, -1).norm(dim=-1).clamp_min(1.0)
        self.stall_patience, self.stall_tol = int(stall_patience), float(stall_tol)
        self.best = torch.full((S * L,), float("inf"), dtype=dtype, device=dev)
        self.stale = torch.zeros(S * L, dtype=torch.long, device=dev)
        self.t = 0
        self.steps = self.trial_steps = 0
        # (B, La) gradient norms of the packed slots at the last step, NaN at slots frozen before it
        self.last_gn = torch.empty(0, 0, dtype=dtype, device=dev)
        if on_cpu:
            fused.kernel()  # build / load the fused elementwise kernel here, not inside a timed step
        self._prev_threads = torch.get_num_threads()
        torch.set_num_threads(1)
        self._pool = ThreadPoolExecutor(self.workers) if self.workers > 1 and on_cpu else None
        self._pk: _Packed | None = (_Packed(data, self.eta, self.W, self.running, block_elements, self.bound)
                                    if S * L else None)

    @property
    def done(self) -> bool:
        return self._pk is None

    def step(self) -> bool:
        if self._pk is None:
            return False
        pk, t, data = self._pk, self.t, self.data
        B, La = pk.frozen.shape
        last = t == self.max_iter  # the last iterate: gradient norms only, no update
        if pk.panels is not None:  # gradient and update in one kernel call per worker, sets split evenly
            gn, stepped = self._fused_step(pk, apply=not last)
        else:
            frozen = torch.ones_like(pk.frozen) if last else pk.frozen
            G = torch.empty_like(pk.Wt)
            jobs = [(data.kind, data.K, data.n, pk.Wt[b0:b1], ch, self.eps, G[b0:b1]) for b0, b1, ch in pk.blocks]
            self._map(_block_grad, jobs)
            gn, stepped = _update(pk.Wt, G, pk.eta, frozen, self.tol, pk.bound)
        self.steps += 1
        self.trial_steps += B * La
        # bookkeeping over all packed slots with masks (pk.flat holds distinct trial ids): no host sync
        live = ~pk.frozen
        flat = pk.flat
        self.last_gn = gn.masked_fill(pk.frozen, float("nan"))
        if self.hist is not None:
            self.hist[t, flat] = self.last_gn.float()  # row t is NaN before: frozen slots stay NaN
        gv = self.gnorm.view(-1)
        gv[flat] = torch.where(live, gn, gv[flat])
        stopped = live & ~stepped
        stall = self._stalled(flat, live & stepped, gn) if self.stall_patience > 0 else None
        halt = stopped if stall is None else stopped | stall
        self.t += 1
        if bool(halt.any()):  # the step's one host sync
            st = torch.where(gn <= self.tol, STATUS_CONVERGED,
                             torch.where(torch.isfinite(gn), STATUS_CAPPED, STATUS_DIVERGED))
            it = torch.where(stopped, t, self.iters.view(-1)[flat])
            if stall is not None:  # stalled trials count as converged, after the update they took
                st = torch.where(stall, STATUS_CONVERGED, st)
                it = torch.where(stall, t + 1, it)
            sv = self.status.view(-1)
            sv[flat] = torch.where(halt, st.to(torch.int8), sv[flat])
            self.iters.view(-1)[flat] = it
            rv = self.running.view(-1)
            rv[flat] = rv[flat] & ~halt
            pk.frozen = pk.frozen | halt
            if not bool(self.running.any()):
                pk.write_back(self.W)
                self._pk = None
                return False
        if self.t % self.compact_every == 0 and float(pk.frozen.float().mean()) > 1.0 - self.compact_below:
            pk.write_back(self.W)
            self._pk = _Packed(data, self.eta, self.W, self.running, self.block_elements, self.bound)
        return True

    def _map(self, fn, jobs: list[tuple]) -> None:
        """Run ``fn(*job)`` for every job, on the worker threads when there are several."""
        if self._pool is None or len(jobs) == 1:
            for job in jobs:
                fn(*job)
        else:
            for f in [self._pool.submit(fn, *job) for job in jobs]:
                f.result()

    def _fused_step(self, pk: _Packed, apply: bool) -> tuple[Tensor, Tensor]:
        """``fused.fcn_step`` on the packed batch: the gradient and :func:`_update` of every slot that
        is not frozen, W updated in place when ``apply``; returns (grad norm, stepped), (B, La)."""
        B, La = pk.frozen.shape
        Xp, cc = pk.panels
        gn = pk.Wt.new_empty(B, La)
        stepped = torch.empty(B, La, dtype=torch.bool, device=pk.Wt.device)
        parts = min(B, 1 if self._pool is None else self.workers)
        cuts = [B * i // parts for i in range(parts + 1)]
        args = (self.data.K, float(self.data.n), self.eps, self.tol, apply)
        self._map(pk.fcn_step, [(pk.Wt[b0:b1], Xp[b0:b1], cc[b0:b1], pk.frozen[b0:b1], pk.eta[b0:b1],
                                 pk.bound[b0:b1], gn[b0:b1], stepped[b0:b1], *args)
                                for b0, b1 in zip(cuts[:-1], cuts[1:])])
        return gn, stepped

    def _stalled(self, flat: Tensor, moved: Tensor, gn: Tensor) -> Tensor:
        """Update the running minimum and staleness of the slots that ``moved``; returns the slots
        (B, La) to stop: gradient norm at the round-off floor, not below its running minimum for
        ``stall_patience`` steps, that minimum <= ``stall_tol``. They count as converged (iters =
        updates taken, grad_norm = the last one evaluated)."""
        best, stale = self.best[flat], self.stale[flat]
        improved = gn < best
        best = torch.where(moved, torch.minimum(best, gn), best)
        stale = torch.where(moved, torch.where(improved, 0, stale + 1), stale)
        self.best[flat], self.stale[flat] = best, stale
        return moved & (stale >= self.stall_patience) & (best <= self.stall_tol)

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
