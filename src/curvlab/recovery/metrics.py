"""Success and error metrics of the recovery experiments (Section IV of the paper).

* SD_n = sqrt((1/L) sum_l ||w_hat^(l) - w_bar||^2) over the L inits of one training set; a set is a
  success when SD_n <= threshold (1e-4 FCN, 1e-14 CNN).
* normalized error = sum_l ||W_hat^(l) - W*||_F^2 / (L ||W*||_F^2), FCN columns aligned to W* by the
  best permutation first (FCN minimizers are unique only up to a column permutation).
* contraction factor: exp of the least-squares slope of log ||grad f_n(W_t)|| against t over the
  tail of a trial's run (GD converging linearly at rate q has ||grad|| ~ C q^t).
"""

from __future__ import annotations

import itertools
import math

import torch
from torch import Tensor

SUCCESS_THRESHOLD = {"fcn": 1e-4, "cnn": 1e-14}


def _flat(W: Tensor, S: int, L: int) -> Tensor:
    return W.reshape(S, L, -1)


def sd_n(W_hat: Tensor) -> Tensor:
    """SD_n per training set: W_hat (S, L, ...) -> (S,)."""
    S, L = W_hat.shape[:2]
    w = _flat(W_hat, S, L)
    dev = w - w[:, :1]  # centred on the first point first: identical outputs give exactly 0
    return (dev - dev.mean(1, keepdim=True)).square().sum(-1).mean(1).sqrt()


def success(sd: Tensor, threshold: float) -> Tensor:
    """SD_n <= threshold (NaN counts as failure)."""
    return sd <= threshold


def align_columns(W_hat: Tensor, W_star: Tensor) -> Tensor:
    """Permute the K columns of each FCN point W_hat (S, L, d, K) to best match W* (S, d, K) in
    Frobenius norm. Exhaustive over the K! permutations for K <= 7, Hungarian (scipy, on the CPU) beyond."""
    S, L, d, K = W_hat.shape
    # cost[s, l, i, j] = ||w_hat_i - w*_j||^2
    cost = (W_hat.unsqueeze(-1) - W_star[:, None, :, None, :]).square().sum(2)
    if K <= 7:
        perms = torch.tensor(list(itertools.permutations(range(K))), dtype=torch.long,
                             device=W_hat.device)  # (P, K): column j <- perm[j]
        idx = perms.view(1, 1, -1, K).expand(S, L, -1, K)
        # total[s, l, p] = sum_j cost[s, l, perm_p[j], j]
        c = cost.transpose(2, 3)  # [s, l, j, i]
        total = torch.gather(c.unsqueeze(2).expand(S, L, perms.shape[0], K, K), 4,
                             idx.unsqueeze(-1)).squeeze(-1).sum(-1)
        best = perms[total.argmin(-1)]  # (S, L, K)
    else:
        from scipy.optimize import linear_sum_assignment

        best = torch.empty(S, L, K, dtype=torch.long)
        cn = cost.detach().cpu().numpy()
        for s in range(S):
            for l in range(L):
                rows, cols = linear_sum_assignment(cn[s, l])
                best[s, l, torch.as_tensor(cols)] = torch.as_tensor(rows)
        best = best.to(W_hat.device)
    return torch.gather(W_hat, 3, best.unsqueeze(2).expand(S, L, d, K))


def normalized_error(kind: str, W_hat: Tensor, W_star: Tensor, align: bool = True) -> Tensor:
    """Per set: sum_l ||W_hat^(l) - W*||_F^2 / (L ||W*||_F^2): (S,)."""
    if kind == "fcn" and align:
        W_hat = align_columns(W_hat, W_star)
    S, L = W_hat.shape[:2]
    err = (_flat(W_hat, S, L) - W_star.reshape(S, 1, -1)).square().sum(-1).mean(1)
    return err / W_star.reshape(S, -1).square().sum(-1)


def contraction_factor(history: Tensor, iters: Tensor, floor: float = 1e-13, min_points: int = 8) -> Tensor:
    """Fitted linear contraction factor per trial from the gradient-norm history.

    history (T, S, L) of ||grad f_n(W_t)|| (NaN after the trial stopped), iters (S, L). Fits
    log ||grad|| = a + t log q by least squares over the second half of the trial's iterations,
    ignoring points below ``floor`` x the initial norm (round-off). NaN where fewer than
    ``min_points`` points remain. Returns q, shape (S, L).
    """
    T = history.shape[0]
    h = history.double()
    t = torch.arange(T, dtype=torch.float64, device=history.device).view(T, 1, 1)
    g0 = h[0:1]
    it = iters.unsqueeze(0).double()
    ok = torch.isfinite(h) & (h > 0) & (h > floor * g0) & (t >= 0.5 * it) & (t <= it)
    logh = torch.where(ok, torch.log(h.clamp_min(1e-300)), 0.0)
    w = ok.double()
    cnt = w.sum(0)
    tm = (w * t).sum(0) / cnt.clamp_min(1)
    ym = (w * logh).sum(0) / cnt.clamp_min(1)
    cov = (w * (t - tm) * (logh - ym)).sum(0)
    var = (w * (t - tm).square()).sum(0)
    slope = cov / var.clamp_min(1e-300)
    q = torch.exp(slope)
    return torch.where(cnt >= min_points, q, math.nan)


def nanmean(x: Tensor) -> float:
    """Mean of the finite entries of ``x`` in float64 (NaN if there are none)."""
    x = x.double().flatten()
    x = x[torch.isfinite(x)]
    return float(x.mean()) if x.numel() else math.nan


def scaled_n(n: int, d: int) -> float:
    """The paper's x-axis n / (d log^2 d) (Theorem 1's sample complexity)."""
    return n / (d * math.log(d) ** 2)
