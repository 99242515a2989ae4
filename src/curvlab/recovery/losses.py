"""Empirical cross entropy f_n (eq. (4)-(5)) with closed-form gradient and exact Hessian.

    f_n(W) = (1/n) sum_i l(H(W, x_i); y_i),   l(H; y) = -y log H - (1 - y) log(1 - H),

with H clipped to [eps, 1 - eps] before the logarithms. Derivatives are those of this clipped loss
(a sample whose H leaves [eps, 1 - eps] contributes nothing to gradient or Hessian, as autograd
through ``clamp`` gives). With s = sigmoid(z), s' = s(1 - s), s'' = s'(1 - 2s) and

    l'(H)  = (H - y) / (H (1 - H)),    l''(H) = y / H^2 + (1 - y) / (1 - H)^2

(l'' equals the paper's (H^2 + y - 2yH) / (H^2 (1 - H)^2) of Appendix A):

* FCN, z_k = w_k^T x:   grad_{w_k} = (1/n) sum_i l'_i s'_ik / K x_i,
  Hessian block (j, l) = (1/n) sum_i [l''_i s'_ij s'_il / K^2 + delta_jl l'_i s''_ij / K] x_i x_i^T.
* CNN, z_k = w^T x^(k): grad = (1/n) sum_i l'_i (1/K) sum_k s'_ik x_i^(k)   (ALL K patches: the
  paper's eq. (12) shows one patch, which is right only in expectation),
  Hessian = (1/n) sum_i [l''_i v_i v_i^T + l'_i (1/K) sum_k s''_ik x_i^(k) x_i^(k)T],
  v_i = (1/K) sum_k s'_ik x_i^(k).

Points are batched: W is (S, P, d, K) [FCN] or (S, P, m) [CNN] against X (S, n, d), y (S, n).
The FCN Hessian uses vec(W) = [w_1; ...; w_K] (column stacking): index k d + i.
"""

from __future__ import annotations

import torch
from torch import Tensor

from curvlab.recovery.teacher import check_kind, patch_size

DEFAULT_EPS = 1e-12


def pack_fcn(W: Tensor) -> Tensor:
    """(S, P, d, K) -> (S, d, P K), column p K + k holds w_k of point p."""
    S, P, d, K = W.shape
    return W.permute(0, 2, 1, 3).reshape(S, d, P * K)


def unpack_fcn(Wp: Tensor, K: int) -> Tensor:
    """Inverse of :func:`pack_fcn`."""
    S, d, PK = Wp.shape
    return Wp.reshape(S, d, PK // K, K).permute(0, 2, 1, 3)


def pre_activations(kind: str, X: Tensor, W: Tensor, K: int) -> Tensor:
    """z for every sample, point and neuron: FCN (S, n, P, K); CNN (S, n, K, P)."""
    S, n, d = X.shape
    if check_kind(kind) == "fcn":
        P = W.shape[1]
        return torch.bmm(X, pack_fcn(W)).view(S, n, P, K)
    m = patch_size(d, K)
    P = W.shape[1]
    return torch.bmm(X.reshape(S, n * K, m), W.transpose(1, 2)).view(S, n, K, P)


def _neuron_dim(kind: str) -> int:
    return -1 if kind == "fcn" else 2


def output(kind: str, X: Tensor, W: Tensor, K: int) -> Tensor:
    """H(W, x_i), shape (S, n, P)."""
    return torch.sigmoid(pre_activations(kind, X, W, K)).mean(_neuron_dim(kind))


def loss_from_output(H: Tensor, y: Tensor, eps: float = DEFAULT_EPS) -> Tensor:
    """Per-sample clipped cross entropy; H (S, n, P), y (S, n) -> (S, n, P)."""
    Hc = H.clamp(eps, 1.0 - eps)
    yy = y.unsqueeze(-1)
    return -(yy * torch.log(Hc) + (1.0 - yy) * torch.log1p(-Hc))


def loss(kind: str, X: Tensor, y: Tensor, W: Tensor, K: int, eps: float = DEFAULT_EPS) -> Tensor:
    """f_n at every point: (S, P)."""
    return loss_from_output(output(kind, X, W, K), y, eps).mean(1)


def dloss_dH(H: Tensor, y: Tensor, eps: float = DEFAULT_EPS) -> tuple[Tensor, Tensor]:
    """l'(H) and l''(H) of the clipped loss (zero where H is clipped); H (S, n, P), y (S, n)."""
    inside = (H >= eps) & (H <= 1.0 - eps)
    Hc = H.clamp(eps, 1.0 - eps)
    yy = y.unsqueeze(-1)
    one_m = 1.0 - Hc
    l1 = torch.where(inside, (Hc - yy) / (Hc * one_m), 0.0)
    l2 = torch.where(inside, yy / (Hc * Hc) + (1.0 - yy) / (one_m * one_m), 0.0)
    return l1, l2


def grad(kind: str, X: Tensor, y: Tensor, W: Tensor, K: int, eps: float = DEFAULT_EPS) -> Tensor:
    """grad f_n at every point, same shape as W."""
    S, n, d = X.shape
    z = pre_activations(kind, X, W, K)
    s = torch.sigmoid(z)
    ds = s * (1.0 - s)
    if kind == "fcn":
        l1, _ = dloss_dH(s.mean(-1), y, eps)  # (S, n, P)
        D = (l1.unsqueeze(-1) * ds / (K * n)).reshape(S, n, -1)  # (S, n, P K)
        return unpack_fcn(torch.bmm(X.transpose(1, 2), D), K)
    m = d // K
    l1, _ = dloss_dH(s.mean(2), y, eps)  # (S, n, P)
    D = (l1.unsqueeze(2) * ds / (K * n)).reshape(S, n * K, -1)  # (S, n K, P)
    return torch.bmm(X.reshape(S, n * K, m).transpose(1, 2), D).transpose(1, 2)


CHUNK_ELEMENTS = 20_000_000  # elements of the Hessian's largest intermediate per chunk (160 MB in float64)


def _chunks(P: int, per_point: int) -> list[slice]:
    step = max(1, CHUNK_ELEMENTS // max(per_point, 1))
    return [slice(a, min(a + step, P)) for a in range(0, P, step)]


def hessian(kind: str, X: Tensor, y: Tensor, W: Tensor, K: int, eps: float = DEFAULT_EPS) -> Tensor:
    """Exact Hessian of f_n at every point: (S, P, d K, d K) [FCN] or (S, P, m, m) [CNN].

    f_n is a mean over samples, so points and, when one point's intermediates exceed the chunk
    budget (large n), samples are processed in chunks: memory stays bounded at any n."""
    check_kind(kind)
    S, n, d = X.shape
    per = K * K * d if kind == "fcn" else 2 * d  # elements of the largest intermediate per (set, sample, point)
    out = []
    for sl in _chunks(W.shape[1], S * n * per):
        Wc = W[:, sl]
        H = None
        for ns in _chunks(n, S * Wc.shape[1] * per):
            Hc = _hessian_sum(kind, X[:, ns], y[:, ns], Wc, K, eps)
            H = Hc if H is None else H + Hc
        out.append(H / n)
    return torch.cat(out, 1)


def _hessian_sum(kind: str, X: Tensor, y: Tensor, W: Tensor, K: int, eps: float) -> Tensor:
    """n times the Hessian of f_n at every point of ``W``, over the samples given."""
    S, n, d = X.shape
    P = W.shape[1]
    s = torch.sigmoid(pre_activations(kind, X, W, K))  # FCN (S, n, P, K) / CNN (S, n, K, P)
    ds = s * (1.0 - s)
    dds = ds * (1.0 - 2.0 * s)
    if kind == "fcn":
        l1, l2 = dloss_dH(s.mean(-1), y, eps)
        C = (l2[..., None, None] / K**2) * ds.unsqueeze(-1) * ds.unsqueeze(-2)  # (S, n, P, K, K)
        C = C + torch.diag_embed(l1.unsqueeze(-1) * dds / K)
        A = (C.unsqueeze(-1) * X[:, :, None, None, None, :]).reshape(S, n, P * K * K * d)
        Hs = torch.bmm(A.transpose(1, 2), X).view(S, P, K, K, d, d)
        return Hs.permute(0, 1, 2, 4, 3, 5).reshape(S, P, K * d, K * d)
    m = patch_size(d, K)
    Xp = X.reshape(S, n, K, m)
    l1, l2 = dloss_dH(s.mean(2), y, eps)  # (S, n, P)
    v = torch.einsum("snkp,snkm->spnm", ds, Xp) / K  # (S, P, n, m)
    t1 = torch.einsum("spna,spnb->spab", v * l2.permute(0, 2, 1).unsqueeze(-1), v)
    c = (l1.unsqueeze(2) * dds / K).reshape(S, n * K, P)  # (S, n K, P)
    Xf = Xp.reshape(S, n * K, m)
    t2 = torch.einsum("sqp,sqa,sqb->spab", c, Xf, Xf)
    return t1 + t2


def loss_single(kind: str, X: Tensor, y: Tensor, W: Tensor, K: int, eps: float = DEFAULT_EPS) -> Tensor:
    """f_n for one training set and one point (X (n, d), W (d, K) or (m,)): a plain, autograd-friendly
    reference used by the tests and the per-trial benchmark."""
    if kind == "fcn":
        H = torch.sigmoid(X @ W).mean(-1)
    else:
        n, d = X.shape
        H = torch.sigmoid(X.reshape(n, K, d // K) @ W).mean(-1)
    Hc = H.clamp(eps, 1.0 - eps)
    return -(y * torch.log(Hc) + (1.0 - y) * torch.log1p(-Hc)).mean()
