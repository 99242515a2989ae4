"""Gradient descent over many independent trials as one batched tensor program (Algorithm 1).

A *trial* is one (training set s, initial point l) pair; all S x L trials of one (kind, d, K, n) grid
point run together. The L points of one set share its data, so a GD step is, per set, two GEMMs and
one elementwise pass, with the neuron axis K outside the sample axis so every elementwise op runs on
contiguous rows:

    FCN: Z = [W_1 ... W_L]^T X^T      (L K x d)(d x n)  -> s = sigmoid(Z), H = mean_K s
         D = l'(H) s (1 - s) / (K n)                     -> G^T = D X        (L K x d)
    CNN: Z = [w_1 ... w_L]^T Xp^T     (L x m)(m x K n)   (Xp: the n K patches x^(k)_i, k-major)
         ...                                               G^T = D Xp       (L x m)

(the CNN gradient thereby sums over all K patches). The work is cut into *blocks* (a few sets x a
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
from curvlab.recovery import losses

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


def _block_grad(kind: str, K: int, n: int, W: Tensor, chunks: list[tuple[Tensor, Tensor]], eps: float) -> Tensor:
    """Gradient of the b sets of a block at all their slots.

    W: FCN (b, La K, d) / CNN (b, La, m). chunks: sample ranges (Xc, cc) with Xc (b, nc, d) [FCN] or
    (b, K nc, m) k-major patches [CNN] and cc = (1 - y) K n, shape (b, 1, 1, nc). Returns G like W.

    With Hs = sum_k s_k = K H and y in {0, 1}: l'(H) / (K n) = 1 / ((1 - y) K n - n Hs), zero where
    H is clipped (outside [eps, 1 - eps])."""
    G = None
    b = W.shape[0]
    La = W.shape[1] // K if kind == "fcn" else W.shape[1]
    for Xc, cc in chunks:
        nc = cc.shape[-1]
        s = torch.bmm(W, Xc.transpose(1, 2))  # FCN (b, La K, nc) / CNN (b, La, K nc)
        s.sigmoid_()
        s4 = s.view(b, La, K, nc)
        Hs = s4.sum(2, keepdim=True)  # (b, La, 1, nc)
        Hc = Hs.clamp(K * eps, K * (1.0 - eps))
        inside = Hc == Hs
        r = torch.sub(cc, Hc, alpha=float(n)).reciprocal_().mul_(inside)
        s.addcmul_(s, s, value=-1.0)  # s(1 - s)
        s4.mul_(r)
        g = torch.bmm(s, Xc)
        G = g if G is None else G.add_(g)
    return G


def _block_step(kind: str, K: int, n: int, W: Tensor, chunks, eta: Tensor, frozen: Tensor, tol: float, eps: float,
                bound: Tensor, gn_out: Tensor, stepped_out: Tensor) -> None:
    """One GD step of a block, in place on W (a view of the packed iterate). A slot whose ||W||_F
    exceeds ``bound`` gets a NaN gradient norm: diverged (far out, every sample saturates, the clipped
    gradient vanishes and would otherwise read as converged)."""
    b = W.shape[0]
    La = frozen.shape[1]
    G = _block_grad(kind, K, n, W, chunks, eps)
    gn = G.reshape(b, La, -1).square().sum(-1).sqrt_()
    gn.masked_fill_(W.reshape(b, La, -1).square().sum(-1) > bound.square(), float("nan"))
    stepped = ~frozen & (gn > tol) & torch.isfinite(gn)
    Gv = G.view(b, La, -1)
    Gv.mul_((-eta).view(b, 1, 1) * stepped.unsqueeze(-1))
    Gv.masked_fill_(~stepped.unsqueeze(-1), 0.0)  # a frozen non-finite gradient must not leak in
    W.add_(G)
    gn_out.copy_(gn)
    stepped_out.copy_(stepped)


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


def run_gd(
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
) -> GDResult:
    """GD from W0 ((S, L, d, K) FCN / (S, L, m) CNN) on the S training sets of ``data``.

    Repacks when fewer than ``compact_below`` of the computed slots are still running. A trial whose
    ||W_t||_F exceeds ``diverge_ratio`` x max(||W_0||_F, 1) is stopped as diverged."""
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
    workers = default_workers() if workers is None else max(1, int(workers))

    W = W0.detach().to(data.X.dtype).clone()
    status = torch.zeros(S, L, dtype=torch.int8)
    iters = torch.zeros(S, L, dtype=torch.long)
    gnorm = torch.full((S, L), float("nan"), dtype=data.X.dtype)
    hist = torch.full((max_iter + 1, S * L), float("nan"), dtype=torch.float32) if record_history else None
    running = torch.ones(S, L, dtype=torch.bool)
    bound = diverge_ratio * W.reshape(S, L, -1).norm(dim=-1).clamp_min(1.0)
    steps = trial_steps = 0

    prev_threads = torch.get_num_threads()
    torch.set_num_threads(1)
    pool = ThreadPoolExecutor(workers) if workers > 1 else None
    try:
        pk = _Packed(data, eta, W, running, block_elements, bound)
        for t in range(max_iter + 1):
            B, La = pk.frozen.shape
            gn = torch.empty(B, La, dtype=W.dtype)
            stepped = torch.empty(B, La, dtype=torch.bool)
            frozen = pk.frozen
            if t == max_iter:  # the last iterate: gradient norms only, no update
                frozen = torch.ones_like(frozen)
            jobs = [(kind, K, n, pk.Wt[b0:b1], ch, pk.eta[b0:b1], frozen[b0:b1], tol, eps, pk.bound[b0:b1],
                     gn[b0:b1], stepped[b0:b1])
                    for b0, b1, ch in pk.blocks]
            if pool is None:
                for job in jobs:
                    _block_step(*job)
            else:
                for f in [pool.submit(_block_step, *job) for job in jobs]:
                    f.result()
            steps += 1
            trial_steps += B * La
            live = ~pk.frozen
            ids = pk.flat[live]
            if hist is not None:
                hist[t].index_put_((ids,), gn[live].float())
            gnorm.view(-1).index_put_((ids,), gn[live])
            stopped = live & ~stepped
            if bool(stopped.any()):
                sid = pk.flat[stopped]
                g = gn[stopped]
                st = torch.where(g <= tol, STATUS_CONVERGED,
                                 torch.where(torch.isfinite(g), STATUS_CAPPED, STATUS_DIVERGED))
                status.view(-1)[sid] = st.to(torch.int8)
                iters.view(-1)[sid] = t
                running.view(-1)[sid] = False
                pk.frozen = pk.frozen | stopped
            if not bool(running.any()):
                break
            if (t + 1) % compact_every == 0 and float(pk.frozen.float().mean()) > 1.0 - compact_below:
                pk.write_back(W)
                pk = _Packed(data, eta, W, running, block_elements, bound)
        pk.write_back(W)
    finally:
        torch.set_num_threads(prev_threads)
        if pool is not None:
            pool.shutdown()
    return GDResult(W, iters, status, gnorm, eta, None if hist is None else hist.view(max_iter + 1, S, L),
                    steps, trial_steps)
