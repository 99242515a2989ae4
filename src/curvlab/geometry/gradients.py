"""The loss gradient and the average predictor gradient g_bar of any model, together (RSC paper,
Theorem 5.1; Definition C.1 for k outputs):

    grad L(theta) = J^T dL/df,    g_bar = (1/(n k)) sum_{i,h} grad_theta f_h(theta; x_i) = J^T 1 / (n k),

with J the (n k x p) Jacobian of the outputs. Both are vector-Jacobian products with the same J, so
one forward pass (``torch.func.vjp``) records the graph and two VJPs through it give them: the
forward is never run twice. Two VJPs in a row, not one ``vmap`` of the VJP over the stacked
cotangents: on CPU the batched one took 0.9-1.1x as long on the MLP and the ResNet and 1.4-1.6x on
the conv net (the conv backward's batching rule copies the input once per cotangent), as
``bench/bench_engine.py`` measures.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor
from torch.func import grad, jacrev, vjp, vmap

from curvlab.geometry.functional import FunctionalModel

Loss = Callable[[Tensor, Tensor], Tensor]  # (outputs (n, k), targets) -> scalar


@dataclass
class LossGrads:
    loss: Tensor  # scalar L(theta)
    out: Tensor  # (n, k) outputs f(theta; x)
    grad: Tensor  # (p,) dL/dtheta
    gbar: Tensor  # (p,) g_bar


def loss_grad_and_gbar(model: FunctionalModel, theta: Tensor, x: Tensor, y: Tensor, loss: Loss) -> LossGrads:
    """L, f, grad L and g_bar at theta from one forward and two VJPs through its graph."""
    out, vjp_fn = vjp(lambda th: model(th, x), theta.detach())
    out = out.detach()
    n, k = out.shape
    c = grad(lambda o: loss(o, y))(out)  # dL/df: in output space, no pass through the network
    (g,) = vjp_fn(c)
    (gbar,) = vjp_fn(torch.full_like(c, 1.0 / (n * k)))
    return LossGrads(loss(out, y), out, g, gbar)


def predictor_gradient_norms(model: FunctionalModel, theta: Tensor, x: Tensor, chunk: int = 64) -> tuple[Tensor, Tensor]:
    """(||grad_theta f_h(theta; x_i)||, ||grad_x f_h(theta; x_i)||), each (k, n): Lemma 4.1's two
    Lipschitz constants, from per-sample Jacobians of ``chunk`` inputs at a time."""
    theta = theta.detach()

    def f(th: Tensor, xi: Tensor) -> Tensor:
        return model(th, xi[None])[0]

    wrt_theta, wrt_x = [], []
    for a in range(0, x.shape[0], chunk):
        xs = x[a:a + chunk]
        wrt_theta.append(vmap(jacrev(f), in_dims=(None, 0))(theta, xs).norm(dim=-1))  # (c, k)
        jx = vmap(jacrev(f, argnums=1), in_dims=(None, 0))(theta, xs)  # (c, k, *x.shape[1:])
        wrt_x.append(jx.flatten(2).norm(dim=-1))
    return torch.cat(wrt_theta).T.to(torch.float64), torch.cat(wrt_x).T.to(torch.float64)
