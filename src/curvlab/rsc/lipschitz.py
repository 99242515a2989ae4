"""Predictor gradient norms ||grad_theta f(theta; x_i)|| and ||grad_x f(theta; x_i)|| (RSC Lemma 4.1).

Lemma 4.1 (eq. 9): in the layerwise spectral ball, ||grad_theta f|| <= varrho = O(1) and
||grad_x f|| <= gamma^L (1 + rho_1) / sqrt(m): the input-Lipschitz constant of the predictor
shrinks like 1/sqrt(m). Both come from the structured backprop of :mod:`curvlab.rsc.gbar`
without forming a Jacobian: with sensitivities b_i^(l) and activations a_i^(l-1),
||grad_theta f_h(x_i)||^2 = sum_l ||b_i^(l)||^2 ||a_i^(l-1)||^2 / m_{l-1} + ||a_i^(L)||^2 / m_L (the
diagonal of the NTK) and grad_x f_h(x_i) = W^(1)T b_i^(1) / sqrt(d). For k outputs every f_h is
measured (Theorem C.1's per-output view); statistics are over all (i, h).
"""

from __future__ import annotations


import torch
from torch import Tensor

from curvlab.rsc.gbar import backprop, forward_cache
from curvlab.rsc.model import DeepMLP


@torch.no_grad()
def predictor_gradient_norms(model: DeepMLP, x: Tensor) -> tuple[Tensor, Tensor]:
    """(||grad_theta f_h(x_i)||, ||grad_x f_h(x_i)||), each of shape (k, n)."""
    cache = forward_cache(model, x)
    n, k = cache.out.shape
    cot = torch.eye(k, dtype=x.dtype, device=x.device)[:, None, :].expand(k, n, k).contiguous()
    _, deltas = backprop(model, cache, cot, weight_grads=False)
    sq = torch.zeros(k, n, dtype=torch.float64, device=x.device)
    for l in range(model.depth):  # backprop's deltas carry the 1/sqrt(m_{l-1}) scale
        a2 = cache.A[l].to(torch.float64).pow(2).sum(1)  # (n,)
        b2 = deltas[l].to(torch.float64).pow(2).sum(2)  # (k, n)
        sq += b2 * a2
    sq += cache.A[-1].to(torch.float64).pow(2).sum(1) / model.head.shape[1]  # ||e_h||^2 = 1
    gx = deltas[0] @ model.weights[0]  # (k, n, d)
    return sq.sqrt(), gx.to(torch.float64).norm(dim=2)
