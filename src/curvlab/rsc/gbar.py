"""Closed-form backpropagation through :class:`DeepMLP` that yields, from one forward pass, the
loss gradient and the average predictor gradient g_bar_t of the RSC paper (Theorem 5.1,
Definition C.1) without a second full backward pass.

For k = 1 the per-sample output sensitivities S_l = d f(x_i) / d(pre-activation of layer l) are
backpropagated once; the loss cotangent only rescales rows (delta_l = c_i S_l), so both gradients
come out of one weight-gradient GEMM on [c * S_l, S_l / n]. For k > 1 the two cotangents are
stacked along the batch and backpropagated together.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from curvlab.geometry.flat import flatten
from curvlab.geometry.functional import FunctionalModel
from curvlab.geometry.gradients import loss_grad_and_gbar as generic_loss_grad_and_gbar
from curvlab.rsc.losses import Loss, square_loss
from curvlab.rsc.model import DeepMLP, mlp_forward


@dataclass
class ForwardCache:
    """Activations alpha^(0..L) (A[0] = x) and, for layers l = 1..L, phi'(pre-activation) times the
    layer's fan-in scale 1/sqrt(m_{l-1}) (folding the scale in here keeps it off the weight grads)."""

    A: list[Tensor]
    dphi: list[Tensor]
    out: Tensor  # (n, k) predictions


@dataclass
class FusedGrads:
    loss: Tensor  # scalar L(theta) = (1/n) sum_i l(y_i, f(x_i))
    out: Tensor  # (n, k) predictions
    grad: list[Tensor]  # dL/dtheta, one tensor per parameter of model.params()
    gbar: list[Tensor]  # g_bar = (1/(nk)) sum_{i,h} grad_theta f_h(theta; x_i), same layout

    def step_metrics(self) -> dict[str, float]:
        """A GD step's history row at theta_t: the loss, ||grad L||, ||g_bar_t|| (Theorem 5.1) and
        cos(-grad L, g_bar_t); one flat copy of each gradient, three reductions, one read-out."""
        g, gb = flatten(self.grad), flatten(self.gbar)
        grad_norm, gbar_norm = torch.linalg.vector_norm(g), torch.linalg.vector_norm(gb)
        cos = -torch.dot(g, gb) / (grad_norm * gbar_norm).clamp_min(1e-30)
        values = torch.stack([self.loss, grad_norm, gbar_norm, cos]).tolist()
        return dict(zip(("loss", "grad_norm", "gbar_norm", "cos_neg_grad_gbar"), values))


def forward_cache(model: DeepMLP, x: Tensor) -> ForwardCache:
    """:func:`~curvlab.rsc.model.mlp_forward` keeping what backpropagation needs."""
    layers: list[tuple[Tensor, Tensor]] = []
    out = mlp_forward(model.weights, model.head, model.act, x, layers)
    A = [x] + [a for _, a in layers]
    dphi = [model.act.dphi(z, a).mul_(1.0 / math.sqrt(w.shape[1])) for (z, a), w in zip(layers, model.weights)]
    return ForwardCache(A, dphi, out)


def backprop(model: DeepMLP, cache: ForwardCache, cot: Tensor, weight_grads: bool = True):
    """Backpropagate a stack of output cotangents ``cot`` of shape (c, n, k).

    Returns (grads, deltas): grads[j] of shape (c, *param_j.shape) is the gradient of
    <cot[c], f> w.r.t. parameter j of [W^(1..L), V] (None if ``weight_grads`` is False), and
    deltas[l-1] of shape (c, n, m_l) is the cotangent of layer l's pre-activation times the
    layer's fan-in scale, delta_l / sqrt(m_{l-1}), so that grad_{W^(l)} = deltas[l-1]^T alpha^(l-1).
    """
    V = model.head
    sqm = math.sqrt(V.shape[1])
    delta = ((cot / sqm) @ V).mul_(cache.dphi[-1])
    grads: list[Tensor] = [cot.transpose(1, 2) @ cache.A[-1] / sqm] if weight_grads else []
    deltas = [delta]
    for l in range(model.depth - 1, -1, -1):
        if weight_grads:
            grads.append(delta.transpose(1, 2) @ cache.A[l])
        if l > 0:
            delta = (delta @ model.weights[l]).mul_(cache.dphi[l - 1])
            deltas.append(delta)
    return (grads[::-1] if weight_grads else None), deltas[::-1]


def _fused_single_output(model: DeepMLP, cache: ForwardCache, c: Tensor) -> tuple[list[Tensor], list[Tensor]]:
    """k = 1: backprop the cotangent 1/n once, which gives g_bar's per-layer factors directly; the
    loss cotangent c = dL/df only rescales their rows (by n c_i), so the loss gradient costs one
    elementwise pass and one GEMM per layer on top of g_bar."""
    n = c.shape[0]
    inv_n = torch.full_like(c, 1.0 / n)
    _, sens = backprop(model, cache, inv_n[None], weight_grads=False)
    rows = c * n
    grad, gbar = [], []
    for l in range(model.depth):
        s, a = sens[l][0], cache.A[l]
        gbar.append(s.T @ a)
        grad.append((s * rows).T @ a)
    sqm = math.sqrt(model.head.shape[1])
    grad.append(c.T @ cache.A[-1] / sqm)
    gbar.append(inv_n.T @ cache.A[-1] / sqm)
    return grad, gbar


def loss_grad_and_gbar(model: DeepMLP, x: Tensor, y: Tensor, loss: Loss = square_loss) -> FusedGrads:
    """The loss, its gradient and g_bar_t from one forward and one fused backward pass."""
    with torch.no_grad():
        cache = forward_cache(model, x)
        n, k = cache.out.shape
        value = loss(cache.out, y)
        c = loss.grad_out(cache.out, y)  # dL/df
        if k == 1:
            grad, gbar = _fused_single_output(model, cache, c)
        else:
            both, _ = backprop(model, cache, torch.stack([c, torch.full_like(c, 1.0 / (n * k))]))
            grad, gbar = [g[0] for g in both], [g[1] for g in both]
    return FusedGrads(value, cache.out, grad, gbar)


def functional(model: nn.Module) -> FunctionalModel:
    """Any model as a function of its flat theta; DeepMLP's theta in the paper's order (eq. 2)."""
    return FunctionalModel.of(model, model.params() if isinstance(model, DeepMLP) else None)


def fused_grads(model: nn.Module, x: Tensor, y: Tensor, loss: Loss = square_loss) -> FusedGrads:
    """The loss, its gradient and g_bar_t of any model, per parameter of :func:`functional`'s order:
    DeepMLP's closed form, else the generic engine's one forward and two VJPs
    (:func:`curvlab.geometry.gradients.loss_grad_and_gbar`)."""
    if isinstance(model, DeepMLP):
        return loss_grad_and_gbar(model, x, y, loss)
    fm = functional(model)
    g = generic_loss_grad_and_gbar(fm, fm.theta(), x, y, loss)
    return FusedGrads(g.loss, g.out, fm.unflatten(g.grad), fm.unflatten(g.gbar))
