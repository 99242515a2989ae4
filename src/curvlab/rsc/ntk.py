"""Empirical NTK of :class:`~curvlab.rsc.model.DeepMLP` by its per-layer structure (RSC paper,
Section 3 and Remark 5.5; its statistics are in :mod:`curvlab.geometry.ntk`).

Structure. For layer l with input activations A = alpha^(l-1) (n x m_{l-1}) and backpropagated
pre-activation sensitivities B (n x m_l), grad_{W^(l)} f(x_i) = b_i a_i^T / sqrt(m_{l-1}), so
layer l contributes (B B^T) * (A A^T) / m_{l-1} (elementwise product) and the last layer
(C C^T) * (A_L A_L^T) / m_L, where C holds the output cotangents. One forward pass and one
backward of the output cotangents give every B (:func:`curvlab.rsc.gbar.backprop`), so the kernel
costs O(L n^2 m) flops and O(L n m + n^2) memory instead of the O(n p) = O(n L m^2) of the per-sample
Jacobian (``bench/bench_gbar.py`` measures both). The
Gram products are formed in float64 (``dtype``) so lambda_min is not lost to float32 rounding.

k > 1 outputs (eq. 41). Two kernels, ``kind``:

* ``"mean"`` (default): the n x n NTK of the output-averaged predictor f_bar = (1/k) sum_h f_h,
  K[i, j] = <grad f_bar(x_i), grad f_bar(x_j)>. It is the kernel of Definition C.1's
  g_bar = (1/(nk)) sum_{i,h} grad f_h(x_i) = (1/n) sum_i grad f_bar(x_i): ||g_bar||^2 = 1^T K 1 / n^2,
  so RSC and the NTK condition are compared on the same kernel. For k = 1 it is the paper's K_ntk.
* ``"full"``: the nk x nk kernel K[(h, i), (h', j)] = <grad f_h(x_i), grad f_h'(x_j)> (row h*n + i),
  the one whose lambda_min enters the multi-output NTK condition; ||g_bar||^2 = 1^T K 1 / (nk)^2.
  Costs k^2 times more memory and k^3 times more for eigvalsh.
"""

from __future__ import annotations

import torch
from torch import Tensor

from curvlab.rsc.gbar import backprop, forward_cache
from curvlab.rsc.model import DeepMLP

KINDS = ("mean", "full")


def output_cotangents(n: int, k: int, kind: str, like: Tensor) -> Tensor:
    """Cotangents (c, n, k) whose backprop gives the predictors the kernel is built from."""
    if kind == "mean":
        return torch.full((1, n, k), 1.0 / k, dtype=like.dtype, device=like.device)
    if kind == "full":
        eye = torch.eye(k, dtype=like.dtype, device=like.device)
        return eye[:, None, :].expand(k, n, k).contiguous()
    raise ValueError(f"unknown NTK kind {kind!r}; choose one of {KINDS}")


@torch.no_grad()
def empirical_ntk(model: DeepMLP, x: Tensor, kind: str = "mean", dtype: torch.dtype = torch.float64) -> Tensor:
    """K(theta) of shape (n, n) (``mean``) or (n k, n k) (``full``), by the per-layer formula."""
    cache = forward_cache(model, x)
    n, k = cache.out.shape
    cot = output_cotangents(n, k, kind, cache.out)
    _, deltas = backprop(model, cache, cot, weight_grads=False)
    c = cot.shape[0]
    K = torch.zeros(c * n, c * n, dtype=dtype, device=x.device)
    for l in range(model.depth):
        A = cache.A[l].to(dtype)
        B = deltas[l].to(dtype).reshape(c * n, -1)  # backprop's deltas carry the 1/sqrt(m_{l-1}) scale
        K += (B @ B.T) * (A @ A.T).repeat(c, c)
    A = cache.A[-1].to(dtype)
    C = cot.to(dtype).reshape(c * n, k)
    K += (C @ C.T) * (A @ A.T).repeat(c, c) / model.head.shape[1]
    return K
